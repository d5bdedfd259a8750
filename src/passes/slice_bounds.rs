//! `Slice` bounds beyond the 32-bit range, rewritten in the protobuf to in-range values with
//! the same meaning before tract reads them.
//!
//! tract-onnx 0.23.9 reads starts and steps through int32 (`2^32` wraps to 0), knows only a
//! few int64 sentinels for ends, and cannot clamp a bound against a symbolic dimension: `ends
//! = INT32_MIN` over a symbolic time axis (a common "to the start" with step -1) typed as a
//! tensor of 2147483647 rows and was refused. Every dimension rnn-run can hold is below
//! [`BIG`], so a bound at or beyond ±[`BIG`] means "past the end" or "before the start", which
//! the spec clamps; it is rewritten to the value tract reads that way:
//!
//! | bound | step > 0 | step < 0 |
//! |---|---|---|
//! | start ≥ BIG | BIG (empty) | -1 (the last entry) |
//! | start ≤ -BIG | 0 | 0 |
//! | end ≥ BIG | `INT64_MAX` (to the end) | BIG (empty) |
//! | end ≤ -BIG | 0 (empty) | `INT64_MIN` (to the start) |
//!
//! and a step beyond ±BIG becomes ±BIG (one entry either way). Only constant bounds (an
//! initializer or a `Constant` node of the same graph) are rewritten, each into a new
//! initializer of the node's own, so that a bound shared with other nodes is left alone.

use std::collections::HashMap;

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, ModelProto, NodeProto, TensorProto};

/// Larger than any dimension of a tensor within rnn-run's limits, and within int32.
const BIG: i64 = i32::MAX as i64 - 1;

/// Rewrites the out-of-range constant bounds of every `Slice` (opset 10 and later) of the
/// model's main graph and subgraphs.
pub(crate) fn normalize(proto: &mut ModelProto) {
    let opset = super::default_opset(proto);
    if opset < 10 {
        return;
    }
    if let Some(graph) = proto.graph.as_mut() {
        normalize_graph(graph);
    }
}

fn normalize_graph(graph: &mut GraphProto) {
    for node in graph.node.iter_mut() {
        for attr in node.attribute.iter_mut() {
            for g in attr.g.iter_mut().chain(attr.graphs.iter_mut()) {
                normalize_graph(g);
            }
        }
    }
    let values = constants(graph);
    let mut added = vec![];
    for (k, node) in graph.node.iter_mut().enumerate() {
        if node.op_type != "Slice" || !node.domain.is_empty() {
            continue;
        }
        let input = |ix: usize| node.input.get(ix).filter(|s| !s.is_empty());
        let (Some(starts), Some(ends)) = (input(1), input(2)) else {
            continue;
        };
        let (Some(starts), Some(ends)) = (values.get(starts.as_str()), values.get(ends.as_str()))
        else {
            continue;
        };
        let steps = match input(4) {
            None => vec![1; starts.len()],
            Some(s) => match values.get(s.as_str()) {
                Some(v) => v.clone(),
                None => continue,
            },
        };
        if steps.len() != starts.len() || ends.len() != starts.len() {
            continue;
        }
        let forward = |i: usize| steps[i] > 0;
        let new_starts: Vec<i64> = (0..starts.len())
            .map(|i| match starts[i] {
                s if s >= BIG && forward(i) => BIG,
                s if s >= BIG => -1,
                s if s <= -BIG => 0,
                s => s,
            })
            .collect();
        let new_ends: Vec<i64> = (0..ends.len())
            .map(|i| match ends[i] {
                e if e >= BIG && forward(i) => i64::MAX,
                e if e >= BIG => BIG,
                e if e <= -BIG && forward(i) => 0,
                e if e <= -BIG => i64::MIN,
                e => e,
            })
            .collect();
        let new_steps: Vec<i64> = steps.iter().map(|&s| s.clamp(-BIG, BIG)).collect();
        for (slot, old, new) in [
            (1, starts, new_starts),
            (2, ends, new_ends),
            (4, &steps, new_steps),
        ] {
            if *old == new {
                continue;
            }
            let name = format!("{}.rnn_run_bounds{k}_{slot}", node.input[0]);
            added.push(TensorProto {
                name: name.clone(),
                dims: vec![new.len() as i64],
                data_type: DataType::Int64 as i32,
                int64_data: new,
                ..Default::default()
            });
            if node.input.len() <= slot {
                node.input.resize(slot + 1, String::new());
            }
            node.input[slot] = name;
        }
    }
    graph.initializer.extend(added);
}

/// The int64 and int32 constants of `graph` (initializers and `Constant` nodes), by name.
pub(super) fn constants(graph: &GraphProto) -> HashMap<String, Vec<i64>> {
    let mut out = HashMap::new();
    for t in &graph.initializer {
        if let Some(v) = ints(t) {
            out.insert(t.name.clone(), v);
        }
    }
    for node in &graph.node {
        if let Some(v) = constant_node(node) {
            if let Some(name) = node.output.first() {
                out.insert(name.clone(), v);
            }
        }
    }
    out
}

fn constant_node(node: &NodeProto) -> Option<Vec<i64>> {
    if node.op_type != "Constant" || !node.domain.is_empty() {
        return None;
    }
    node.attribute.iter().find_map(|a| match a.name.as_str() {
        "value" => a.t.as_ref().and_then(ints),
        "value_ints" => Some(a.ints.clone()),
        _ => None,
    })
}

/// The values of a small int64 or int32 tensor stored in the file.
fn ints(t: &TensorProto) -> Option<Vec<i64>> {
    if t.dims.len() > 1 || t.dims.first().is_some_and(|&d| d > 64) {
        return None;
    }
    match DataType::try_from(t.data_type).ok()? {
        DataType::Int64 if t.raw_data.is_empty() => Some(t.int64_data.clone()),
        DataType::Int64 => Some(
            t.raw_data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        DataType::Int32 if t.raw_data.is_empty() => {
            Some(t.int32_data.iter().map(|&v| v as i64).collect())
        }
        DataType::Int32 => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
        ),
        _ => None,
    }
}
