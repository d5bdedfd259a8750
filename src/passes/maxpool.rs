//! 2×2 max pooling with stride 2 (the CRNN and captcha stacks' pooling) onto a plain loop, in
//! plan optimization.
//!
//! tract's `MaxPool` has a vectorized 2×2 kernel for stride 1 only; with stride 2 it reads every
//! tap through bounds checks, one output at a time: the captcha model's three poolings took a
//! quarter of its run (1.1 ms, 2.4 GB/s), more than its GRUs. [`MaxPool2x2`] reads two input
//! rows at a time and folds the four taps in tract's order with tract's `f32::max` from
//! `f32::MIN`, so its values are tract's bit for bit (NaN taps skipped, signed zeros alike).
//!
//! Only f32, NCHW, no padding, no dilation, no index output; anything else stays tract's.

use tract_core::ops::cnn::{MaxPool, PaddingSpec, PoolSpec};
use tract_core::ops::nn::DataFormat;
use tract_hir::internal::*;

/// Replaces every `MaxPool` this op covers with [`MaxPool2x2`]; returns how many.
pub(crate) fn maxpools(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(pool) = node.op_as::<MaxPool>() else {
            continue;
        };
        let fact = model.outlet_fact(node.inputs[0])?;
        if !covered(pool, fact) {
            continue;
        }
        let op = MaxPool2x2 {
            pool_spec: pool.pool_spec.clone(),
        };
        replaced += super::replace_if_same(model, id, op)? as usize;
    }
    Ok(replaced)
}

pub(super) fn covered(pool: &MaxPool, input: &TypedFact) -> bool {
    let spec = &pool.pool_spec;
    let zeros = |v: &[usize]| v.iter().all(|&p| p == 0);
    let no_padding = match &spec.padding {
        PaddingSpec::Valid => true,
        PaddingSpec::Explicit(before, after) => zeros(before) && zeros(after),
        PaddingSpec::ExplicitOnnxPool(before, after, ceil) => {
            zeros(before) && zeros(after) && !ceil
        }
        _ => false,
    };
    pool.with_index_outputs.is_none()
        && input.datum_type == f32::datum_type()
        && input.exotic_fact.is_none()
        && input.rank() == 4
        && spec.data_format == DataFormat::NCHW
        && spec.kernel_shape.as_slice() == [2, 2]
        && spec.strides.as_deref() == Some(&[2, 2])
        && spec
            .dilations
            .as_deref()
            .is_none_or(|d| d.iter().all(|&d| d == 1))
        && no_padding
}

/// tract's `MaxPool` with a 2×2 kernel, stride 2 and no padding, on f32 NCHW.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MaxPool2x2 {
    pool_spec: PoolSpec,
}

impl Op for MaxPool2x2 {
    fn name(&self) -> StaticName {
        "MaxPool2x2".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(self.pool_spec.info())
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2x2 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(max_pool_2x2(&input)?.into_tvalue()))
    }
}

impl TypedOp for MaxPool2x2 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.pool_spec.output_facts(inputs)
    }

    as_op!();
}

/// Each 2×2 window of an `[N, C, H, W]` f32 tensor at stride 2 (a last odd row or column
/// dropped), its taps folded as tract folds them.
pub(crate) fn max_pool_2x2(input: &Tensor) -> TractResult<Tensor> {
    let &[n, c, h, w] = input.shape() else {
        bail!("2x2 max pooling of a rank {} tensor", input.rank());
    };
    let (oh, ow) = (h / 2, w / 2);
    let src = input.try_as_plain_ram()?;
    let src = src.as_slice::<f32>()?;
    // SAFETY: `pool` writes every element.
    let mut output = unsafe { Tensor::uninitialized::<f32>(&[n, c, oh, ow])? };
    let mut view = output.try_as_plain_ram_mut()?;
    let out = view.as_slice_mut::<f32>()?;
    if !out.is_empty() {
        pool_planes(src, out, h, w);
    }
    Ok(output)
}

