//! tract-onnx turns every ONNX cast to int64 into a cast to `TDim`, so that sizes computed
//! from shapes stay symbolic. Some ops have no `TDim` kernel: `TopK` on such a value (legacy
//! exports of `pack_padded_sequence(enforce_sorted=False)` sort the lengths that way) fails
//! with "TDim is not a number" when it runs. This pass hands them int64 and casts back.

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
            format!("{}.int64", node.name),
            cast(DatumType::I64),
            &[inputs[0]],
        )?[0];
        let outputs = patch.wire_node(
            format!("{}.on_int64", node.name),
            node.op.clone(),
            &[values, inputs[1]],
        )?;
        let back = patch.wire_node(
            format!("{}.tdim", node.name),
            cast(DatumType::TDim),
            &[outputs[0]],
        )?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), back)?;
        patch.shunt_outside(model, OutletId::new(id, 1), outputs[1])?;
        patch.apply(model)?;
    }
    Ok(())
}
