//! Shape values computed in the graph that tract would narrow to 32 bits, refused with the
//! node named once the inputs' shapes make them known.
//!
//! tract converts an integer tensor to its shape type through int32 (`Tensor::cast_to_dt` in
//! tract-data 0.23.9), and computes a shape derived from `Shape` in that type: `Reshape(x,
//! Shape(x) + [2^32, 0])` read `[2^32 + 3, 10]` as `[3, 10]` and ran with exit 0, and so did
//! `Expand`, `Tile` and `ConstantOfShape` fed the same way, or fed `a + a + 5` for a constant
//! `a = 2^31 - 1`. [`super::shapes`] refuses such values written as constants into the file;
//! this finds those computed from several values. At load, for each op that reads a shape
//! ([`SHAPE_INPUTS`]), the tensors its shape input is computed from are collected (following
//! the inputs that carry values into a node's output: not a `Slice`'s bounds, not what
//! `Shape` reads). Before tract types a plan (and the graph at load), its analyser computes
//! what it can from the inputs' shapes and the constants; a known value among those tensors
//! outside the 32-bit range refuses the plan, naming the node that reads the shape. Values
//! inside `If` branches and other subgraphs are not followed.

use std::collections::{HashMap, HashSet};

use tract_hir::internal::*;
use tract_onnx::pb::{GraphProto, NodeProto};

use crate::error::NodeError;

/// The ops that read a shape (or repeat counts) from an input, and which input.
const SHAPE_INPUTS: &[(&str, usize, &str)] = &[
    ("Reshape", 1, "shape"),
    ("ConstantOfShape", 0, "shape"),
    ("Tile", 1, "repeats"),
    ("Expand", 1, "shape"),
];

/// A node reading a shape: its name, op, input tensor, and what that input is.
#[derive(Debug, Clone)]
struct Consumer {
    node: String,
    op: String,
    input: String,
    what: &'static str,
}

/// What the main graph computes its shape inputs from.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShapeFlow {
    consumers: Vec<Consumer>,
    /// For each tensor a shape input is computed from, the tensors its producer's output
    /// values come from.
    upstream: HashMap<String, Vec<String>>,
}

/// Which inputs of `node` carry values into its outputs (rather than sizes, indices, axes or
/// conditions, or nothing: `Shape` reads only its input's shape).
fn value_inputs(node: &NodeProto) -> &[String] {
    let all = &node.input[..];
    let first = &all[..all.len().min(1)];
    match node.op_type.as_str() {
        "Shape" | "Size" | "ConstantOfShape" | "EyeLike" | "NonZero" | "Equal" | "Less"
        | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "Not" | "And" | "Or" | "Xor" | "IsNaN"
        | "IsInf" | "RandomNormalLike" | "RandomUniformLike" => &[],
        "Where" => &all[all.len().min(1)..],
        "Slice" | "Gather" | "GatherElements" | "GatherND" | "Unsqueeze" | "Squeeze"
        | "Reshape" | "Expand" | "Tile" | "Transpose" | "Flatten" | "ReduceMin" | "ReduceMax"
        | "ReduceSum" | "ReduceProd" | "ReduceMean" | "TopK" | "Split" | "Cast" | "CastLike"
        | "Identity" | "Pad" => first,
        _ => all,
    }
}