/// `out` (`[planes, h / 2, w / 2]`) from `src` (`[planes, h, w]`), as [`MaxPool2x2`] computes
/// it (a convolution with the pooling fused, [`crate::conv::PackedConv`], pools its rows
/// with it).
pub(crate) fn pool_planes(src: &[f32], out: &mut [f32], h: usize, w: usize) {
    // The same loop compiled for the vector sets this CPU has: the baseline's (SSE2)
    // version of `f32::max` costs a few instructions per value.
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { pool_avx512(src, out, h, w) };
    } else if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { pool_avx2(src, out, h, w) };
    }
    pool(src, out, h, w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn pool_avx512(src: &[f32], out: &mut [f32], h: usize, w: usize) {
    pool(src, out, h, w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pool_avx2(src: &[f32], out: &mut [f32], h: usize, w: usize) {
    pool(src, out, h, w)
}

/// `out` (`[planes, h / 2, w / 2]`) from `src` (`[planes, h, w]`).
#[inline(always)]
fn pool(src: &[f32], out: &mut [f32], h: usize, w: usize) {
    let (oh, ow) = (h / 2, w / 2);
    for (plane, dst) in src.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
        for (y, row) in dst.chunks_exact_mut(ow).enumerate() {
            let top = &plane[2 * y * w..][..2 * ow];
            let bottom = &plane[(2 * y + 1) * w..][..2 * ow];
            for ((o, t), b) in row
                .iter_mut()
                .zip(top.chunks_exact(2))
                .zip(bottom.chunks_exact(2))
            {
                *o = f32::MIN.max(t[0]).max(t[1]).max(b[0]).max(b[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::cnn::PoolSpec;

    fn spec(padding: PaddingSpec, c: usize) -> PoolSpec {
        PoolSpec::new(
            DataFormat::NCHW,
            tvec!(2, 2),
            padding,
            None,
            Some(tvec!(2, 2)),
            c,
            c,
        )
    }

    #[test]
    fn the_pass_gives_tracts_bits() {
        // Odd and even sides, NaN, infinities and zeros of both signs among the taps.
        let specials = [
            f32::NAN,
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN,
        ];
        for (n, c, h, w) in [(1, 3, 6, 8), (2, 2, 7, 9), (1, 1, 2, 2), (1, 4, 3, 5)] {
            for padding in [
                PaddingSpec::Valid,
                PaddingSpec::ExplicitOnnxPool(tvec!(0, 0), tvec!(0, 0), false),
            ] {
                let mut model = TypedModel::default();
                let x = model.add_source("x", f32::fact([n, c, h, w])).unwrap();
                let pool = MaxPool::new(spec(padding, c), None);
                let y = model.wire_node("pool", pool, &[x]).unwrap();
                model.select_output_outlets(&y).unwrap();
                let mut state = 7u32;
                let input = ndarray::Array::from_shape_fn((n, c, h, w), |_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    match state >> 28 {
                        0..=5 => specials[(state >> 28) as usize],
                        _ => (state >> 8) as f32 / 1e6 - 8.0,
                    }
                })
                .into_dyn()
                .into_tensor();
                let run = |m: TypedModel| {
                    let plan = m.into_optimized().unwrap().into_runnable().unwrap();
                    plan.run(tvec!(input.clone().into_tvalue()))
                        .unwrap()
                        .remove(0)
                        .into_tensor()
                };
                let theirs = run(model.clone());
                let mut ours = model;
                assert_eq!(maxpools(&mut ours).unwrap(), 1);
                let ours = run(ours);
                let bits = |t: &Tensor| {
                    let view = t.to_plain_array_view::<f32>().unwrap();
                    view.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                assert_eq!(ours.shape(), theirs.shape(), "{n}x{c}x{h}x{w}");
                assert_eq!(bits(&ours), bits(&theirs), "{n}x{c}x{h}x{w}");
            }
        }
    }

    #[test]
    fn a_side_of_one_gives_an_empty_output() {
        // tract's own kernel panics here (a zero chunk size); this one gives what the
        // output shape says.
        let t = Tensor::zero::<f32>(&[1, 4, 1, 5]).unwrap();
        assert_eq!(max_pool_2x2(&t).unwrap().shape(), &[1, 4, 0, 2]);
    }

    #[test]
    fn other_poolings_stay_tracts() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 2, 6, 6])).unwrap();
        let padded = spec(PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1)), 2);
        let mut stride1 = spec(PaddingSpec::Valid, 2);
        stride1.strides = None;
        let ceil = spec(
            PaddingSpec::ExplicitOnnxPool(tvec!(0, 0), tvec!(0, 0), true),
            2,
        );
        for (i, s) in [padded, stride1, ceil].into_iter().enumerate() {
            model
                .wire_node(format!("p{i}"), MaxPool::new(s, None), &[x])
                .unwrap();
        }
        assert_eq!(maxpools(&mut model).unwrap(), 0);
    }
}
