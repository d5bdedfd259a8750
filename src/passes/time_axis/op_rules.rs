//! The rules of recurrent nodes and of the ops that move, index, gather, resize or convolve
//! the followed axis.

use super::*;

pub(super) fn recurrent(
    ctx: &Ctx,
    op: &NativeRecurrent,
    inputs: &[Flow],
    carried: &mut Vec<Carried>,
) -> TractResult<Rule> {
    let spec = op.spec();
    let x = inputs[0];
    if inputs.iter().all(|f| *f == Flow::Static) {
        return Ok(Ok(ctx.same(Flow::Static)));
    }
    if ctx.mode == Mode::Batch {
        return recurrent_batch(ctx, op, inputs);
    }
    if inputs[1..].contains(&Flow::Final) {
        return Ok(Err(
            "starts from a state computed after the chunk's last step (an encoder's final \
             state), which changes with every chunk"
                .into(),
        ));
    }
    if inputs[1..].iter().any(|f| *f != Flow::Static) {
        return Ok(Err(
            "takes per-step values as weights, lengths or initial states".into(),
        ));
    }
    let axis = seq_axis(spec.layout);
    match x {
        Flow::Step(a) if a == axis => {}
        Flow::Step(_) => {
            return Ok(Err(
                "runs over an axis other than the time axis (the time axis is its batch)".into(),
            ))
        }
        Flow::Final => {
            return Ok(Err(
                "runs over values computed after the chunk's last step".into()
            ))
        }
        _ => return Ok(Err("runs over a length computation".into())),
    }
    if spec.direction != Direction::Forward {
        return Ok(Err(format!(
            "runs direction '{}': a backward pass needs the whole sequence",
            spec.direction.as_str()
        )));
    }
    if spec.slots.sequence_lens.is_some() {
        return Ok(Err(
            "takes sequence_lens, which describe whole sequences, not chunks".into(),
        ));
    }
    if !op.weights_prepared() {
        return Ok(Err(
            "has weights computed while the graph runs; streaming needs them constant".into(),
        ));
    }
    carried.push(Carried::Recurrent { node: ctx.node.id });
    let slots = &spec.slots;
    let mut flows = vec![Flow::Final; ctx.node.outputs.len()];
    if let Some(y) = slots.y {
        flows[y] = Flow::Step(axis);
    }
    Ok(Ok(flows))
}

/// A recurrent node keeps its batch entries apart: X, the states and the outputs share one
/// batch axis (weights stay static).
pub(super) fn recurrent_batch(
    ctx: &Ctx,
    op: &NativeRecurrent,
    inputs: &[Flow],
) -> TractResult<Rule> {
    let batch_major = op.spec().layout == Layout::BatchMajor;
    let (x_batch, y_batch, state_batch) = if batch_major { (0, 0, 0) } else { (1, 2, 1) };
    if inputs[0] != Flow::Step(x_batch) {
        return Ok(Err("runs over the batch axis".into()));
    }
    let (_, _, h0, c0) = op.run_input_positions();
    for (slot, flow) in inputs.iter().enumerate().skip(1) {
        let state = Some(slot) == h0 || Some(slot) == c0;
        let ok = match flow {
            Flow::Static => !state || ctx.input_fact(slot)?.shape[state_batch].is_one(),
            Flow::Step(a) => state && *a == state_batch,
            _ => false,
        };
        if !ok {
            return Ok(Err(format!(
                "takes input {slot} in a way that mixes the entries of the batch axis"
            )));
        }
    }
    let slots = &op.spec().slots;
    let mut flows = vec![Flow::Step(state_batch); ctx.node.outputs.len()];
    if let Some(y) = slots.y {
        flows[y] = Flow::Step(y_batch);
    }
    Ok(Ok(flows))
}

pub(super) fn einsum_rule(ctx: &Ctx, einsum: &EinSum, inputs: &[Flow]) -> TractResult<Rule> {
    let mut repr = None;
    for (slot, flow) in inputs.iter().enumerate() {
        if let Flow::Step(a) = flow {
            let Some(axis) = einsum
                .axes
                .iter_all_axes()
                .find(|ax| ax.inputs.get(slot).is_some_and(|p| p.contains(a)))
            else {
                return Ok(Err("has an axis mapping rnn-run cannot follow".into()));
            };
            if repr.is_some_and(|r| r != axis.repr) {
                return Ok(Err(
                    "multiplies per-step values across different axes".into()
                ));
            }
            repr = Some(axis.repr);
        }
    }
    let repr = repr.expect("a step input");
    let axis = einsum.axes.axis(repr)?;
    for (slot, flow) in inputs.iter().enumerate() {
        if *flow == Flow::Static {
            for &p in &axis.inputs[slot] {
                if !ctx.input_fact(slot)?.shape[p].is_one() {
                    return Ok(Err("broadcasts a value along the time axis".into()));
                }
            }
        }
    }
    match axis.outputs[0].as_slice() {
        [out] => Ok(Ok(vec![Flow::Step(*out)])),
        [] => Ok(Err(
            "sums over the time axis (a product across time steps), which needs the whole \
             sequence"
                .into(),
        )),
        _ => Ok(Err("has an axis mapping rnn-run cannot follow".into())),
    }
}

