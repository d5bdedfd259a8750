//! Constant folding with a budget fit for a model loaded once and run many times.
//!
//! tract folds a node whose inputs are all constants only when its result is no larger than
//! its inputs (or 4 MiB): it saves memory. Quantized models lose by it. onnxruntime's
//! `DynamicQuantizeMatMul` becomes, in tract, a cast of the int8 weight matrix to int32 and a
//! sum over its rows, redone on every run: ddddocr's OCR head (a 1024 × 8210 matrix) spent
//! 40 ms of its 60 per run there, against 6 ms for onnxruntime's whole run. This pass folds
//! such nodes once, when the plan is made, while their results stay within
//! [`FOLD_BUDGET`] per node.

use tract_core::ops::konst::Const;
use tract_core::ops::source::TypedSource;
use tract_hir::internal::*;

/// The largest result folded into a constant (per node).
pub(crate) const FOLD_BUDGET: usize = 64 << 20;

/// Folds every stateless node whose inputs are all constants and whose results stay within
/// the budget, in one sweep in evaluation order: a node folded feeds its readers a constant
/// before they are looked at, so chains of constant work fold in the same sweep, and the
/// pass stays linear in the node count (the graph is compacted once, at the end).
pub(crate) fn fold_constants(model: &mut TypedModel) -> TractResult<()> {
    let mut patched = false;
    for id in model.eval_order()? {
        let node = model.node(id);
        if node.op_is::<Const>() || node.op_is::<TypedSource>() || node.inputs.is_empty() {
            continue;
        }
        if node.op.state(&EvalContext::out_of_plan())?.is_some() {
            continue;
        }
        let Some(inputs) = model
            .node_input_facts(id)?
            .iter()
            .map(|f| f.konst.clone().map(|k| k.into_tvalue()))
            .collect::<Option<TVec<TValue>>>()
        else {
            continue;
        };
        let planned: usize = node
            .outputs
            .iter()
            .map(|o| {
                o.fact.shape.as_concrete().map_or(usize::MAX, |s| {
                    s.iter()
                        .product::<usize>()
                        .saturating_mul(o.fact.datum_type.size_of())
                })
            })
            .fold(0usize, |a, b| a.saturating_add(b));
        // Packed operands (an exotic fact) have no plain shape: their size is that of what
        // they pack, the node's input.
        let planned = if node.outputs.iter().any(|o| o.fact.exotic_fact.is_some()) {
            inputs
                .iter()
                .map(|t| t.len() * t.datum_type().size_of())
                .sum()
        } else {
            planned
        };
        if planned > FOLD_BUDGET {
            continue;
        }
        let exotic: Vec<_> = node
            .outputs
            .iter()
            .map(|o| o.fact.exotic_fact.clone())
            .collect();
        let Ok(Some(values)) = node.op.eval_out_of_plan(inputs) else {
            continue;
        };
        let node_name = node.name.clone();
        let mut patch = TypedModelPatch::default();
        for (slot, value) in values.into_iter().enumerate() {
            let name = if slot > 0 {
                format!("{node_name}.{slot}")
            } else {
                node_name.clone()
            };
            let konst =
                Const::new_with_opt_exotic_fact(value.into_arc_tensor(), exotic[slot].clone())?;
            let wire = patch.wire_node(name, konst, &[])?[0];
            patch.shunt_outside(model, OutletId::new(id, slot), wire)?;
        }
        patch.apply(model)?;
        patched = true;
    }
    if patched {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(())
}
