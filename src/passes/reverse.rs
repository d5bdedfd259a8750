//! Reversals along one axis (`Slice` with step -1, which tract types as `Downsample` with
//! stride -1) onto a copy of whole blocks, in plan optimization.
//!
//! Exporters write a backward recurrent pass as a forward one between two reversals of the
//! time axis (madmom's beat trackers, Keras `go_backwards`). tract copies the reversed view
//! element by element through dynamic-rank indexing: a `[600, 266]` float input took 28 ms of
//! a 74 ms run, more than the six LSTMs around it. Reversed here, each slice along the axis
//! is one `memcpy`.
//!
//! Such an export reads one tensor twice: `Unsqueeze` into the forward pass, and `Slice(step=-1)`
//! then `Unsqueeze` into the backward one. tract's reshape takes its input by value, so with a
//! second reader it copies the whole tensor every run (the madmom-like model's `[600, 266]`
//! input: a sixth of its run, most of it page faults on the fresh buffer). When the reversal's
//! only reader is the same axis insertion or removal as a sibling's, the reversal is moved after
//! the sibling ([`reversals_after_shapes`]): the tensor then has one reader, reshaped in place.

use tract_core::ops::downsample::Downsample;
use tract_hir::internal::*;

/// Replaces every `Downsample` with stride -1 and modulo 0 (a reversal) of a plain datum
/// type with [`ReverseAxis`]; returns how many.
pub(crate) fn reversals(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(down) = node.op_as::<Downsample>() else {
            continue;
        };
        let fact = model.outlet_fact(node.inputs[0])?;
        if down.stride != -1 || down.modulo != 0 || !fact.datum_type.is_copy() {
            continue;
        }
        if fact.exotic_fact.is_some() {
            continue;
        }
        let op = ReverseAxis { axis: down.axis };
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?;
        patch.apply(model)?;
        replaced += 1;
    }
    if replaced > 0 {
        reversals_after_shapes(model)?;
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(replaced)
}

/// `x → ReverseAxis(a) → S` where `x` also feeds a node `S2` with the same `AxisOp` as `S` (an
/// axis added or removed) becomes `x → S2 → ReverseAxis(a')`, `a'` being `a` seen through the
/// `AxisOp`. Values are unchanged: a reversal commutes with adding or removing another axis.
/// Returns how many reversals were moved.
fn reversals_after_shapes(model: &mut TypedModel) -> TractResult<usize> {
    let mut moved = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(rev) = node.op_as::<ReverseAxis>() else {
            continue;
        };
        let readers = model.outlet_successors(node.id.into());
        let [reader] = readers else {
            continue;
        };
        let shape_node = model.node(reader.node);
        let Some(shape) = shape_node.op_as::<AxisOp>() else {
            continue;
        };
        if !matches!(shape.canonical().as_ref(), AxisOp::Add(_) | AxisOp::Rm(_)) {
            continue;
        }
        let Some(axis) = shape.transform_axis(rev.axis) else {
            continue;
        };
        let x = node.inputs[0];
        let sibling = model
            .outlet_successors(x)
            .iter()
            .find(|s| s.node != node.id && model.node(s.node).op_as::<AxisOp>() == Some(shape));
        let Some(sibling) = sibling.map(|s| OutletId::new(s.node, 0)) else {
            continue;
        };
        let mut patch = TypedModelPatch::default();
        let shaped = patch.tap_model(model, sibling)?;
        let name = format!("{}.after_{}", node.name, model.node(sibling.node).name);
        let reversed = patch.wire_node(name, ReverseAxis { axis }, &[shaped])?[0];
        patch.shunt_outside(model, shape_node.id.into(), reversed)?;
        patch.apply(model)?;
        moved += 1;
    }
    if moved > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(moved)
}

/// The input with its `axis` reversed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ReverseAxis {
    pub(crate) axis: usize,
}

impl Op for ReverseAxis {
    fn name(&self) -> StaticName {
        "ReverseAxis".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("axis: {}", self.axis)])
    }

    op_as_typed_op!();
}

impl EvalOp for ReverseAxis {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        // The last reader of a plain tensor reverses it where it is: a fresh buffer of that size
        // costs page faults every run (the allocator gives it back to the system in between).
        match Arc::try_unwrap(input.into_arc_tensor()) {
            Ok(mut owned) if owned.try_as_plain_ram().is_ok() => {
                reverse_axis_in_place(&mut owned, self.axis)?;
                Ok(tvec!(owned.into_tvalue()))
            }
            Ok(owned) => Ok(tvec!(reverse_axis(&owned, self.axis)?.into_tvalue())),
            Err(shared) => Ok(tvec!(reverse_axis(&shared, self.axis)?.into_tvalue())),
        }
    }
}

/// How reversing `axis` of `t` moves its bytes: `outer` runs of `n` blocks of `block` bytes.
fn blocks(t: &Tensor, axis: usize) -> TractResult<(usize, usize, usize)> {
    let shape = t.shape();
    ensure!(
        axis < shape.len(),
        "axis {axis} of a rank {} tensor",
        shape.len()
    );
    let dt = t.datum_type();
    ensure!(dt.is_copy(), "reversing {dt:?}");
    let block = shape[axis + 1..].iter().product::<usize>() * dt.size_of();
    Ok((shape[..axis].iter().product(), shape[axis], block))
}