impl ShapeFlow {
    /// The shape inputs of `graph` (the main graph) and what they are computed from.
    pub(crate) fn of(graph: &GraphProto) -> ShapeFlow {
        let producer: HashMap<&str, &NodeProto> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
            .collect();
        let mut flow = ShapeFlow::default();
        let mut todo: Vec<&str> = vec![];
        for node in &graph.node {
            let Some(&(_, slot, what)) = SHAPE_INPUTS
                .iter()
                .find(|(op, _, _)| *op == node.op_type && node.domain.is_empty())
            else {
                continue;
            };
            let Some(input) = node.input.get(slot).filter(|i| !i.is_empty()) else {
                continue;
            };
            flow.consumers.push(Consumer {
                node: node.name.clone(),
                op: node.op_type.clone(),
                input: input.clone(),
                what,
            });
            todo.push(input);
        }
        let mut seen: HashSet<&str> = HashSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name) {
                continue;
            }
            let Some(node) = producer.get(name) else {
                continue;
            };
            let from: Vec<&String> = value_inputs(node)
                .iter()
                .filter(|i| !i.is_empty())
                .collect();
            todo.extend(from.iter().map(|s| s.as_str()));
            flow.upstream
                .insert(name.to_string(), from.into_iter().cloned().collect());
        }
        flow
    }

    /// Refuses `model` (the parsed graph with its input facts set) when a value its shape
    /// inputs are computed from is known and outside the 32-bit range.
    pub(crate) fn check(&self, model: &InferenceModel) -> TractResult<()> {
        if self.consumers.is_empty() {
            return Ok(());
        }
        let mut probe = model.clone();
        // A failure here is tract's to report, when the graph is typed; what it could
        // compute is enough to look at.
        let _ = probe.analyse(true);
        let mut outlet_of: HashMap<&str, OutletId> = HashMap::new();
        for node in probe.nodes() {
            for ix in 0..node.outputs.len() {
                let outlet = OutletId::new(node.id, ix);
                if let Some(label) = probe.outlet_label(outlet) {
                    outlet_of.insert(label, outlet);
                }
            }
            outlet_of
                .entry(node.name.as_str())
                .or_insert(node.id.into());
        }
        let mut seen: HashSet<&str> = HashSet::new();
        for consumer in &self.consumers {
            let mut todo = vec![consumer.input.as_str()];
            while let Some(name) = todo.pop() {
                if !seen.insert(name) {
                    continue;
                }
                let value = outlet_of
                    .get(name)
                    .and_then(|&o| probe.outlet_fact(o).ok())
                    .and_then(|f| f.value.concretize());
                if let Some(v) = value.as_deref().and_then(first_wide) {
                    let from = if name == consumer.input {
                        "holds".to_string()
                    } else {
                        format!("is computed from '{name}', which holds")
                    };
                    return Err(NodeError {
                        node: consumer.node.clone(),
                        op: consumer.op.clone(),
                        message: format!(
                            "its {} (input '{}') {from} {v}, outside the 32-bit range in which \
                             rnn-run (through tract) computes sizes: a size no tensor can have, \
                             or one tract would wrap to a small wrong one",
                            consumer.what, consumer.input
                        ),
                    }
                    .into());
                }
                if let Some(from) = self.upstream.get(name) {
                    todo.extend(from.iter().map(|s| s.as_str()));
                }
            }
        }
        Ok(())
    }
}

/// The first value of `t` outside the 32-bit range, as text.
fn first_wide(t: &Tensor) -> Option<String> {
    let narrow = |v: i64| i32::try_from(v).is_ok();
    let dt = t.datum_type();
    if dt == DatumType::TDim {
        let dims = t.to_plain_array_view::<TDim>().ok()?;
        return dims
            .iter()
            .filter_map(|d| d.to_i64().ok())
            .find(|&v| !narrow(v))
            .map(|v| v.to_string());
    }
    if dt == DatumType::U64 {
        let values = t.to_plain_array_view::<u64>().ok()?;
        return values
            .iter()
            .find(|&&v| v > i32::MAX as u64)
            .map(|v| v.to_string());
    }
    if dt.is_integer() {
        let values = t.cast_to::<i64>().ok()?;
        return values
            .to_plain_array_view::<i64>()
            .ok()?
            .iter()
            .find(|&&v| !narrow(v))
            .map(|v| v.to_string());
    }
    if dt.is_float() {
        let values = t.cast_to::<f64>().ok()?;
        return values
            .to_plain_array_view::<f64>()
            .ok()?
            .iter()
            .find(|v| v.is_finite() && v.abs() >= 2f64.powi(31))
            .map(|v| v.to_string());
    }
    None
}
