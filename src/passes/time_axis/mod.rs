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
//!
//! The files: the flows, the drivers and the axis search (here); the rule of each node
//! (`rules`); the rules of recurrent nodes and of ops that move, index, resize or convolve the
//! axis (`op_rules`).

use std::collections::HashMap;

use tract_core::axes::full_axis_tracking;
use tract_core::ops::array::{
    Gather, GatherNd, MultiBroadcastTo, Pad, PadMode, Slice, StridedSlice, TypedConcat,
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
use crate::qlstm::dynamic_quantize::DynamicQuantizeU8;
use crate::qlstm::QuantizedLstm;

mod op_rules;
mod rules;

use rules::rule;

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
    // Backward and length-bound nodes too, and onnxruntime's quantized LSTM: the analysis
    // refuses them by name.
    for (x, layout) in recurrent_xs(model) {
        let axis = x_axis(layout);
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
        // convolution over time, a dynamic quantization); a named length is the same axis
        // wherever it appears.
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

/// The X input of every recurrent node with its layout: rnn-run's RNN, LSTM and GRU, and
/// onnxruntime's `DynamicQuantizeLSTM` (sequence-major, as ONNX `LSTM`-7).
pub fn recurrent_xs(model: &TypedModel) -> Vec<(OutletId, Layout)> {
    model
        .nodes()
        .iter()
        .filter_map(|node| {
            let layout = match node.op_as::<NativeRecurrent>() {
                Some(op) => op.spec().layout,
                None if node.op_is::<QuantizedLstm>() => Layout::SeqMajor,
                None => return None,
            };
            Some((*node.inputs.first()?, layout))
        })
        .collect()
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
                    node: onnx_node_name(node),
                    op: onnx_op_name(node),
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
                    node: onnx_node_name(node),
                    op: onnx_op_name(node),
                    reason: mode.words(format!(
                        "makes an axis of size {} (axis {axis}) from the time axis (a chunk \
                         of T steps), which a stream cannot split into chunks: it changes the \
                         length",
                        show_dim(dim, s)
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
                node: onnx_node_name(node),
                op: onnx_op_name(node),
                reason: format!(
                    "pads the time axis with {before} frames in front for output {ix}: its \
                     length is not the chunk's"
                ),
            }));
        }
        if flows[outlet] == Flow::Length {
            let node = model.node(outlet.node);
            return Ok(Err(Refusal {
                node: onnx_node_name(node),
                op: onnx_op_name(node),
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

/// A dimension in the model's words: the followed symbol as `T`, `T + -1` as `T - 1`.
fn show_dim(dim: &TDim, s: &Symbol) -> String {
    dim.to_string()
        .replace(&s.to_string(), "T")
        .replace("+-", "-")
}

/// The node's op as ONNX names it where tract's (or rnn-run's) name differs.
fn onnx_op_name(node: &TypedNode) -> String {
    let name = node.op.name();
    match name.as_ref() {
        "StridedSlice" => "Slice".into(),
        "TypedConcat" | "InferenceConcat" => "Concat".into(),
        _ if node.op_is::<DynamicQuantizeU8>() => "DynamicQuantizeLinear".into(),
        // `NativeLSTM`, `NativeDynamicQuantizeLSTM`: rnn-run's ops for the ONNX node.
        _ if node.op_is::<NativeRecurrent>() || node.op_is::<QuantizedLstm>() => name
            .strip_prefix("Native")
            .unwrap_or(name.as_ref())
            .to_string(),
        _ => name.to_string(),
    }
}

/// The node's name as the ONNX graph has it where rnn-run's expansion added a suffix
/// (`DynamicQuantizeLinear` wires one node, `<name>.dynamic_quantize`).
fn onnx_node_name(node: &TypedNode) -> String {
    match node.name.strip_suffix(".dynamic_quantize") {
        Some(onnx) if node.op_is::<DynamicQuantizeU8>() => onnx.to_string(),
        _ => node.name.clone(),
    }
}
