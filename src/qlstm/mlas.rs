//! onnxruntime's float32 logistic and tanh functions, bit for bit, and ONNX `Sigmoid` and
//! `Tanh` that use them in models written for onnxruntime.
//!
//! onnxruntime computes `Sigmoid`, and the sigmoid gates of its LSTMs, with MLAS's
//! `MlasComputeLogistic`: on x86-64 with FMA3 the kernel `MlasLogisticKernelFma3`, a rational
//! approximation (Eigen's coefficients) evaluated with fused multiply-adds:
//!
//! ```text
//! x  = clamp(x, -18, 18);  x2 = x·x
//! p  = x · fma(x2, fma(x2, fma(x2, fma(x2, α9, α7), α5), α3), α1)
//! q  = fma(x2, fma(x2, fma(x2, fma(x2, fma(x2, β10, β8), β6), β4), β2), β0)
//! σ  = max(p / q + 0.5, 0)
//! ```
//!
//! tract's sigmoid is a different approximation, a few ulp away on some inputs. That is
//! nothing in a float model, but a dynamically quantized one (onnxruntime's `quantize_dynamic`:
//! `DynamicQuantizeLinear` before every `ConvInteger`/`MatMulInteger`) re-quantizes the
//! activations after every layer: one ulp moves a value across a rounding boundary of the
//! next quantization, and the difference grows layer after layer. On ddddocr's
//! `common_old.onnx` six sigmoid values one or two ulp off in the first layers became 0.12 on
//! the output logits, while every other operator of the model agreed with onnxruntime to the
//! bit. So in models that import the `com.microsoft` domain (models written for onnxruntime),
//! float32 `Sigmoid` and `Tanh` nodes compute [`logistic`] and [`tanh`] (MLAS's
//! `MlasComputeTanh`, the same kind of approximation); other element types, and every other
//! model, keep tract's functions. The quantized LSTM uses both for its gates, as onnxruntime's
//! does.

#![allow(clippy::excessive_precision)]

use tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
use tract_hir::internal::*;
use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;

// MLAS's constants (`MlasLogisticConstants`), written as MLAS writes them.
const LOWER: f32 = -18.0;
const UPPER: f32 = 18.0;
const ALPHA_9: f32 = 4.37031012579801e-11;
const ALPHA_7: f32 = 1.15627324459942e-07;
const ALPHA_5: f32 = 6.08574864600143e-05;
const ALPHA_3: f32 = 8.51377133304701e-03;
const ALPHA_1: f32 = 2.48287947061529e-01;
const BETA_10: f32 = 6.10247389755681e-13;
const BETA_8: f32 = 5.76102136993427e-09;
const BETA_6: f32 = 6.29106785017040e-06;
const BETA_4: f32 = 1.70198817374094e-03;
const BETA_2: f32 = 1.16817656904453e-01;
const BETA_0: f32 = 9.93151921023180e-01;

// `MlasTanhConstants`.
const TANH_LOWER: f32 = -9.0;
const TANH_UPPER: f32 = 9.0;
const TANH_ALPHA_13: f32 = -2.76076847742355e-16;
const TANH_ALPHA_11: f32 = 2.00018790482477e-13;
const TANH_ALPHA_9: f32 = -8.60467152213735e-11;
const TANH_ALPHA_7: f32 = 5.12229709037114e-08;
const TANH_ALPHA_5: f32 = 1.48572235717979e-05;
const TANH_ALPHA_3: f32 = 6.37261928875436e-04;
const TANH_ALPHA_1: f32 = 4.89352455891786e-03;
const TANH_BETA_6: f32 = 1.19825839466702e-06;
const TANH_BETA_4: f32 = 1.18534705686654e-04;
const TANH_BETA_2: f32 = 2.26843463243900e-03;
const TANH_BETA_0: f32 = 4.89352518554385e-03;

/// MLAS's logistic function (`MlasLogisticKernelFma3`), bit for bit. NaN stays NaN.
#[inline]
pub fn logistic(x: f32) -> f32 {
    // maxps/minps with the input as second operand: a NaN input comes through.
    let x = x.clamp(LOWER, UPPER);
    let x2 = x * x;
    let p = x2.mul_add(ALPHA_9, ALPHA_7);
    let p = x2.mul_add(p, ALPHA_5);
    let p = x2.mul_add(p, ALPHA_3);
    let p = x2.mul_add(p, ALPHA_1);
    let q = x2.mul_add(BETA_10, BETA_8);
    let q = x2.mul_add(q, BETA_6);
    let q = x2.mul_add(q, BETA_4);
    let q = x2.mul_add(q, BETA_2);
    let q = x2.mul_add(q, BETA_0);
    let r = (x * p) / q + 0.5;
    if r.is_nan() {
        r
    } else {
        r.max(0.0)
    }
}

