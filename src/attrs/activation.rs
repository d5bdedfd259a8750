//! The activation functions ONNX recurrent nodes name (`Sigmoid`, `Tanh`, `Affine`...), with
//! their alpha and beta, read from the node's attributes.

use std::fmt;

/// An `f32` kept as its bits, so that descriptions holding one can be `Eq` and `Hash`
/// as tract's ops must be.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct F32Bits(u32);

impl F32Bits {
    /// Wraps a value.
    pub fn new(v: f32) -> F32Bits {
        F32Bits(v.to_bits())
    }
    /// The value.
    pub fn get(self) -> f32 {
        f32::from_bits(self.0)
    }
}

impl fmt::Debug for F32Bits {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// One activation function with its parameters resolved (from the lists or the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    /// `alpha * x + beta`.
    Affine {
        alpha: F32Bits,
        beta: F32Bits,
    },
    LeakyRelu {
        alpha: F32Bits,
    },
    ThresholdedRelu {
        alpha: F32Bits,
    },
    /// `alpha * tanh(beta * x)`.
    ScaledTanh {
        alpha: F32Bits,
        beta: F32Bits,
    },
    HardSigmoid {
        alpha: F32Bits,
        beta: F32Bits,
    },
    Elu {
        alpha: F32Bits,
    },
    Softsign,
    Softplus,
}

/// The function names the spec lists, in its order.
pub const ACTIVATION_NAMES: [&str; 11] = [
    "Relu",
    "Tanh",
    "Sigmoid",
    "Affine",
    "LeakyRelu",
    "ThresholdedRelu",
    "ScaledTanh",
    "HardSigmoid",
    "Elu",
    "Softsign",
    "Softplus",
];

impl Activation {
    /// Builds one from its ONNX name, drawing alpha and beta from the shared lists as the spec
    /// says: a function that takes a parameter consumes the next value of that list, and falls
    /// back to the standalone operator's default when the list is exhausted.
    pub(super) fn from_name(
        name: &str,
        alphas: &mut impl Iterator<Item = f32>,
        betas: &mut impl Iterator<Item = f32>,
    ) -> Option<Activation> {
        let mut alpha = |default: f32| F32Bits::new(alphas.next().unwrap_or(default));
        let act = match Self::canonical(name)? {
            "Relu" => Activation::Relu,
            "Tanh" => Activation::Tanh,
            "Sigmoid" => Activation::Sigmoid,
            "Affine" => {
                let alpha = alpha(1.0);
                Activation::Affine {
                    alpha,
                    beta: F32Bits::new(betas.next().unwrap_or(0.0)),
                }
            }
            "LeakyRelu" => Activation::LeakyRelu { alpha: alpha(0.01) },
            "ThresholdedRelu" => Activation::ThresholdedRelu { alpha: alpha(1.0) },
            "ScaledTanh" => {
                let alpha = alpha(1.0);
                Activation::ScaledTanh {
                    alpha,
                    beta: F32Bits::new(betas.next().unwrap_or(1.0)),
                }
            }
            "HardSigmoid" => {
                let alpha = alpha(0.2);
                Activation::HardSigmoid {
                    alpha,
                    beta: F32Bits::new(betas.next().unwrap_or(0.5)),
                }
            }
            "Elu" => Activation::Elu { alpha: alpha(1.0) },
            "Softsign" => Activation::Softsign,
            "Softplus" => Activation::Softplus,
            _ => return None,
        };
        Some(act)
    }

    /// The spec's spelling of a function name. Matching ignores case because PyTorch's
    /// exporter writes `relu`/`tanh` and onnxruntime accepts that.
    fn canonical(name: &str) -> Option<&'static str> {
        ACTIVATION_NAMES
            .iter()
            .copied()
            .find(|n| n.eq_ignore_ascii_case(name))
    }

    pub(super) fn takes(name: &str) -> (bool, bool) {
        match Self::canonical(name).unwrap_or("") {
            "Affine" | "ScaledTanh" | "HardSigmoid" => (true, true),
            "LeakyRelu" | "ThresholdedRelu" | "Elu" => (true, false),
            _ => (false, false),
        }
    }

    /// The ONNX name.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "Relu",
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
            Activation::Affine { .. } => "Affine",
            Activation::LeakyRelu { .. } => "LeakyRelu",
            Activation::ThresholdedRelu { .. } => "ThresholdedRelu",
            Activation::ScaledTanh { .. } => "ScaledTanh",
            Activation::HardSigmoid { .. } => "HardSigmoid",
            Activation::Elu { .. } => "Elu",
            Activation::Softsign => "Softsign",
            Activation::Softplus => "Softplus",
        }
    }

    /// `(alpha, beta)` where the function has them.
    pub fn params(&self) -> (Option<f32>, Option<f32>) {
        match *self {
            Activation::Affine { alpha, beta }
            | Activation::ScaledTanh { alpha, beta }
            | Activation::HardSigmoid { alpha, beta } => (Some(alpha.get()), Some(beta.get())),
            Activation::LeakyRelu { alpha }
            | Activation::ThresholdedRelu { alpha }
            | Activation::Elu { alpha } => (Some(alpha.get()), None),
            _ => (None, None),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.params() {
            (Some(a), Some(b)) => write!(f, "{}(alpha={a}, beta={b})", self.name()),
            (Some(a), None) => write!(f, "{}(alpha={a})", self.name()),
            _ => write!(f, "{}", self.name()),
        }
    }
}
