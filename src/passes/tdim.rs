//! tract-onnx turns every ONNX cast to int64 into a cast to `TDim`, so that sizes computed
//! from shapes stay symbolic. Two consequences are mended here:
//! - some ops have no `TDim` kernel: `TopK` on such a value (legacy exports of
//!   `pack_padded_sequence(enforce_sorted=False)` sort the lengths that way) fails with
//!   "TDim is not a number" when it runs; they get int64 and cast back;
//! - a cast of a shape to int32 (tf2onnx writes `Shape → Cast(int32) → Slice → Cast(int64)`
//!   to build zero states) cannot hold a symbolic time axis, so a stream's graph would lose
//!   the whole size computation; such casts keep the shape's `TDim`.

use tract_core::ops::array::Topk;
use tract_core::ops::cast::cast;
use tract_hir::internal::*;

/// Wraps every `TopK` whose input is `TDim` in casts to int64 and back.
pub(crate) fn int64_for_tdim_less_ops(model: &mut TypedModel) -> TractResult<()> {
    let targets: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<Topk>())
        .filter(|n| {
            model
                .outlet_fact(n.inputs[0])
                .is_ok_and(|f| f.datum_type == DatumType::TDim)
        })
        .map(|n| n.id)
        .collect();
    for id in targets {
        let node = model.node(id).clone();
        let mut patch = TypedModelPatch::default();
        let inputs = node
            .inputs
            .iter()
            .map(|&i| patch.tap_model(model, i))
            .collect::<TractResult<TVec<_>>>()?;
        let values = patch.wire_node(
            model
                .unique_name(format!("{}.int64", node.name))
                .into_owned(),
            cast(DatumType::I64),
            &[inputs[0]],
        )?[0];
        let outputs = patch.wire_node(
            model
                .unique_name(format!("{}.on_int64", node.name))
                .into_owned(),
            node.op.clone(),
            &[values, inputs[1]],
        )?;
        let back = patch.wire_node(
            model
                .unique_name(format!("{}.tdim", node.name))
                .into_owned(),
            cast(DatumType::TDim),
            &[outputs[0]],
        )?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), back)?;
        patch.shunt_outside(model, OutletId::new(id, 1), outputs[1])?;
        patch.apply(model)?;
    }
    Ok(())
}

/// Makes every cast applied directly to a `Shape` output keep its symbolic sizes (`TDim`).
/// Only for graphs typed with a symbolic dimension: the values are sizes, which int32 holds.
pub(crate) fn symbolic_shape_casts(model: &mut InferenceModel) -> TractResult<()> {
    let casts: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.op.name() == "onnx.Cast" && n.inputs.len() == 1)
        .filter(|n| model.node(n.inputs[0].node).op.name() == "Shape")
        .map(|n| n.id)
        .collect();
    for id in casts {
        model.node_mut(id).op = Box::<tract_hir::ops::identity::Identity>::default();
    }
    Ok(())
}
