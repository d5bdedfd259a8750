//! 1-D pools whose channel count is not a number (time or batch as the channel axis) typed as
//! 2-D pools over a channel of one, so that a stream or a pool of streams can type them.
//!
//! `F.max_pool1d` over the features of a `[batch, time, features]` tensor is an ONNX `MaxPool`
//! whose channel axis is time. tract builds a pool for a fixed channel count ("Expect constant
//! integer depth"), which a stream's free time axis is not. Pooling works on each channel
//! alone, so `[n, c, l]` pooled with kernel `k` is `[n, 1, c, l]` pooled with kernel `[1, k]`,
//! with `c` a spatial axis the kernel does not cross: the same numbers, and a graph in which
//! the time axis passes through a one-frame kernel (per-step to the time analysis).

use tract_core::downcast_rs::Downcast;
use tract_core::ops::change_axes::AxisOp;
use tract_core::ops::cnn::{MaxPool, PaddingSpec, PoolSpec, SumPool};
use tract_core::ops::nn::DataFormat;
use tract_hir::infer::*;
use tract_hir::internal::*;
use tract_hir::ops::cnn::{HirMaxPool, HirSumPool};
use tract_hir::ops::expandable::Expansion;

/// Wraps every 1-D `MaxPool` and `AveragePool` (`SumPool`) of `model` so that it types with a
/// free channel count (see the module documentation). Other pools are left as they are.
pub(crate) fn free_channel_pools(model: &mut InferenceModel) -> TractResult<()> {
    for id in 0..model.nodes().len() {
        let Some(exp) = model
            .node(id)
            .op
            .as_op()
            .downcast_ref::<Box<dyn Expansion>>()
        else {
            continue;
        };
        let any = Downcast::as_any(&**exp);
        let wrapped = if let Some(p) = any.downcast_ref::<HirMaxPool>() {
            Pool::Max(p.clone())
        } else if let Some(p) = any.downcast_ref::<HirSumPool>() {
            Pool::Sum(p.clone())
        } else {
            continue;
        };
        let spec = wrapped.spec();
        if spec.kernel_shape.len() != 1 || spec.data_format != DataFormat::NCHW {
            continue;
        }
        model.node_mut(id).op = tract_hir::ops::expandable::expand(FreeChannelPool(wrapped));
    }
    Ok(())
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
enum Pool {
    Max(HirMaxPool),
    Sum(HirSumPool),
}

impl Pool {
    fn spec(&self) -> &PoolSpec {
        match self {
            Pool::Max(p) => &p.pool_spec,
            Pool::Sum(p) => &p.pool_spec,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct FreeChannelPool(Pool);

impl Expansion for FreeChannelPool {
    fn name(&self) -> StaticName {
        match &self.0 {
            Pool::Max(p) => p.name(),
            Pool::Sum(p) => p.name(),
        }
    }

    fn nboutputs(&self) -> TractResult<usize> {
        match &self.0 {
            Pool::Max(p) => p.nboutputs(),
            Pool::Sum(p) => p.nboutputs(),
        }
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        match &self.0 {
            Pool::Max(p) => p.rules(s, inputs, outputs),
            Pool::Sum(p) => p.rules(s, inputs, outputs),
        }
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        let with_indices = matches!(&self.0, Pool::Max(p) if p.with_index_outputs.is_some());
        if fact.rank() != 3 || fact.shape[1].to_usize().is_ok() || with_indices {
            return match &self.0 {
                Pool::Max(p) => p.wire(prefix, model, inputs),
                Pool::Sum(p) => p.wire(prefix, model, inputs),
            };
        }
        let spec = self.0.spec();
        let two = |v: &TVec<usize>, one: usize| -> TVec<usize> { tvec![one, v[0]] };
        let padding = match &spec.padding {
            PaddingSpec::Explicit(b, a) => PaddingSpec::Explicit(two(b, 0), two(a, 0)),
            PaddingSpec::ExplicitOnnxPool(b, a, ceil) => {
                PaddingSpec::ExplicitOnnxPool(two(b, 0), two(a, 0), *ceil)
            }
            other => other.clone(),
        };
        let spec2 = PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: two(&spec.kernel_shape, 1),
            padding,
            dilations: spec.dilations.as_ref().map(|d| two(d, 1)),
            strides: spec.strides.as_ref().map(|s| two(s, 1)),
            input_channels: 1,
            output_channels: 1,
        };
        let x = model.wire_node(format!("{prefix}.channel_as_row"), AxisOp::Add(1), inputs)?;
        let pooled = match &self.0 {
            Pool::Max(_) => model.wire_node(
                prefix,
                MaxPool {
                    pool_spec: spec2,
                    with_index_outputs: None,
                },
                &x,
            )?,
            Pool::Sum(p) => model.wire_node(
                prefix,
                SumPool {
                    pool_spec: spec2,
                    count_include_pad: p.count_include_pad,
                    normalize: p.normalize,
                },
                &x,
            )?,
        };
        model.wire_node(format!("{prefix}.row_as_channel"), AxisOp::Rm(1), &pooled)
    }
}