pub(super) fn axis_op_rule(ctx: &Ctx, op: &AxisOp, axis: usize) -> TractResult<Rule> {
    if let Some(to) = op.transform_axis(axis) {
        return Ok(Ok(vec![Flow::Step(to)]));
    }
    // A reshape that involves the time axis keeps it whole when the elements before it (and
    // so after it) are the same in and out: each step's block is moved as it is.
    let input = &ctx.input_fact(0)?.shape;
    let output = &ctx.node.outputs[0].fact.shape;
    let before = |dims: &[TDim], upto: usize| -> TDim { dims[..upto].iter().product() };
    let Some(to) = output.iter().position(|d| is_s(d, ctx.s)) else {
        // Merged with the axes after it (features), the axis it lands on starts where time
        // did; merged with those before it (`x.reshape(b * t, ...)`), its steps become batch
        // entries.
        let merged = output.iter().position(|d| mentions(d, ctx.s));
        let into_batch = merged.is_some_and(|m| before(output, m) != before(input, axis));
        return Ok(Err(if into_batch {
            "folds the time axis into the batch axis (its steps become batch entries, as \
             x.reshape(b * t, ...) does), whose count changes with every chunk"
                .into()
        } else {
            "reshapes the time axis into other axes (flattens steps into features)".into()
        }));
    };
    if before(input, axis) == before(output, to) {
        Ok(Ok(vec![Flow::Step(to)]))
    } else {
        Ok(Err(
            "reshapes the time axis into other axes (mixes steps with other dimensions)".into(),
        ))
    }
}

/// ONNX `Slice` as typed (begin, end, axes and steps as constant inputs): along the time
/// axis only the whole axis (local) or its last step (final) can stream.
pub(super) fn strided_slice_rule(ctx: &Ctx, op: &StridedSlice, axis: usize) -> TractResult<Rule> {
    let konst = |slot: Option<usize>| -> TractResult<Option<Arc<Tensor>>> {
        match slot {
            None => Ok(None),
            Some(s) => Ok(ctx.input_fact(s)?.konst.clone()),
        }
    };
    let (Some(begin), Some(end)) = (konst(Some(1))?, konst(Some(2))?) else {
        return Ok(Err("slices at bounds computed while the graph runs".into()));
    };
    let rank = ctx.input_fact(0)?.rank() as i64;
    let axes: Vec<usize> = match konst(op.optional_axes_input)? {
        Some(a) => a
            .cast_to::<i64>()?
            .try_as_plain_ram()?
            .as_slice::<i64>()?
            .iter()
            .map(|&a| (if a < 0 { a + rank } else { a }) as usize)
            .collect(),
        None => (0..begin.len()).collect(),
    };
    let strides: Vec<i32> = match konst(op.optional_steps_input)? {
        Some(s) => s
            .cast_to::<i32>()?
            .try_as_plain_ram()?
            .as_slice::<i32>()?
            .to_vec(),
        None => vec![1; axes.len()],
    };
    let shrunk_before = (0..axes.len())
        .filter(|&k| op.shrink_axis_mask & (1 << k) != 0 && axes[k] < axis)
        .count();
    let Some(k) = axes.iter().position(|&a| a == axis) else {
        return Ok(Ok(vec![Flow::Step(axis - shrunk_before)]));
    };
    let s = TDim::Sym(ctx.s.clone());
    let dim = op.prepare_one_dim(k, &s, &begin, &end, &strides)?;
    if dim.stride == 1 && dim.begin == TDim::Val(0) && dim.end == s && !dim.shrink {
        return Ok(Ok(vec![Flow::Step(axis - shrunk_before)]));
    }
    if dim.stride == 1 && dim.begin == s.clone() - 1 && dim.end == s {
        return Ok(Ok(vec![Flow::Final]));
    }
    if dim.stride < 0 {
        return Ok(Err(
            "reverses the time axis (a backward pass needs the whole sequence)".into(),
        ));
    }
    Ok(Err(reads_steps(&dim.begin, &dim.end, ctx.s)))
}

