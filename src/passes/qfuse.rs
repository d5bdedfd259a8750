//! The float epilogue of a quantized convolution or product folded into rnn-run's integer op
//! ([`crate::qint`]), in plan optimization.
//!
//! onnxruntime's `quantize_dynamic` follows every `ConvInteger` with an int32 `Add` of the
//! bias (per output channel), a `Cast` to float and a `Mul` by the product of the two scales,
//! and every `MatMulInteger` with the `Cast`, the `Mul` and a float `Add` of the bias. tract
//! runs each as a pass over the whole tensor (its int32 `Add` with broadcasting alone cost
//! ddddocr a fifth of its time); folded, the op writes the final floats from its sums. The
//! folded op computes the same operations on the same values in the same order (an int32
//! wrapping add, the conversion, one float multiply, one float add), so the results are the
//! same bits.

use tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_core::ops::cast::Cast;
use tract_core::ops::math::{Add, Mul};
use tract_hir::internal::*;

use crate::qint::conv::QConv;
use crate::qint::matmul::QMatMul;

/// Folds what follows each unfused [`QConv`] and [`QMatMul`]; returns how many were folded.
pub(crate) fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    let mut fused = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let found = if let Some(op) = node
            .op_as::<QConv>()
            .filter(|op| op.fused == Default::default())
        {
            conv_chain(model, id, op)?.map(|(op, e, l)| (Box::new(op) as Box<dyn TypedOp>, e, l))
        } else if let Some(op) = node
            .op_as::<QMatMul>()
            .filter(|op| op.fused == Default::default())
        {
            matmul_chain(model, id, op)?.map(|(op, e, l)| (Box::new(op) as Box<dyn TypedOp>, e, l))
        } else {
            None
        };
        let Some((op, extra, last)) = found else {
            continue;
        };
        let mut patch = TypedModelPatch::new(format!("fused epilogue {}", node.name));
        let mut inputs = tvec![];
        for outlet in node.inputs.iter().chain(&extra) {
            inputs.push(patch.tap_model(model, *outlet)?);
        }
        let out = patch.wire_node(&node.name, op, &inputs)?[0];
        patch.shunt_outside(model, last, out)?;
        patch.apply(model)?;
        fused += 1;
    }
    if fused > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(fused)
}

/// An op with its extra inputs, and the outlet it replaces.
type Chain<O> = Option<(O, TVec<OutletId>, OutletId)>;

/// `QConv → [Add int32 bias per channel] → Cast f32 → [Mul by one float]`.
fn conv_chain(model: &TypedModel, id: usize, op: &QConv) -> TractResult<Chain<QConv>> {
    let mut op = op.clone();
    let mut extra = tvec![];
    let mut last = OutletId::new(id, 0);
    let shape = model.outlet_fact(last)?.shape.clone();
    let cout = shape.get(1).cloned();
    if let Some((next, other)) = binary::<Add>(model, last, DatumType::I32)? {
        let fact = model.outlet_fact(other)?;
        let per_channel = fact.rank() == shape.rank()
            && fact.shape.iter().enumerate().all(|(axis, d)| {
                if axis == 1 {
                    Some(d) == cout.as_ref()
                } else {
                    d.is_one()
                }
            });
        if per_channel {
            op.fused.bias = true;
            extra.push(other);
            last = next;
        }
    }
    let Some((next, mult)) = float_and_scale(model, last)? else {
        return Ok(None);
    };
    (op.fused.float, op.fused.mult) = (true, mult.is_some());
    extra.extend(mult);
    last = next;
    Ok(Some((op, extra, last)))
}

/// `Cast f32 → [Mul by one float]` after `last`: the outlet after them and the multiplier,
/// or `None` when no cast to float follows.
fn float_and_scale(
    model: &TypedModel,
    last: OutletId,
) -> TractResult<Option<(OutletId, Option<OutletId>)>> {
    let Some(mut last) = cast_to_f32(model, last)? else {
        return Ok(None);
    };
    let mut mult = None;
    if let Some((next, other)) = binary::<Mul>(model, last, DatumType::F32)? {
        if is_one_value(model.outlet_fact(other)?) {
            mult = Some(other);
            last = next;
        }
    }
    Ok(Some((last, mult)))
}

/// `QMatMul → Cast f32 → [Mul by one float] → [Add float bias per column]`.
fn matmul_chain(model: &TypedModel, id: usize, op: &QMatMul) -> TractResult<Chain<QMatMul>> {
    let mut op = op.clone();
    let mut extra = tvec![];
    let mut last = OutletId::new(id, 0);
    let shape = model.outlet_fact(last)?.shape.clone();
    let Some((next, mult)) = float_and_scale(model, last)? else {
        return Ok(None);
    };
    (op.fused.float, op.fused.mult) = (true, mult.is_some());
    extra.extend(mult);
    last = next;
    if let Some((next, other)) = binary::<Add>(model, last, DatumType::F32)? {
        let fact = model.outlet_fact(other)?;
        let rank = shape.rank();
        let per_column = fact.rank() == rank
            && fact.shape.iter().enumerate().all(|(axis, d)| {
                if axis + 1 == rank {
                    Some(d) == shape.last()
                } else {
                    d.is_one()
                }
            });
        if per_column {
            op.fused.bias = true;
            extra.push(other);
            last = next;
        }
    }
    Ok(Some((op, extra, last)))
}

/// The one node reading `outlet` (not a graph output), when it is a `Cast` to f32 of the same
/// shape: its output.
fn cast_to_f32(model: &TypedModel, outlet: OutletId) -> TractResult<Option<OutletId>> {
    let Some(succ) = super::only_reader(model, outlet)?.map(|r| r.node) else {
        return Ok(None);
    };
    let node = model.node(succ);
    let ok = node.op_as::<Cast>().is_some_and(|c| c.to == DatumType::F32)
        && node.outputs[0].fact.shape == model.outlet_fact(outlet)?.shape;
    Ok(ok.then(|| OutletId::new(succ, 0)))
}

/// The one node reading `outlet` (not a graph output), when it is the binary op `B` on
/// `outlet` and another operand of type `dt`, giving `dt` in `outlet`'s shape: its output and
/// the other operand.
fn binary<B: BinMiniOp>(
    model: &TypedModel,
    outlet: OutletId,
    dt: DatumType,
) -> TractResult<Option<(OutletId, OutletId)>> {
    let Some(succ) = super::only_reader(model, outlet)?.map(|r| r.node) else {
        return Ok(None);
    };
    let node = model.node(succ);
    let Some(bin) = node.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if !bin.0.is::<B>() || node.inputs.len() != 2 || bin.1.is_some_and(|d| d != dt) {
        return Ok(None);
    }
    let slot = node
        .inputs
        .iter()
        .position(|i| *i == outlet)
        .context("an input")?;
    let other = node.inputs[1 - slot];
    let out = &node.outputs[0].fact;
    let ok = other != outlet
        && model.outlet_fact(other)?.datum_type == dt
        && model.outlet_fact(outlet)?.datum_type == dt
        && out.datum_type == dt
        && out.shape == model.outlet_fact(outlet)?.shape;
    Ok(ok.then_some((OutletId::new(succ, 0), other)))
}

/// Whether a fact holds exactly one value.
fn is_one_value(fact: &TypedFact) -> bool {
    fact.shape.iter().all(|d| d.is_one())
}
