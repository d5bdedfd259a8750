//! The time-axis analysis: which graphs may run as a stream, and how.
//!
//! A stream feeds a model a chunk of time steps at a time and must give, chunk after chunk,
//! exactly what one run over the whole sequence gives. The analysis runs on the graph as
//! typed, before tract's clean-up and optimization (projections are still plain matrix
//! products, and nodes keep their ONNX names for the messages), in which the time axis of
//! every time input is one symbol, `S`. It follows that
//! axis from the inputs to the outputs and gives every wire a [`Flow`]:
//!
//! - [`Flow::Static`]: does not depend on the time inputs (weights, initial states);
//! - [`Flow::Step`]: one entry per time step along an axis, each depending only on the steps
//!   up to it: elementwise ops, matrix products over features, reductions and softmax over
//!   other axes, reshapes that keep the axis whole, gathers that index other axes (an
//!   embedding), a forward recurrent node (which carries its state), and a convolution that
//!   is causal along time (its left padding is replaced by the frames of the chunks before);
//! - [`Flow::Final`]: the value after the chunk's last step (a recurrent node's final
//!   states, a read of the last step): the latest chunk's value is the whole run's;
//! - [`Flow::Length`]: a value computed from the chunk's length, which a stream sees only a
//!   part of.
//!
//! Anything else that touches the time axis mixes steps and is refused with the node named:
//! reductions, pooling and softmax over time, reads of other steps, concatenation along time,
//! flattening time into features, a convolution that looks ahead, a per-step value combined
//! with a final one, an op that is not known to keep steps apart. The property test in
//! `tests/stream_property.rs` checks on random graphs that what is accepted streams exactly.

use std::collections::HashMap;

use tract_core::axes::full_axis_tracking;
use tract_core::ops::array::{
    Gather, MultiBroadcastTo, Pad, PadMode, Slice, StridedSlice, TypedConcat,
};
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::cast::Cast;
use tract_core::ops::change_axes::AxisOp;
use tract_core::ops::cnn::{Conv, Deconv, MaxPool, PaddingSpec, PoolSpec, SumPool};
use tract_core::ops::einsum::EinSum;
use tract_core::ops::element_wise::ElementWiseOp;
use tract_core::ops::identity::Identity;
use tract_core::ops::konst::Const;
use tract_core::ops::logic::Iff;
use tract_core::ops::nn::{Reduce, Reducer, RmsNorm, Softmax};
use tract_hir::internal::*;

use crate::attrs::{Direction, Layout};
use crate::op::NativeRecurrent;

/// How a wire depends on the time inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Not at all.
    Static,
    /// One entry per time step along this axis.
    Step(usize),
    /// The value after the chunk's last step.
    Final,
    /// Computed from the chunk's length.
    Length,
    /// Per step along `axis`, with `before` frames of zeros in front: a convolution's left
    /// padding written as a `Pad` node. Only a convolution that is then causal may take it.
    Padded { axis: usize, before: usize },
}

/// A node that keeps something from one chunk to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    /// A forward recurrent node: its hidden (and cell) state.
    Recurrent { node: usize },
    /// A convolution causal along `axis` of its input: its last `frames` input frames. When
    /// its left padding comes from a `Pad` node, that node's time padding is dropped too.
    ConvHistory {
        node: usize,
        axis: usize,
        frames: usize,
        pad: Option<usize>,
    },
}

/// The analysis of a graph that can stream.
#[derive(Debug, Clone)]
pub struct Streamable {
    /// Every wire's flow.
    pub flows: HashMap<OutletId, Flow>,
    /// What is carried between chunks, in graph order.
    pub carried: Vec<Carried>,
}

impl Streamable {
    /// The flow of each graph output.
    pub fn output_flows(&self, model: &TypedModel) -> TractResult<Vec<Flow>> {
        model
            .output_outlets()?
            .iter()
            .map(|o| Ok(self.flows[o]))
            .collect()
    }
}

/// Why a graph cannot stream, with the node that decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The node's name, or the graph input's.
    pub node: String,
    /// Its op.
    pub op: String,
    /// What it does to the time axis.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "node '{}' ({}) {}", self.node, self.op, self.reason)
    }
}

/// For each graph input, the axis that is the time axis of a recurrent node's X,
/// followed through the graph (projections, transposes, convolutions' batch axes...). Inputs
/// whose axis at that place is a broadcast (size 1 where X's is not) are not time inputs.
pub fn find_time_axes(model: &TypedModel) -> TractResult<Vec<Option<usize>>> {
    find_axes(model, seq_axis)
}

/// For each graph input, the axis that is the batch axis of a recurrent node's X (or of its
/// initial states), followed the same way.
pub fn find_batch_axes(model: &TypedModel) -> TractResult<Vec<Option<usize>>> {
    find_axes(model, |layout| match layout {
        Layout::SeqMajor => 1,
        Layout::BatchMajor => 0,
    })
}