/// "reads steps 0..T-1 of the time axis ...", the chunk's length called T (never the
/// stream's symbol).
pub(super) fn reads_steps(begin: &TDim, end: &TDim, s: &Symbol) -> String {
    format!(
        "reads steps {}..{} of the time axis, a chunk of T steps (a shift, a roll or a window \
         of the steps mixes them across chunks; only the last step of a chunk is the whole \
         sequence's)",
        show_dim(begin, s),
        show_dim(end, s)
    )
}

pub(super) fn gather_rule(ctx: &Ctx, gather: &Gather, inputs: &[Flow]) -> TractResult<Rule> {
    let indices_rank = ctx.input_fact(1)?.rank();
    match (inputs[0], inputs[1]) {
        (Flow::Step(a), Flow::Static) if a == gather.axis && ctx.mode == Mode::Batch => {
            Ok(Err("reads some entries of the batch axis".into()))
        }
        (Flow::Step(a), Flow::Static) if a == gather.axis => {
            let last = ctx.input_fact(1)?.konst.as_ref().is_some_and(|k| {
                let s = TDim::Sym(ctx.s.clone());
                k.cast_to::<TDim>().ok().is_some_and(|k| {
                    k.try_as_plain_ram().ok().is_some_and(|k| {
                        k.as_slice::<TDim>().is_ok_and(|v| {
                            !v.is_empty()
                                && v.iter()
                                    .all(|d| *d == TDim::from(-1) || *d == s.clone() - 1)
                        })
                    })
                })
            });
            if last {
                Ok(Ok(vec![Flow::Final]))
            } else {
                Ok(Err(
                    "reads given steps of the time axis (only the last step of a chunk is \
                     the whole sequence's)"
                        .into(),
                ))
            }
        }
        (Flow::Step(a), Flow::Static) => Ok(Ok(vec![Flow::Step(if a < gather.axis {
            a
        } else {
            a - 1 + indices_rank
        })])),
        (Flow::Static, Flow::Step(b)) => Ok(Ok(vec![Flow::Step(gather.axis + b)])),
        _ => Ok(Err("gathers per-step values at per-step positions".into())),
    }
}

/// ONNX `GatherND` (the dynamo exporter's `x[..., idx]` and `y[torch.arange(b), ...]`): with
/// static indices, an axis of the data past the indexed ones is carried to the output whole,
/// after the indices' own axes; an indexed (or batch-dims) time axis reads given steps.
pub(super) fn gather_nd_rule(ctx: &Ctx, gather: &GatherNd, inputs: &[Flow]) -> TractResult<Rule> {
    let (Flow::Step(a), Flow::Static) = (inputs[0], inputs[1]) else {
        return Ok(Err("gathers per-step values at per-step positions".into()));
    };
    let indices = ctx.input_fact(1)?;
    let Some(k) = indices.shape.last().and_then(|d| d.to_usize().ok()) else {
        return Ok(Err("gathers with an index depth rnn-run cannot read".into()));
    };
    let first_kept = gather.batch_dims + k;
    if a < first_kept {
        return Ok(Err(match ctx.mode {
            Mode::Batch => "reads some entries of the batch axis".into(),
            Mode::Time => "reads given steps of the time axis (only the last step of a chunk \
                           is the whole sequence's)"
                .into(),
        }));
    }
    Ok(Ok(vec![Flow::Step(indices.rank() - 1 + a - first_kept)]))
}

/// `Resize` along other axes than time: the time axis keeps its length (scale 1, or a size
/// read from the input's own shape), so every output step is its input step exactly (each of
/// ONNX's coordinate transforms maps `x` to `x` at scale 1, but `tf_crop_and_resize`, which
/// reads a region of interest scaled by the length, and `tf_half_pixel_for_nn`, which shifts by
/// half a step). `None` when the time axis is not the data's.
pub(super) fn resize_rule(ctx: &Ctx, inputs: &[Flow]) -> TractResult<Option<Rule>> {
    let Some(Flow::Step(axis)) = inputs.first().copied() else {
        return Ok(None);
    };
    if inputs[1..]
        .iter()
        .any(|f| !matches!(f, Flow::Static | Flow::Length))
    {
        return Ok(Some(Err("resizes with per-step scales or sizes".into())));
    }
    let input = &ctx.input_fact(0)?.shape;
    let output = &ctx.node.outputs[0].fact.shape;
    let keeps_time = output.rank() == input.rank()
        && output[axis] == input[axis]
        && output
            .iter()
            .enumerate()
            .all(|(i, d)| i == axis || !mentions(d, ctx.s));
    let exact_transform = keeps_steps_at_scale_one(ctx.node.op.as_ref());
    Ok(Some(if keeps_time && exact_transform {
        Ok(vec![Flow::Step(axis)])
    } else if !keeps_time {
        Err("resizes the time axis (interpolates between steps)".into())
    } else {
        Err("resizes with a coordinate transform that shifts or crops the time axis".into())
    }))
}

