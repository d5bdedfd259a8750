//! The flows of one node's outputs from its inputs': which ops keep time steps apart.

use super::op_rules::*;
use super::*;

/// The flows of a node's outputs given its inputs', or why it mixes time steps.
pub(super) fn rule(ctx: &Ctx, inputs: &[Flow], carried: &mut Vec<Carried>) -> TractResult<Rule> {
    let node = ctx.node;
    let op = &node.op;
    let steps: Vec<(usize, usize)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(slot, f)| match f {
            Flow::Step(a) => Some((slot, *a)),
            _ => None,
        })
        .collect();
    let has = |flow: Flow| inputs.contains(&flow);

    // A Resize that keeps the time axis (scale 1, or a size read from the input's own shape)
    // and resamples other axes only (`F.interpolate` over features).
    if op.name() == "Resize" {
        if let Some(rule) = resize_rule(ctx, inputs)? {
            return Ok(rule);
        }
    }

    // A value computed from the chunk's length stays so through ops on such values only (a
    // size computation); mixed into data, it makes the data depend on the chunking.
    if has(Flow::Length) {
        // `y[:x.shape[0]]`: a slice of a per-step value to the chunk's own length is the
        // chunk (its bounds are constants holding the length, which the slice rule reads).
        if let (Some(strided), [Flow::Step(axis), rest @ ..]) =
            (op.downcast_ref::<StridedSlice>(), inputs)
        {
            // Only where it keeps every axis whole: a length-bound slice of another axis would
            // change with the chunking.
            let whole = node.outputs[0].fact.shape == ctx.input_fact(0)?.shape;
            if whole
                && rest
                    .iter()
                    .all(|f| matches!(f, Flow::Static | Flow::Length))
            {
                if let Ok(flows) = strided_slice_rule(ctx, strided, *axis)? {
                    if matches!(flows[..], [Flow::Step(_)]) {
                        return Ok(Ok(flows));
                    }
                }
            }
        }
        if !steps.is_empty() || has(Flow::Final) {
            return Ok(Err(
                "uses the length of the time axis, which a stream sees a chunk \
                           of"
                .into(),
            ));
        }
        let makes_axis = node
            .outputs
            .iter()
            .any(|o| o.fact.shape.iter().any(|d| mentions(d, ctx.s)));
        if makes_axis {
            return Ok(Err(
                "builds values along the time axis from its length (positions), \
                           which restart with every chunk"
                    .into(),
            ));
        }
        return Ok(Ok(ctx.same(Flow::Length)));
    }

    // A constant holding the chunk's length (a size folded from a shape).
    if let Some(konst) = op.downcast_ref::<Const>() {
        let length = konst.val().datum_type() == DatumType::TDim
            && konst
                .val()
                .try_as_plain_ram()
                .ok()
                .and_then(|t| {
                    t.as_slice::<TDim>()
                        .ok()
                        .map(|v| v.iter().any(|d| mentions(d, ctx.s)))
                })
                .unwrap_or(false);
        return Ok(Ok(ctx.same(if length {
            Flow::Length
        } else {
            Flow::Static
        })));
    }

    if let Some(rec) = op.downcast_ref::<NativeRecurrent>() {
        return recurrent(ctx, rec, inputs, carried);
    }
    // onnxruntime's quantized LSTM quantizes X of all steps (and each step's hidden states of
    // the whole batch) as one matrix, with one scale: no chunk computes what the whole does.
    if op.is::<QuantizedLstm>() && inputs.iter().any(|f| *f != Flow::Static) {
        return Ok(Err(match ctx.mode {
            Mode::Time => "quantizes its input over all time steps at once (one scale for the \
                           whole sequence, as onnxruntime's DynamicQuantizeLSTM takes it), \
                           which mixes all time steps"
                .into(),
            Mode::Batch => "quantizes its input and its hidden states over the whole batch at \
                            once, which mixes all batch entries"
                .into(),
        }));
    }

    // Zeros padded in front of the time axis become the frames of earlier chunks, which only
    // a convolution can take in place of its own padding.
    if let Some(Flow::Padded { axis, before }) = inputs
        .iter()
        .find(|f| matches!(f, Flow::Padded { .. }))
        .copied()
    {
        if let (Some(conv), [_, rest @ ..]) = (op.downcast_ref::<Conv>(), inputs) {
            if rest.iter().all(|f| *f == Flow::Static) {
                return conv_rule(ctx, &conv.pool_spec, axis, Some(before), carried);
            }
        }
        return Ok(Err(format!(
            "takes a time axis padded with {before} frames in front, which only a \
             convolution can take in a stream"
        )));
    }

    if steps.is_empty() {
        // Static and final inputs only: a broadcast of a constant along the time axis is a
        // per-step constant; any other op making the time axis makes positions.
        let made = node.outputs[0]
            .fact
            .shape
            .iter()
            .position(|d| mentions(d, ctx.s));
        return Ok(match made {
            None if has(Flow::Final) => Ok(ctx.same(Flow::Final)),
            None => Ok(ctx.same(Flow::Static)),
            Some(axis) if op.is::<MultiBroadcastTo>() && !has(Flow::Final) => {
                Ok(vec![Flow::Step(axis)])
            }
            Some(_) => Err(
                "builds values along the time axis from its length (positions), \
                            which restart with every chunk"
                    .into(),
            ),
        });
    }
    if has(Flow::Final) {
        return Ok(Err(
            "combines per-step values with the value after the chunk's last step, which \
             changes with every chunk"
                .into(),
        ));
    }

    let axis = steps[0].1;
    let all_same_axis = steps.iter().all(|(_, a)| *a == axis);

    // One scale and zero point from the whole tensor's range (`quantize_dynamic`'s activations).
    if op.is::<DynamicQuantizeU8>() {
        return Ok(Err(
            "quantizes the whole tensor at once, with one scale and zero point from the \
             minimum and maximum of all its values, which mixes all time steps"
                .into(),
        ));
    }
    if op.is::<ElementWiseOp>() || op.is::<Cast>() || op.is::<Identity>() {
        return Ok(Ok(ctx.same(Flow::Step(axis))));
    }
    if op.is::<TypedBinOp>() || op.is::<Iff>() {
        // Typed broadcasting ops have inputs of equal rank: a static input must have size 1
        // along the time axis.
        if !all_same_axis {
            return Ok(Err("combines inputs whose time axes differ".into()));
        }
        for (slot, f) in inputs.iter().enumerate() {
            if *f == Flow::Static && !ctx.input_fact(slot)?.shape[axis].is_one() {
                return Ok(Err("broadcasts a value along the time axis".into()));
            }
        }
        return Ok(Ok(ctx.same(Flow::Step(axis))));
    }
    if let Some(einsum) = op.downcast_ref::<EinSum>() {
        return einsum_rule(ctx, einsum, inputs);
    }
    if let Some(axis_op) = op.downcast_ref::<AxisOp>() {
        return axis_op_rule(ctx, axis_op, axis);
    }
    if let Some(slice) = op.downcast_ref::<Slice>() {
        if slice.axis != axis {
            return Ok(Ok(vec![Flow::Step(axis)]));
        }
        if ctx.mode == Mode::Batch {
            return Ok(Err("reads some entries of the batch axis".into()));
        }
        let s = TDim::Sym(ctx.s.clone());
        if slice.start == TDim::Val(0) && slice.end == s {
            return Ok(Ok(vec![Flow::Step(axis)]));
        }
        if slice.start == s.clone() - 1 && slice.end == s {
            return Ok(Ok(vec![Flow::Final]));
        }
        return Ok(Err(reads_steps(&slice.start, &slice.end, ctx.s)));
    }
    if let Some(gather) = op.downcast_ref::<Gather>() {
        return gather_rule(ctx, gather, inputs);
    }
    if let Some(gather) = op.downcast_ref::<GatherNd>() {
        return gather_nd_rule(ctx, gather, inputs);
    }
    if let Some(strided) = op.downcast_ref::<StridedSlice>() {
        if steps.iter().any(|(slot, _)| *slot != 0) {
            return Ok(Err("slices at per-step positions".into()));
        }
        let rule = strided_slice_rule(ctx, strided, axis)?;
        if ctx.mode == Mode::Batch && matches!(rule, Ok(ref f) if f[0] == Flow::Final) {
            return Ok(Err("reads some entries of the batch axis".into()));
        }
        return Ok(rule);
    }
    if let Some(concat) = op.downcast_ref::<TypedConcat>() {
        if !all_same_axis || steps.len() != inputs.len() {
            return Ok(Err("concatenates per-step values with others".into()));
        }
        if concat.axis == axis {
            return Ok(Err(
                "concatenates along the time axis, which changes its length (a chunk's output \
                 would not be the chunk's steps)"
                    .into(),
            ));
        }
        return Ok(Ok(vec![Flow::Step(axis)]));
    }
    if let Some(reduce) = op.downcast_ref::<Reduce>() {
        if reduce.axes.contains(&axis) {
            let what = match reduce.reducer {
                Reducer::Sum => "sums (or averages)",
                Reducer::Max => "takes the maximum",
                Reducer::Min => "takes the minimum",
                Reducer::Prod => "multiplies",
                Reducer::ArgMax(_) => "takes the arg max",
                Reducer::ArgMin(_) => "takes the arg min",
                _ => "reduces",
            };
            return Ok(Err(format!(
                "{what} over the time axis, which needs the whole sequence"
            )));
        }
        return Ok(Ok(vec![Flow::Step(axis)]));
    }
    if let Some(softmax) = op.downcast_ref::<Softmax>() {
        if softmax.axes.contains(&axis) {
            return Ok(Err(
                "normalizes over the time axis (a softmax across steps), which needs the \
                 whole sequence"
                    .into(),
            ));
        }
        return Ok(Ok(vec![Flow::Step(axis)]));
    }
    if let Some(norm) = op.downcast_ref::<RmsNorm>() {
        if norm.axis == axis {
            return Ok(Err(
                "normalizes over the time axis, which needs the whole sequence".into(),
            ));
        }
        return Ok(Ok(vec![Flow::Step(axis)]));
    }
    if let Some(pad) = op.downcast_ref::<Pad>() {
        let zeros = match &pad.mode {
            PadMode::Constant(v) => v
                .cast_to::<f64>()
                .ok()
                .and_then(|v| {
                    v.try_as_plain_ram()
                        .ok()?
                        .as_slice::<f64>()
                        .ok()
                        .map(|s| s.iter().all(|x| *x == 0.0))
                })
                .unwrap_or(false),
            _ => false,
        };
        return Ok(match pad.pads.get(axis) {
            Some(&(0, 0)) => Ok(vec![Flow::Step(axis)]),
            Some(_) if ctx.mode == Mode::Batch => Err("pads the batch axis".into()),
            Some(&(before, 0)) if zeros => Ok(vec![Flow::Padded { axis, before }]),
            Some(&(_, after)) if after > 0 => Err(format!(
                "pads {after} frame{} after the time axis: it looks ahead, to frames a \
                 stream has not been given yet",
                if after == 1 { "" } else { "s" }
            )),
            _ => Err("pads the time axis with other values than zeros".into()),
        });
    }
    if op.is::<MultiBroadcastTo>() {
        return Ok(Ok(vec![Flow::Step(axis)]));
    }
    if let Some(conv) = op.downcast_ref::<Conv>() {
        if steps.iter().any(|(slot, _)| *slot != 0) {
            return Ok(Err("takes per-step weights".into()));
        }
        return conv_rule(ctx, &conv.pool_spec, axis, Some(0), carried);
    }
    if let Some(deconv) = op.downcast_ref::<Deconv>() {
        return conv_rule(ctx, &deconv.pool_spec, axis, None, carried);
    }
    if let Some(pool) = op.downcast_ref::<MaxPool>() {
        return conv_rule(ctx, &pool.pool_spec, axis, None, carried);
    }
    if let Some(pool) = op.downcast_ref::<SumPool>() {
        return conv_rule(ctx, &pool.pool_spec, axis, None, carried);
    }
    Ok(Err(
        "is not known to keep time steps apart (rnn-run streams only ops it can prove do)".into(),
    ))
}