fn find_axes(
    model: &TypedModel,
    x_axis: impl Fn(Layout) -> usize,
) -> TractResult<Vec<Option<usize>>> {
    let inputs = model.input_outlets()?.to_vec();
    let mut axes = vec![None; inputs.len()];
    let tracks = full_axis_tracking(model)?;
    for node in model.nodes() {
        let Some(op) = node.op_as::<NativeRecurrent>() else {
            continue;
        };
        // Backward and length-bound nodes too: the analysis refuses them by name.
        let axis = x_axis(op.spec().layout);
        let x = node.inputs[0];
        let time_dim = model.outlet_fact(x)?.shape[axis].clone();
        if let Some(tracking) = tracks.iter().find(|t| t.outlets.get(&x) == Some(&axis)) {
            for (ix, input) in inputs.iter().enumerate() {
                if let Some(&a) = tracking.outlets.get(input) {
                    if model.outlet_fact(*input)?.shape[a] == time_dim {
                        axes[ix] = Some(a);
                    }
                }
            }
        }
        // Tracking stops at ops whose axes tract does not map one to one (a softmax, a
        // convolution over time); a named length is the same axis wherever it appears.
        if let TDim::Sym(_) = time_dim {
            for (ix, input) in inputs.iter().enumerate() {
                let shape = &model.outlet_fact(*input)?.shape;
                let same: Vec<usize> = (0..shape.rank())
                    .filter(|&a| shape[a] == time_dim)
                    .collect();
                if let ([a], None) = (&same[..], axes[ix]) {
                    axes[ix] = Some(*a);
                }
            }
        }
    }
    Ok(axes)
}

/// The time axis of a recurrent node's X (and Y) in a layout.
pub fn seq_axis(layout: Layout) -> usize {
    match layout {
        Layout::SeqMajor => 0,
        Layout::BatchMajor => 1,
    }
}

/// Which axis is followed: the same rules serve the time axis of a stream and the batch axis
/// of a pool of streams, which must keep its entries (streams) apart just as strictly, but
/// has nothing to carry and no last entry to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Time,
    Batch,
}

/// Follows the time axis `s` from `time_inputs` (graph input position, axis) through the
/// graph; refuses the first node that mixes time steps.
pub fn analyse(
    model: &TypedModel,
    time_inputs: &[(usize, usize)],
    s: &Symbol,
) -> TractResult<Result<Streamable, Refusal>> {
    follow(model, time_inputs, s, Mode::Time)
}

/// Follows the batch axis `b` from `batch_inputs` (graph input position, axis) through the
/// graph; refuses the first node that mixes the entries of the batch (the streams of a pool).
pub fn analyse_batch(
    model: &TypedModel,
    batch_inputs: &[(usize, usize)],
    b: &Symbol,
) -> TractResult<Result<Streamable, Refusal>> {
    follow(model, batch_inputs, b, Mode::Batch)
}

fn follow(
    model: &TypedModel,
    time_inputs: &[(usize, usize)],
    s: &Symbol,
    mode: Mode,
) -> TractResult<Result<Streamable, Refusal>> {
    let mut flows: HashMap<OutletId, Flow> = HashMap::new();
    let mut carried = vec![];
    let inputs = model.input_outlets()?;
    for (ix, outlet) in inputs.iter().enumerate() {
        let flow = match time_inputs.iter().find(|(i, _)| *i == ix) {
            Some(&(_, axis)) => Flow::Step(axis),
            None => Flow::Static,
        };
        flows.insert(*outlet, flow);
    }
    for id in model.eval_order()? {
        let node = model.node(id);
        if inputs.contains(&OutletId::new(id, 0)) && node.inputs.is_empty() {
            continue;
        }
        let input_flows: Vec<Flow> = node.inputs.iter().map(|i| flows[i]).collect();
        let ctx = Ctx {
            model,
            node,
            s,
            mode,
        };
        let outcome = rule(&ctx, &input_flows, &mut carried)?;
        let outputs = match outcome {
            Ok(o) => o,
            Err(reason) => {
                return Ok(Err(Refusal {
                    node: node.name.clone(),
                    op: node.op.name().to_string(),
                    reason: mode.words(reason),
                }))
            }
        };
        // Every per-step wire has exactly S entries along its axis; any other use of S in a
        // shape comes from an op the rules do not know to be local in time.
        for (slot, flow) in outputs.iter().enumerate() {
            let fact = &node.outputs[slot].fact;
            let expected = |axis: usize| match *flow {
                Flow::Step(a) if a == axis => Some(TDim::Sym(s.clone())),
                Flow::Padded { axis: a, before } if a == axis => {
                    Some(TDim::Sym(s.clone()) + before as i64)
                }
                _ => None,
            };
            let bad_axis =
                fact.shape
                    .iter()
                    .enumerate()
                    .find(|(axis, dim)| match expected(*axis) {
                        Some(want) => (*dim).clone() - want != TDim::Val(0),
                        None => mentions(dim, s),
                    });
            if let Some((axis, dim)) = bad_axis {
                return Ok(Err(Refusal {
                    node: node.name.clone(),
                    op: node.op.name().to_string(),
                    reason: mode.words(format!(
                        "makes an axis of size {dim} (axis {axis}) from the time axis, which \
                         a stream cannot split into chunks"
                    )),
                }));
            }
            flows.insert(OutletId::new(id, slot), *flow);
        }
    }
    for (ix, outlet) in model.output_outlets()?.iter().enumerate() {
        if let Flow::Padded { before, .. } = flows[outlet] {
            let node = model.node(outlet.node);
            return Ok(Err(Refusal {
                node: node.name.clone(),
                op: node.op.name().to_string(),
                reason: format!(
                    "pads the time axis with {before} frames in front for output {ix}: its \
                     length is not the chunk's"
                ),
            }));
        }
        if flows[outlet] == Flow::Length {
            let node = model.node(outlet.node);
            return Ok(Err(Refusal {
                node: node.name.clone(),
                op: node.op.name().to_string(),
                reason: format!(
                    "computes output {ix} from the length of the time axis, which a stream \
                     sees a chunk of"
                ),
            }));
        }
    }
    Ok(Ok(Streamable { flows, carried }))
}