/// Whether a Resize leaves an axis of scale 1 untouched: both of tract's Resize ops skip such
/// an axis, except for the transforms that move it (`tf_crop_and_resize` reads a region of
/// interest scaled by the length, `tf_half_pixel_for_nn` shifts by half a step) and
/// antialiasing, which widens the window. An op of another kind is not known to.
fn keeps_steps_at_scale_one(op: &dyn TypedOp) -> bool {
    use tract_core::ops::nn::resize::{CoordTransformer, Resize as CoreResize};
    use tract_onnx_opl::resize::{CoordTransform, Resize as OnnxResize};
    if let Some(resize) = op.downcast_ref::<CoreResize>() {
        return resize.coord_transformer != CoordTransformer::TfHalfPixelForNn;
    }
    if let Some(resize) = op.downcast_ref::<OnnxResize>() {
        return !resize.antialias
            && matches!(&resize.coord_transformer,
                CoordTransform::Plain(t) if *t != CoordTransformer::TfHalfPixelForNn);
    }
    false
}

/// Convolutions and pools: along the time axis, a kernel of one frame is local; a longer one
/// is carried (its last frames kept from chunk to chunk) when it is a convolution, causal
/// (padded on the left by exactly its reach, its own padding plus `padded` frames from a
/// `Pad` before it) and of stride 1. `padded` is `None` for ops that cannot carry.
pub(super) fn conv_rule(
    ctx: &Ctx,
    spec: &PoolSpec,
    axis: usize,
    padded: Option<usize>,
    carried: &mut Vec<Carried>,
) -> TractResult<Rule> {
    let can_carry = padded.is_some() && ctx.mode == Mode::Time;
    let padded = padded.unwrap_or(0);
    let shape = spec.data_format.shape(ctx.input_fact(0)?.shape.to_tvec())?;
    if shape.n_axis() == Some(axis) {
        return Ok(Ok(vec![Flow::Step(axis)]));
    }
    if shape.c_axis() == axis {
        return Ok(Err("mixes time steps as channels".into()));
    }
    let geo = axis - shape.hw_axes().start;
    let (k, d, stride) = (spec.kernel_shape[geo], spec.dilation(geo), spec.stride(geo));
    if stride != 1 {
        return Ok(Err(format!("strides by {stride} over the time axis")));
    }
    let s = TDim::Sym(ctx.s.clone());
    let own = spec.padding.compute_one(geo, &s, k, d, stride);
    let reach = (k - 1) * d;
    let (before, after) = (
        own.pad_before.clone() + padded as i64,
        own.pad_after.clone(),
    );
    if reach == 0 && before == TDim::Val(0) && after == TDim::Val(0) {
        return Ok(Ok(vec![Flow::Step(axis)]));
    }
    if after != TDim::Val(0) || before != reach.to_dim() {
        return Ok(Err(format!(
            "looks ahead along the time axis (kernel {k}, dilation {d}, padding {before} \
             before and {after} after): a convolution or pooling that is not causal needs \
             frames that have not been pushed yet"
        )));
    }
    if !can_carry {
        return Ok(Err(
            "pools over several time steps, which rnn-run does not carry between chunks".into(),
        ));
    }
    let other_axes_fixed = shape.hw_dims().iter().enumerate().all(|(i, dim)| {
        i == geo || {
            let p = spec.padding.compute_one(
                i,
                dim,
                spec.kernel_shape[i],
                spec.dilation(i),
                spec.stride(i),
            );
            p.pad_before.to_usize().is_ok() && p.pad_after.to_usize().is_ok()
        }
    });
    let known = match spec.padding {
        PaddingSpec::Explicit(..) | PaddingSpec::ExplicitOnnxPool(..) => true,
        // `auto_pad = SAME_LOWER` with kernel 2: one step before, none after (causal).
        PaddingSpec::SameLower | PaddingSpec::SameUpper => padded == 0 && other_axes_fixed,
        _ => false,
    };
    if !known {
        return Ok(Err(
            "pads the time axis in a way rnn-run cannot replace by the frames of earlier \
             chunks"
                .into(),
        ));
    }
    carried.push(Carried::ConvHistory {
        node: ctx.node.id,
        axis,
        frames: reach,
        pad: (padded > 0).then(|| ctx.node.inputs[0].node),
    });
    Ok(Ok(vec![Flow::Step(axis)]))
}
