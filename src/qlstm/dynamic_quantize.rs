//! ONNX `DynamicQuantizeLinear`: float32 to uint8 with a scale and zero point taken from the
//! tensor's own range. A dynamically quantized model (onnxruntime's `quantize_dynamic`) puts one
//! in front of every `ConvInteger` and `MatMulInteger`, so it runs on every activation.
//!
//! The values are tract's and onnxruntime's (`GetQuantizationParameter`, then
//! `MlasQuantizeLinear`): the range widened to include 0, `scale = (max − min) / 255`,
//! `zero_point = round_half_even(clamp(−min / scale, 0, 255))`, and each element
//! `clamp(round_half_even(x / scale) + zero_point, 0, 255)` with a true division. tract's own
//! op computes the same per element through a library call for the rounding (a quarter of
//! ddddocr's run time went there); this one is compiled for the CPU's vector units. Where the
//! two differed, onnxruntime is followed: an all-zero tensor has scale 1 (tract: 0).

use tract_hir::internal::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;

use super::quantize;

pub(super) fn parse(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(DynamicQuantizeLinear), vec![]))
}

/// The inference-time face: shape and type rules, then [`DynamicQuantizeU8`].
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct DynamicQuantizeLinear;

impl Expansion for DynamicQuantizeLinear {
    fn name(&self) -> StaticName {
        "DynamicQuantizeLinear".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(3)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 3)?;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        s.equals(&outputs[0].datum_type, u8::datum_type())?;
        s.equals(&outputs[1].datum_type, f32::datum_type())?;
        s.equals(&outputs[1].rank, 0)?;
        s.equals(&outputs[2].datum_type, u8::datum_type())?;
        s.equals(&outputs[2].rank, 0)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(
            format!("{prefix}.dynamic_quantize"),
            DynamicQuantizeU8,
            &[inputs[0]],
        )
    }
}

/// The typed op: `x` → (`y`, `y_scale`, `y_zero_point`).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct DynamicQuantizeU8;

impl Op for DynamicQuantizeU8 {
    fn name(&self) -> StaticName {
        "DynamicQuantizeU8".into()
    }

    op_as_typed_op!();
}

impl EvalOp for DynamicQuantizeU8 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = inputs[0].cast_to::<f32>()?;
        let x = x.try_as_plain_ram()?;
        let xs = x.as_slice::<f32>()?;
        let (scale, zero_point) = quantization_params_fast(xs);
        let mut y = Tensor::zero::<u8>(inputs[0].shape())?;
        quantize_slice(
            xs,
            scale,
            zero_point,
            y.try_as_plain_ram_mut()?.as_slice_mut::<u8>()?,
        );
        Ok(tvec![
            y.into_tvalue(),
            tensor0(scale).into_tvalue(),
            tensor0(zero_point).into_tvalue()
        ])
    }
}

impl TypedOp for DynamicQuantizeU8 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut y = inputs[0].without_value();
        y.datum_type = u8::datum_type();
        Ok(tvec![y, f32::scalar_fact(), u8::scalar_fact()])
    }

    as_op!();
}

/// [`quantization_params`] over a slice, on the vector units of the integer products' path
/// (min and max are exact, so the lanes' order does not change the result).
pub fn quantization_params_fast(xs: &[f32]) -> (f32, u8) {
    super::kernels::quantization_params_of(xs)
}

/// `ys[i] = quantize(xs[i], scale, zero_point)`, on the vectors of the integer products' path
/// (AVX-512 or AVX2; the portable path's loop compiled for AVX2 where the CPU has it).
pub fn quantize_slice(xs: &[f32], scale: f32, zero_point: u8, ys: &mut [u8]) {
    assert_eq!(xs.len(), ys.len());
    if super::int_gemm::quantize_u8_wide(xs, scale, zero_point, ys) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (and so SSE4.1's rounding), checked just above.
        return unsafe { quantize_slice_avx2(xs, scale, zero_point, ys) };
    }
    quantize_body(xs, scale, zero_point, ys)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_slice_avx2(xs: &[f32], scale: f32, zero_point: u8, ys: &mut [u8]) {
    quantize_body(xs, scale, zero_point, ys)
}

#[inline(always)]
fn quantize_body(xs: &[f32], scale: f32, zero_point: u8, ys: &mut [u8]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = quantize(x, scale, zero_point);
    }
}

#[cfg(test)]
mod tests {
    use super::super::quantization_params;
    use super::*;

    /// The operator's own examples (the ONNX spec's `DynamicQuantizeLinear` section).
    #[test]
    fn spec_examples() {
        let cases: [(&[f32], f32, u8, &[u8]); 3] = [
            (
                &[0., 2., -3., -2.5, 1.34, 0.5],
                0.019_607_844,
                153,
                &[153, 255, 0, 26, 221, 179],
            ),
            (
                &[-1., -2.1, -1.3, -2.5, -3.34, -4.],
                0.015_686_275,
                255,
                &[191, 121, 172, 96, 42, 0],
            ),
            (
                &[1., 2.1, 1.3, 2.5, 3.34, 4., 1.5, 2.6, 3.9, 4., 3., 2.345],
                0.015_686_275,
                0,
                &[64, 134, 83, 159, 213, 255, 96, 166, 249, 255, 191, 149],
            ),
        ];
        for (xs, scale, zp, want) in cases {
            let (s, z) = quantization_params_fast(xs);
            assert!((s - scale).abs() < 1e-8, "{s} {scale}");
            assert_eq!(z, zp);
            let mut ys = vec![0; xs.len()];
            quantize_slice(xs, s, z, &mut ys);
            assert_eq!(ys, want);
        }
    }

    /// The vectorized op gives the bits of the element-by-element definition on ranges of
    /// every sign, ties (x / scale exactly half-way) and lengths off the lane count.
    #[test]
    fn vectorized_equals_the_definition() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        for (len, lo, hi) in [
            (1, -1.0, 1.0),
            (37, 0.5, 3.0),
            (1000, -7.0, -0.1),
            (4099, -2.0, 5.0),
        ] {
            let mut xs: Vec<f32> = (0..len).map(|_| lo + (hi - lo) * next()).collect();
            let (scale, _) = quantization_params(xs.iter().copied());
            // Half-way values: every seventh element at (k + 0.5) · scale, inside the range.
            for x in xs.iter_mut().step_by(7) {
                *x = ((*x / scale).floor() + 0.5) * scale;
            }
            let (scale, zp) = quantization_params(xs.iter().copied());
            assert_eq!(quantization_params_fast(&xs), (scale, zp));
            let mut ys = vec![0; len];
            quantize_slice(&xs, scale, zp, &mut ys);
            for (x, y) in xs.iter().zip(&ys) {
                assert_eq!(*y, quantize(*x, scale, zp), "{x}");
            }
        }
        // NaN lands on 0 and infinities on the ends, as the element-by-element definition.
        let odd = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0, -1.0];
        let mut ys = [7u8; 5];
        quantize_slice(&odd, 0.01, 100, &mut ys);
        for (x, y) in odd.iter().zip(&ys) {
            assert_eq!(*y, quantize(*x, 0.01, 100), "{x}");
        }
        // onnxruntime's scale for an all-zero tensor.
        assert_eq!(quantization_params_fast(&[0.0; 40]), (1.0, 0));
    }
}