/// MLAS's hyperbolic tangent (`MlasComputeTanh` with FMA3: Eigen's rational approximation,
/// x clamped to ±9, fused multiply-adds), bit for bit. NaN stays NaN.
#[inline]
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(TANH_LOWER, TANH_UPPER);
    let x2 = x * x;
    let p = x2.mul_add(TANH_ALPHA_13, TANH_ALPHA_11);
    let p = x2.mul_add(p, TANH_ALPHA_9);
    let p = x2.mul_add(p, TANH_ALPHA_7);
    let p = x2.mul_add(p, TANH_ALPHA_5);
    let p = x2.mul_add(p, TANH_ALPHA_3);
    let p = x2.mul_add(p, TANH_ALPHA_1);
    let q = x2.mul_add(TANH_BETA_6, TANH_BETA_4);
    let q = x2.mul_add(q, TANH_BETA_2);
    let q = x2.mul_add(q, TANH_BETA_0);
    (x * p) / q
}

/// Whether the slices run sixteen lanes at a time (the AVX-512 kernels are selected).
#[cfg(target_arch = "x86_64")]
fn wide() -> bool {
    crate::kernels::Isa::selected() == crate::kernels::Isa::Avx512
}

/// [`logistic`] on every element.
pub fn logistic_slice(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the selected set is AVX-512, which the CPU runs.
        return unsafe { avx512::logistic_slice(xs) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA, checked just above.
        return unsafe { map_fma(xs, logistic) };
    }
    xs.iter_mut().for_each(|x| *x = logistic(*x));
}

/// [`tanh`] on every element.
pub fn tanh_slice(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the selected set is AVX-512, which the CPU runs.
        return unsafe { avx512::tanh_slice(xs) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA, checked just above.
        return unsafe { map_fma(xs, tanh) };
    }
    xs.iter_mut().for_each(|x| *x = tanh(*x));
}

/// `x ← f(x)` compiled with FMA instructions: the same arithmetic (`mul_add` is fused
/// either way), but without them every `mul_add` is a library call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn map_fma(xs: &mut [f32], f: impl Fn(f32) -> f32) {
    for x in xs {
        *x = f(*x);
    }
}

/// [`logistic`] and [`tanh`] sixteen lanes at a time, operation for operation (as MLAS's own
/// kernels: `max`/`min` with the input second so a NaN comes through, the same fused
/// multiply-adds, a true division).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// `f` on every vector of `xs`, the tail through a mask.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn map(xs: &mut [f32], f: impl Fn(__m512) -> __m512) {
        for i in (0..xs.len()).step_by(16) {
            let left = xs.len() - i;
            let mask: __mmask16 = if left >= 16 {
                0xFFFF
            } else {
                (1u16 << left) - 1
            };
            let p = xs.as_mut_ptr().add(i);
            _mm512_mask_storeu_ps(p, mask, f(_mm512_maskz_loadu_ps(mask, p)));
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn clamp(x: __m512, lo: f32, hi: f32) -> __m512 {
        let x = _mm512_max_ps(_mm512_set1_ps(lo), x);
        _mm512_min_ps(_mm512_set1_ps(hi), x)
    }

    /// `fma(x2, p, c)` for each coefficient in turn, starting from the first.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn horner(x2: __m512, first: f32, rest: &[f32]) -> __m512 {
        let mut p = _mm512_set1_ps(first);
        for &c in rest {
            p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(c));
        }
        p
    }

    /// # Safety
    /// AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn logistic_slice(xs: &mut [f32]) {
        map(xs, |x| {
            let x = clamp(x, LOWER, UPPER);
            let x2 = _mm512_mul_ps(x, x);
            let p = horner(x2, ALPHA_9, &[ALPHA_7, ALPHA_5, ALPHA_3, ALPHA_1]);
            let q = horner(x2, BETA_10, &[BETA_8, BETA_6, BETA_4, BETA_2, BETA_0]);
            let r = _mm512_add_ps(_mm512_div_ps(_mm512_mul_ps(x, p), q), _mm512_set1_ps(0.5));
            // NaN in the second operand comes through.
            _mm512_max_ps(_mm512_setzero_ps(), r)
        })
    }

    /// # Safety
    /// AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tanh_slice(xs: &mut [f32]) {
        map(xs, |x| {
            let x = clamp(x, TANH_LOWER, TANH_UPPER);
            let x2 = _mm512_mul_ps(x, x);
            let p = horner(
                x2,
                TANH_ALPHA_13,
                &[
                    TANH_ALPHA_11,
                    TANH_ALPHA_9,
                    TANH_ALPHA_7,
                    TANH_ALPHA_5,
                    TANH_ALPHA_3,
                    TANH_ALPHA_1,
                ],
            );
            let q = horner(x2, TANH_BETA_6, &[TANH_BETA_4, TANH_BETA_2, TANH_BETA_0]);
            _mm512_div_ps(_mm512_mul_ps(x, p), q)
        })
    }
}

/// Whether a model was written for onnxruntime: it imports the `com.microsoft` domain.
pub(crate) fn targets_onnxruntime(ctx: &ParsingContext) -> bool {
    ctx.model
        .opset_import
        .iter()
        .any(|o| o.domain == super::DOMAIN)
}