/// `t` with `axis` reversed: each block of the axes after it copied whole.
pub(crate) fn reverse_axis(t: &Tensor, axis: usize) -> TractResult<Tensor> {
    let (outer, n, block) = blocks(t, axis)?;
    // SAFETY: every byte of the output is written below (outer · n blocks of `block` bytes).
    let mut out = unsafe { Tensor::uninitialized_dt(t.datum_type(), t.shape())? };
    let src = t.try_as_plain_ram()?;
    let src = src.as_bytes();
    let mut dst = out.try_as_plain_ram_mut()?;
    let dst = dst.as_bytes_mut();
    for o in 0..outer {
        let base = o * n * block;
        for i in 0..n {
            let from = base + i * block;
            let to = base + (n - 1 - i) * block;
            dst[to..to + block].copy_from_slice(&src[from..from + block]);
        }
    }
    Ok(out)
}

/// `t` with `axis` reversed in its own buffer: blocks swapped pairwise from both ends.
pub(crate) fn reverse_axis_in_place(t: &mut Tensor, axis: usize) -> TractResult<()> {
    let (outer, n, block) = blocks(t, axis)?;
    let mut data = t.try_as_plain_ram_mut()?;
    let data = data.as_bytes_mut();
    for o in 0..outer {
        let run = &mut data[o * n * block..(o + 1) * n * block];
        for i in 0..n / 2 {
            let (front, back) = run.split_at_mut((n - 1 - i) * block);
            front[i * block..(i + 1) * block].swap_with_slice(&mut back[..block]);
        }
    }
    Ok(())
}

impl TypedOp for ReverseAxis {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(self.axis < inputs[0].rank());
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverses_each_axis_like_a_negative_step() {
        let a = ndarray::Array::from_shape_fn((3, 4, 5), |(i, j, k)| (i * 100 + j * 10 + k) as f32);
        let t = a.clone().into_dyn().into_tensor();
        for axis in 0..3 {
            let got = reverse_axis(&t, axis).unwrap();
            let mut want = a.clone();
            want.invert_axis(ndarray::Axis(axis));
            assert_eq!(
                got.to_plain_array_view::<f32>().unwrap(),
                want.into_dyn().view(),
                "axis {axis}"
            );
        }
        let empty = Tensor::zero::<i64>(&[0, 3]).unwrap();
        assert_eq!(reverse_axis(&empty, 0).unwrap().shape(), &[0, 3]);
        // In place, odd and even lengths along each axis.
        for dims in [[3, 4, 5], [4, 5, 2], [1, 1, 7]] {
            let a = ndarray::Array::from_shape_fn(dims, |(i, j, k)| (i * 100 + j * 10 + k) as f32);
            for axis in 0..3 {
                let mut t = a.clone().into_dyn().into_tensor();
                reverse_axis_in_place(&mut t, axis).unwrap();
                assert_eq!(
                    t,
                    reverse_axis(&a.clone().into_dyn().into_tensor(), axis).unwrap()
                );
            }
        }
    }

    #[test]
    fn the_pass_gives_tracts_values() {
        // A graph reversing its input's first axis, as tract runs it and after the pass.
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([4, 3])).unwrap();
        let y = model
            .wire_node("rev", Downsample::new(0, -1, 0), &[x])
            .unwrap();
        model.select_output_outlets(&y).unwrap();
        let input = ndarray::Array::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f32)
            .into_dyn()
            .into_tensor();
        let run = |m: TypedModel| {
            SimplePlan::new(m)
                .unwrap()
                .run(tvec!(input.clone().into_tvalue()))
                .unwrap()
                .remove(0)
                .into_tensor()
        };
        let theirs = run(model.clone());
        let mut ours = model;
        assert_eq!(reversals(&mut ours).unwrap(), 1);
        assert!(ours.nodes().iter().any(|n| n.op_is::<ReverseAxis>()));
        assert_eq!(run(ours), theirs);
    }

    #[test]
    fn a_reversal_moves_after_its_siblings_reshape() {
        // x read twice, as a bidirectional export does: Unsqueeze into the forward pass,
        // reversal then the same Unsqueeze into the backward one; and a third reader of
        // the reversal's axis removed, which is left alone.
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([5, 3])).unwrap();
        let fwd = model.wire_node("fwd", AxisOp::Add(1), &[x]).unwrap();
        let rev = model
            .wire_node("rev", Downsample::new(0, -1, 0), &[x])
            .unwrap();
        let bwd = model.wire_node("bwd", AxisOp::Add(1), &rev).unwrap();
        let y = model.add_source("y", f32::fact([1, 4, 2])).unwrap();
        let y_rev = model
            .wire_node("y_rev", Downsample::new(1, -1, 0), &[y])
            .unwrap();
        let y_rm = model.wire_node("y_rm", AxisOp::Rm(0), &y_rev).unwrap();
        model
            .select_output_outlets(&[fwd[0], bwd[0], y_rm[0]])
            .unwrap();
        let inputs = tvec!(
            ndarray::Array::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f32)
                .into_dyn()
                .into_tvalue(),
            ndarray::Array::from_shape_fn((1, 4, 2), |(_, i, j)| (i * 2 + j) as f32)
                .into_dyn()
                .into_tvalue()
        );
        let run = |m: TypedModel| SimplePlan::new(m).unwrap().run(inputs.clone()).unwrap();
        let theirs = run(model.clone());
        let mut ours = model;
        assert_eq!(reversals(&mut ours).unwrap(), 2);
        let x = ours.input_outlets().unwrap()[0];
        assert_eq!(ours.outlet_successors(x).len(), 1, "{ours}");
        let moved = ours
            .nodes()
            .iter()
            .find(|n| n.name.starts_with("rev.after_"))
            .unwrap();
        assert_eq!(moved.op_as::<ReverseAxis>(), Some(&ReverseAxis { axis: 0 }));
        assert_eq!(run(ours), theirs);
    }
}
