//! Float convolutions onto [`PackedConv`], [`DepthwiseConv`] and [`ChannelsLastConv`], before
//! tract's codegen lowers them.
//!
//! It runs in plan optimization only ([`crate::model::optimize_typed`], after declutter and
//! constant folding): the analyses before it (a stream's causal-convolution history in
//! [`super::state_io`], the time axis in [`super::time_axis`]) see tract's own `Conv`, and by
//! now tract has folded what it folds into a convolution (a zero `Pad` before it, a `Mul` or
//! `Add` by channel after it). The 1×1 convolutions declutter turned into an einsum and a
//! bias `Add` are read back as convolutions ([`super::pointwise`]). A `Max` or `Min` by a
//! constant scalar right after the convolution (ReLU, clip), read by nothing else, is fused
//! into it, and so is a 2×2 max pooling at stride 2 after those (a conv stack's pooling),
//! bit for bit what [`super::maxpool`] computes.
//!
//! Left to tract: quantized, f16 and f64 convolutions, channels-last layouts other than
//! [`ChannelsLastConv`]'s (one spatial axis, stride 1, no padding, one group), three spatial
//! axes, weights or bias computed at run time, and depthwise convolutions on CPUs with
//! neither AVX-512 nor AVX2 (tract has its own kernel; a row-wise kernel of ours, tried for
//! the CRNN bench model, was slower than it).

use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::cnn::{Conv, MaxPool};
use tract_core::ops::math::{Max, Min};
use tract_hir::internal::*;

use crate::conv::{ChannelsLastConv, Clamp, DepthwiseConv, Isa, PackedConv};
use crate::kernels::Isa as GemmIsa;

/// Replaces the float convolutions [`PackedConv`] covers; returns how many.
pub(crate) fn packed_convs(model: &mut TypedModel) -> TractResult<usize> {
    packed_convs_with(model, Isa::best())
}

/// [`packed_convs`] with the given kernels (tests run each one this CPU has).
pub(crate) fn packed_convs_with(model: &mut TypedModel, isa: Isa) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let (op, last, after) = if let Some(conv) = node.op_as::<Conv>() {
            let facts = model.node_input_facts(id)?;
            let op = if conv.pool_spec.data_format.c_is_last() {
                ChannelsLastConv::from_conv(conv, &facts, GemmIsa::selected())?
                    .map(Ours::ChannelsLast)
            } else if is_depthwise(conv) {
                DepthwiseConv::from_conv(conv, &facts, isa)?.map(Ours::Depthwise)
            } else {
                PackedConv::from_conv(conv, &facts, isa)?.map(Ours::Packed)
            };
            let Some(op) = op else {
                continue;
            };
            (op, OutletId::new(id, 0), vec![])
        } else if let Some(p) = super::pointwise::pointwise(model, id)? {
            let x = model.outlet_fact(node.inputs[0])?;
            let kernel = TypedFact::try_from(p.kernel)?;
            let bias = TypedFact::try_from(p.bias)?;
            let Some(op) = PackedConv::from_conv(&p.conv, &[x, &kernel, &bias], isa)? else {
                continue;
            };
            (Ours::Packed(op), p.last, p.after)
        } else {
            continue;
        };
        let (mut op, mut last) = (op, last);
        while let Some((next, clamp)) = fused_clamp(model, last, op.clamp())? {
            op = op.with_clamp(clamp);
            last = next;
        }
        let pooled = match &op {
            Ours::Packed(packed) if after.is_empty() => fused_pool(model, last, packed)?,
            _ => None,
        };
        if let Some((pooled, next)) = pooled {
            op = Ours::Packed(pooled);
            last = next;
        }
        let mut patch = TypedModelPatch::new(format!("packed conv {}", node.name));
        let input = patch.tap_model(model, node.inputs[0])?;
        let mut wire = match op {
            Ours::Packed(op) => patch.wire_node(&node.name, op, &[input])?[0],
            Ours::Depthwise(op) => patch.wire_node(&node.name, op, &[input])?[0],
            Ours::ChannelsLast(op) => patch.wire_node(&node.name, op, &[input])?[0],
        };
        for (j, axis_op) in after.into_iter().enumerate() {
            wire = patch.wire_node(format!("{}.axes.{j}", node.name), axis_op, &[wire])?[0];
        }
        // The same output as tract's, or nothing changes.
        let (mine, theirs) = (patch.outlet_fact(wire)?, model.outlet_fact(last)?);
        if mine.datum_type != theirs.datum_type || mine.shape != theirs.shape {
            continue;
        }
        patch.shunt_outside(model, last, wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    if replaced > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(replaced)
}

