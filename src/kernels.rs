//! Kernels: arithmetic only. Matrix products and the scalar functions the activations are
//! made of, for `f32` and `f64`. Nothing here knows about gates, layouts or ONNX.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, LinalgScalar};

/// The element types the cells compute in.
pub trait Float:
    num_traits::Float + LinalgScalar + Default + Send + Sync + std::fmt::Debug + 'static
{
    /// Converts an attribute value (ONNX stores them as `f32`).
    fn from_f32(v: f32) -> Self;
}

impl Float for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Float for f64 {
    fn from_f32(v: f32) -> Self {
        v as f64
    }
}

/// `c = a · b` (overwriting c).
pub fn matmul<T: Float>(a: ArrayView2<T>, b: ArrayView2<T>, mut c: ArrayViewMut2<T>) {
    general_mat_mul(T::one(), &a, &b, T::zero(), &mut c);
}

/// `c += a · b`.
pub fn matmul_acc<T: Float>(a: ArrayView2<T>, b: ArrayView2<T>, mut c: ArrayViewMut2<T>) {
    general_mat_mul(T::one(), &a, &b, T::one(), &mut c);
}

/// `1 / (1 + e^-x)`, written so that neither tail overflows.
#[inline]
pub fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// `ln(1 + e^x)` without overflow for large x: `max(x, 0) + ln(1 + e^-|x|)`.
#[inline]
pub fn softplus<T: Float>(x: T) -> T {
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}

/// `x / (1 + |x|)`.
#[inline]
pub fn softsign<T: Float>(x: T) -> T {
    x / (T::one() + x.abs())
}

/// `alpha · (e^x - 1)` below zero, x above.
#[inline]
pub fn elu<T: Float>(x: T, alpha: T) -> T {
    if x >= T::zero() {
        x
    } else {
        alpha * x.exp_m1()
    }
}
