//! Shape values written into the file that tract would narrow to 32 bits.
//!
//! tract holds shape values as its symbolic integer type and converts an int64 tensor to it
//! through int32 (`Tensor::cast_to_dt` in tract-data 0.23.9), so `Reshape` to `[2^32+3, -1]`
//! became `[3, -1]` and ran with exit 0. No tensor rnn-run can make has such a dimension (a
//! tensor is limited to 4 GiB), so a constant shape, repeat count or fill shape outside the
//! 32-bit range is refused here, with the node named, before tract converts it. The values are
//! followed from the consuming input back through the ops exporters put between a constant
//! and its use (Identity, Cast, Concat, Unsqueeze, Squeeze).

use std::collections::HashMap;

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto};

/// The ops that read a shape (or repeat counts) from an input, and which input.
const SHAPE_INPUTS: &[(&str, usize, &str)] = &[
    ("Reshape", 1, "shape"),
    ("ConstantOfShape", 0, "shape"),
    ("Tile", 1, "repeats"),
    ("Expand", 1, "shape"),
];

/// Ops whose output carries their inputs' values unchanged (or joined).
const PASS_THROUGH: &[&str] = &["Identity", "Cast", "Concat", "Unsqueeze", "Squeeze"];

pub(crate) fn check_shape_values(graph: &GraphProto) -> Result<(), String> {
    check(graph, &HashMap::new())
}

/// What a tensor name refers to in a graph: an initializer or a node's output.
#[derive(Clone, Copy)]
enum Source<'a> {
    Tensor(&'a TensorProto),
    Node(&'a NodeProto),
}

fn check<'a>(graph: &'a GraphProto, outer: &HashMap<&'a str, Source<'a>>) -> Result<(), String> {
    let mut sources = outer.clone();
    for t in &graph.initializer {
        sources.insert(t.name.as_str(), Source::Tensor(t));
    }
    for node in &graph.node {
        for o in &node.output {
            sources.insert(o.as_str(), Source::Node(node));
        }
    }
    for node in &graph.node {
        if let Some(&(_, slot, what)) = SHAPE_INPUTS
            .iter()
            .find(|(op, _, _)| *op == node.op_type && node.domain.is_empty())
        {
            if let Some(input) = node.input.get(slot).filter(|i| !i.is_empty()) {
                if let Some(v) = out_of_range(&sources, input, 0) {
                    return Err(format!(
                        "node '{}' ({}): its {what} (input '{input}') holds {v}, a size no \
                         tensor can have (rnn-run's sizes are below 2^31 and its tensors \
                         within 4 GiB)",
                        node.name, node.op_type
                    ));
                }
            }
        }
        for attr in &node.attribute {
            for g in attr.g.iter().chain(&attr.graphs) {
                check(g, &sources)?;
            }
        }
    }
    Ok(())
}

/// The first value outside the 32-bit range among the constants `name` is made of.
fn out_of_range(sources: &HashMap<&str, Source>, name: &str, depth: usize) -> Option<i64> {
    // Exporters put a handful of ops between a constant and its use; a long chain is not a
    // shape being passed along.
    if depth > 16 {
        return None;
    }
    match sources.get(name)? {
        Source::Tensor(t) => first_wide(t),
        Source::Node(n) if n.op_type == "Constant" => {
            n.attribute.iter().find_map(|a| match a.name.as_str() {
                "value" => a.t.as_ref().and_then(first_wide),
                "value_int" => wide(a.i),
                "value_ints" => a.ints.iter().copied().find_map(wide),
                _ => None,
            })
        }
        Source::Node(n) if PASS_THROUGH.contains(&n.op_type.as_str()) => {
            let inputs = if n.op_type == "Concat" {
                &n.input[..]
            } else {
                &n.input[..n.input.len().min(1)]
            };
            inputs
                .iter()
                .filter(|i| !i.is_empty())
                .find_map(|i| out_of_range(sources, i, depth + 1))
        }
        Source::Node(_) => None,
    }
}

fn wide(v: i64) -> Option<i64> {
    (i32::try_from(v).is_err()).then_some(v)
}

/// The first value of an int64 or uint64 tensor outside the 32-bit range.
fn first_wide(t: &TensorProto) -> Option<i64> {
    let raw = || t.raw_data.chunks_exact(8).map(|c| c.try_into().unwrap());
    match DataType::try_from(t.data_type).ok()? {
        DataType::Int64 => t
            .int64_data
            .iter()
            .copied()
            .chain(raw().map(i64::from_le_bytes))
            .find_map(wide),
        DataType::Uint64 => t
            .uint64_data
            .iter()
            .copied()
            .chain(raw().map(u64::from_le_bytes))
            .find_map(|v| wide(i64::try_from(v).unwrap_or(i64::MAX))),
        _ => None,
    }
}