/// Registers the `Sigmoid` and `Tanh` parsers: onnxruntime's functions in models written for
/// onnxruntime, tract's elsewhere.
pub(crate) fn register(onnx: &mut Onnx) {
    onnx.op_register.insert("Sigmoid", parse_sigmoid);
    onnx.op_register.insert("Tanh", parse_tanh);
}

fn parse_sigmoid(
    ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let op = if targets_onnxruntime(ctx) {
        ElementWiseOp(Box::new(Onnxruntime::Sigmoid), None)
    } else {
        tract_core::ops::nn::sigmoid()
    };
    Ok((op.into_hir(), vec![]))
}

fn parse_tanh(
    ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let op = if targets_onnxruntime(ctx) {
        ElementWiseOp(Box::new(Onnxruntime::Tanh), None)
    } else {
        tract_core::ops::math::tanh()
    };
    Ok((op.into_hir(), vec![]))
}

/// `Sigmoid` or `Tanh` computed as onnxruntime computes them for float32 ([`logistic`],
/// [`tanh`]); other element types as tract computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Onnxruntime {
    /// ONNX `Sigmoid`.
    Sigmoid,
    /// ONNX `Tanh`.
    Tanh,
}

impl ElementWiseMiniOp for Onnxruntime {
    fn name(&self) -> String {
        format!("Onnxruntime{self:?}")
    }

    fn eval_in_place(&self, t: &mut Tensor, out_dt: Option<DatumType>) -> TractResult<()> {
        if t.datum_type() == DatumType::F32 {
            let mut xs = t.try_as_plain_ram_mut()?;
            let xs = xs.as_slice_mut::<f32>()?;
            match self {
                Onnxruntime::Sigmoid => logistic_slice(xs),
                Onnxruntime::Tanh => tanh_slice(xs),
            }
            return Ok(());
        }
        let tract_op = match self {
            Onnxruntime::Sigmoid => tract_core::ops::nn::sigmoid(),
            Onnxruntime::Tanh => tract_core::ops::math::tanh(),
        };
        tract_op.0.eval_in_place(t, out_dt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (x, onnxruntime 1.32's Sigmoid, onnxruntime 1.32's Tanh), as bits.
    const ORT: [(u32, u32, u32); 6] = [
        (0xbecae9bf, 0x3ecdecea, 0xbec0eac6),
        (0x3ff5ec1c, 0x3f5f4dba, 0x3f7540e9),
        (0x3ea12068, 0x3f13f9ea, 0x3e9c0292),
        (0xbf4b4f7f, 0x3e9f5efa, 0xbf292852),
        (0xc107fb89, 0x39558800, 0xbf7ffffe),
        (0xb882d37e, 0x3efffdf5, 0xb882d37d),
    ];

    #[test]
    fn logistic_and_tanh_are_onnxruntimes_to_the_bit() {
        for (x, sig, th) in ORT {
            let x = f32::from_bits(x);
            assert_eq!(logistic(x).to_bits(), sig, "logistic({x})");
            assert_eq!(tanh(x).to_bits(), th, "tanh({x})");
            let mut v = [x; 9];
            logistic_slice(&mut v);
            assert!(v.iter().all(|s| s.to_bits() == sig), "logistic_slice({x})");
            let mut v = [x; 9];
            tanh_slice(&mut v);
            assert!(v.iter().all(|t| t.to_bits() == th), "tanh_slice({x})");
        }
    }

    /// The slices (sixteen lanes where the CPU has AVX-512, with tails) give the scalar
    /// functions' bits on a sweep of inputs, the clamp bounds, zeros, infinities and NaN.
    #[test]
    fn slices_give_the_scalar_bits() {
        let mut xs: Vec<f32> = (-4000..4000).map(|i| i as f32 / 150.0).collect();
        xs.extend([
            -18.0,
            18.0,
            -9.0,
            9.0,
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e-30,
            -1e-30,
            f32::MIN_POSITIVE,
        ]);
        for len in [xs.len(), 1, 15, 17] {
            let xs = &xs[xs.len() - len..];
            let mut s = xs.to_vec();
            logistic_slice(&mut s);
            let mut t = xs.to_vec();
            tanh_slice(&mut t);
            for ((&x, s), t) in xs.iter().zip(&s).zip(&t) {
                assert_eq!(s.to_bits(), logistic(x).to_bits(), "logistic({x})");
                assert_eq!(t.to_bits(), tanh(x).to_bits(), "tanh({x})");
            }
        }
    }

    #[test]
    fn special_values() {
        assert_eq!(logistic(0.0), 0.5);
        assert!(logistic(f32::NAN).is_nan());
        assert!(tanh(f32::NAN).is_nan());
        assert_eq!(tanh(0.0), 0.0);
        // Clamped to ±18 / ±9 first: no overflow, outputs in range.
        assert!((0.0..=1.0).contains(&logistic(f32::INFINITY)));
        assert!((0.0..=1.0).contains(&logistic(f32::NEG_INFINITY)));
        assert!(tanh(f32::INFINITY) <= 1.0 && tanh(f32::NEG_INFINITY) >= -1.0);
    }
}