/// When `outlet` is read only by a 2×2 max pooling at stride 2 that
/// [`super::maxpool::MaxPool2x2`] would compute, `op` with the pooling fused and the pooling's
/// output (the pooled rows never leave the cache: the captcha stack's first layer wrote
/// 1.6 MB for its pooling to read back).
fn fused_pool(
    model: &TypedModel,
    outlet: OutletId,
    op: &PackedConv,
) -> TractResult<Option<(PackedConv, OutletId)>> {
    if op.pooled() {
        return Ok(None);
    }
    let Some(succ) = super::only_reader(model, outlet)? else {
        return Ok(None);
    };
    let node = model.node(succ.node);
    let Some(pool) = node.op_as::<MaxPool>() else {
        return Ok(None);
    };
    if !super::maxpool::covered(pool, model.outlet_fact(outlet)?) {
        return Ok(None);
    }
    Ok(op.with_pool().map(|op| (op, OutletId::new(succ.node, 0))))
}

/// One of our convolutions.
enum Ours {
    Packed(PackedConv),
    Depthwise(DepthwiseConv),
    ChannelsLast(ChannelsLastConv),
}

impl Ours {
    fn clamp(&self) -> Clamp {
        match self {
            Ours::Packed(op) => op.clamp(),
            Ours::Depthwise(op) => op.clamp(),
            Ours::ChannelsLast(op) => op.clamp(),
        }
    }

    fn with_clamp(&self, clamp: Clamp) -> Ours {
        match self {
            Ours::Packed(op) => Ours::Packed(op.with_clamp(clamp)),
            Ours::Depthwise(op) => Ours::Depthwise(op.with_clamp(clamp)),
            Ours::ChannelsLast(op) => Ours::ChannelsLast(op.with_clamp(clamp)),
        }
    }
}

fn is_depthwise(conv: &Conv) -> bool {
    conv.group > 1
        && conv.group == conv.pool_spec.input_channels
        && conv.group == conv.pool_spec.output_channels
}

/// When `outlet` is read only by a `Max` (before any `Min`) or a `Min` by a constant f32
/// scalar giving the same shape, that node's output and the clamp with it added.
pub(super) fn fused_clamp(
    model: &TypedModel,
    outlet: OutletId,
    clamp: Clamp,
) -> TractResult<Option<(OutletId, Clamp)>> {
    let Some(succ) = super::only_reader(model, outlet)? else {
        return Ok(None);
    };
    let node = model.node(succ.node);
    let Some(bin) = node.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if node.inputs.len() != 2 || bin.1.is_some_and(|dt| dt != DatumType::F32) {
        return Ok(None);
    }
    let other = model.outlet_fact(node.inputs[1 - succ.slot])?;
    let Some(value) = other
        .konst
        .as_ref()
        .filter(|k| k.datum_type() == DatumType::F32 && k.len() >= 1 && k.is_uniform())
    else {
        return Ok(None);
    };
    let value = value.try_as_plain_ram()?.as_slice::<f32>()?[0];
    let mine = model.outlet_fact(outlet)?;
    let theirs = &node.outputs[0].fact;
    if value.is_nan() || theirs.datum_type != DatumType::F32 || theirs.shape != mine.shape {
        return Ok(None);
    }
    let fused = if bin.0.is::<Max>() && clamp.lo.is_none() && clamp.hi.is_none() {
        Clamp {
            lo: Some(value),
            ..clamp
        }
    } else if bin.0.is::<Min>() && clamp.hi.is_none() {
        Clamp {
            hi: Some(value),
            ..clamp
        }
    } else {
        return Ok(None);
    };
    Ok(Some((OutletId::new(succ.node, 0), fused)))
}