struct Ctx<'a> {
    model: &'a TypedModel,
    node: &'a TypedNode,
    s: &'a Symbol,
    mode: Mode,
}

impl Mode {
    /// The rules speak of time; in batch mode their reasons speak of the batch.
    fn words(self, reason: String) -> String {
        match self {
            Mode::Time => reason,
            Mode::Batch => reason
                .replace("time axis", "batch axis")
                .replace("time steps", "batch entries")
                .replace(
                    "a stream cannot split into chunks",
                    "a pool cannot split into streams",
                )
                .replace("a stream sees a chunk of", "a pool batches streams along"),
        }
    }
}

impl Ctx<'_> {
    fn input_fact(&self, slot: usize) -> TractResult<&TypedFact> {
        self.model.outlet_fact(self.node.inputs[slot])
    }

    fn same(&self, flow: Flow) -> Vec<Flow> {
        vec![flow; self.node.outputs.len()]
    }
}

fn mentions(dim: &TDim, s: &Symbol) -> bool {
    dim.symbols().contains(s)
}

fn is_s(dim: &TDim, s: &Symbol) -> bool {
    *dim == TDim::Sym(s.clone())
}

type Rule = Result<Vec<Flow>, String>;

/// The flows of a node's outputs given its inputs', or why it mixes time steps.
fn rule(ctx: &Ctx, inputs: &[Flow], carried: &mut Vec<Carried>) -> TractResult<Rule> {
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
        return Ok(Err(format!(
            "reads steps {}..{} of the time axis (only the last step of a chunk is the \
             whole sequence's)",
            slice.start, slice.end
        )));
    }
    if let Some(gather) = op.downcast_ref::<Gather>() {
        return gather_rule(ctx, gather, inputs);
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
            return Ok(Err("concatenates along the time axis".into()));
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

fn recurrent(
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
fn recurrent_batch(ctx: &Ctx, op: &NativeRecurrent, inputs: &[Flow]) -> TractResult<Rule> {
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

fn einsum_rule(ctx: &Ctx, einsum: &EinSum, inputs: &[Flow]) -> TractResult<Rule> {
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

fn axis_op_rule(ctx: &Ctx, op: &AxisOp, axis: usize) -> TractResult<Rule> {
    if let Some(to) = op.transform_axis(axis) {
        return Ok(Ok(vec![Flow::Step(to)]));
    }
    // A reshape that involves the time axis keeps it whole when the elements before it (and
    // so after it) are the same in and out: each step's block is moved as it is.
    let input = &ctx.input_fact(0)?.shape;
    let output = &ctx.node.outputs[0].fact.shape;
    let Some(to) = output.iter().position(|d| is_s(d, ctx.s)) else {
        return Ok(Err(
            "reshapes the time axis into other axes (flattens steps into features)".into(),
        ));
    };
    let before = |dims: &[TDim], upto: usize| -> TDim { dims[..upto].iter().product() };
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
fn strided_slice_rule(ctx: &Ctx, op: &StridedSlice, axis: usize) -> TractResult<Rule> {
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
    Ok(Err(format!(
        "reads steps {}..{} of the time axis (only the last step of a chunk is the whole \
         sequence's)",
        dim.begin, dim.end
    )))
}

fn gather_rule(ctx: &Ctx, gather: &Gather, inputs: &[Flow]) -> TractResult<Rule> {
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

/// Convolutions and pools: along the time axis, a kernel of one frame is local; a longer one
/// is carried (its last frames kept from chunk to chunk) when it is a convolution, causal
/// (padded on the left by exactly its reach, its own padding plus `padded` frames from a
/// `Pad` before it) and of stride 1. `padded` is `None` for ops that cannot carry.
fn conv_rule(
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
             before and {after} after): a non-causal convolution needs frames that have not \
             been pushed yet"
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
