//! The scalar functions the activations are made of: fast f32 exp, sigmoid and tanh (and
//! their slice loops, which every kernel set compiles), and the exact generic ones.

use super::Float;

/// `e^x` for f32 in plain arithmetic (vectorizes): n = round(x·log2 e), r = x − n·ln 2 in
/// two parts (Cody–Waite), e^r by Cephes' degree-6 polynomial, 2^n through the exponent
/// bits. About 1 ulp; saturates to e^-87.3 and e^88 outside that range, NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.336_54, 88.0);
    let z = x * std::f32::consts::LOG2_E + MAGIC;
    let n = z - MAGIC;
    let ni = (z.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * 0.693_359_4;
    let r = r - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    #[allow(clippy::excessive_precision)] // the fitted coefficient, kept as fitted
    {
        p = p * r + 5.000_000_1e-1;
    }
    let y = p * (r * r) + r + 1.0;
    y * f32::from_bits((ni.wrapping_add(127) << 23) as u32)
}

/// `1 / (1 + e^-x)` for f32 with [`exp_f32`].
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// `tanh x` for f32: the odd 13/6 rational approximation of Eigen and MLAS, clamped at
/// ±7.905 where tanh rounds to ±1. Odd in x, so small arguments keep their relative
/// accuracy. NaN stays NaN.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 + -8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    let mut q = 1.198_258_4e-6f32;
    q = q * x2 + 1.185_347e-4;
    q = q * x2 + 2.268_434_7e-3;
    q = q * x2 + 4.893_525e-3;
    x * p / q
}

#[inline(always)]
pub(super) fn sigmoid_slice_f32(xs: &mut [f32]) {
    for x in xs {
        *x = sigmoid_f32(*x);
    }
}

#[inline(always)]
pub(super) fn tanh_slice_f32(xs: &mut [f32]) {
    for x in xs {
        *x = tanh_f32(*x);
    }
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
