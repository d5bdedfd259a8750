//! Applying the spec's activation functions to the cells' element types.

use crate::attrs::Activation;
use crate::kernels::{self, Float};

/// An [`Activation`] with its parameters converted to `T` once, so the time loop does not
/// convert them per element.
#[derive(Debug, Clone, Copy)]
pub struct Act<T> {
    kind: Activation,
    alpha: T,
    beta: T,
}

impl<T: Float> Act<T> {
    /// Whether this is `a` (for activations without parameters).
    pub(crate) fn is(&self, a: Activation) -> bool {
        self.kind == a
    }

    /// Prepares `a` for computing in `T`.
    pub fn new(a: Activation) -> Act<T> {
        let (alpha, beta) = a.params();
        Act {
            kind: a,
            alpha: T::from_f32(alpha.unwrap_or(0.0)),
            beta: T::from_f32(beta.unwrap_or(0.0)),
        }
    }

    /// The function's value at `x`.
    #[inline]
    pub fn apply(&self, x: T) -> T {
        let zero = T::zero();
        match self.kind {
            Activation::Relu => x.max(zero),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => kernels::sigmoid(x),
            Activation::Affine { .. } => self.alpha * x + self.beta,
            Activation::LeakyRelu { .. } => {
                if x >= zero {
                    x
                } else {
                    self.alpha * x
                }
            }
            Activation::ThresholdedRelu { .. } => {
                if x > self.alpha {
                    x
                } else {
                    zero
                }
            }
            Activation::ScaledTanh { .. } => self.alpha * (self.beta * x).tanh(),
            Activation::HardSigmoid { .. } => (self.alpha * x + self.beta).max(zero).min(T::one()),
            Activation::Elu { .. } => kernels::elu(x, self.alpha),
            Activation::Softsign => kernels::softsign(x),
            Activation::Softplus => kernels::softplus(x),
        }
    }

    /// `x ← f(x)` for every element. Sigmoid and tanh go to the kernels' slice functions
    /// (vectorized; for `f32` a few ulp from the correctly rounded values); the others
    /// apply [`Act::apply`] element by element.
    #[inline]
    pub fn apply_slice(&self, xs: &mut [T]) {
        match self.kind {
            Activation::Sigmoid => T::sigmoid_slice(xs),
            Activation::Tanh => T::tanh_slice(xs),
            Activation::Relu => {
                let zero = T::zero();
                for x in xs {
                    *x = x.max(zero);
                }
            }
            _ => {
                for x in xs {
                    *x = self.apply(*x);
                }
            }
        }
    }
}

/// Gate pre-activation bound (`clip`), applied before f and g.
#[derive(Debug, Clone, Copy)]
pub struct Clip<T>(Option<T>);

impl<T: Float> Clip<T> {
    /// No bound when `None`.
    pub fn new(c: Option<f32>) -> Clip<T> {
        Clip(c.map(T::from_f32))
    }

    /// Whether there is no bound.
    pub(crate) fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// `x` bounded to `[-clip, clip]`. NaN stays NaN, as IEEE arithmetic would have it.
    #[inline]
    pub fn apply(&self, x: T) -> T {
        match self.0 {
            Some(c) if x > c => c,
            Some(c) if x < -c => -c,
            _ => x,
        }
    }

    /// [`Clip::apply`] on every element; nothing to do without a bound.
    #[inline]
    pub fn apply_slice(&self, xs: &mut [T]) {
        if let Some(c) = self.0 {
            for x in xs {
                *x = if *x > c {
                    c
                } else if *x < -c {
                    -c
                } else {
                    *x
                };
            }
        }
    }
}
