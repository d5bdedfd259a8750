//! Defects of the graph itself that tract would accept with a silent choice: a tensor written
//! by two nodes (the later one wins), an attribute given twice on a node (the first wins), and
//! a default-domain opset newer than any rnn-run knows (its ops read by older definitions).
//! onnxruntime refuses all three; so does rnn-run, naming the tensor, node or opset.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{GraphProto, ModelProto, NodeProto};

/// The newest default-domain opset rnn-run reads: the newest ONNX defines (ONNX 1.23). Later
/// opsets may redefine ops that tract would read by their older definitions.
pub(crate) const NEWEST_OPSET: i64 = 28;

/// Runs the checks of this file on the model and every subgraph.
pub(crate) fn check_graph(proto: &ModelProto, graph: &GraphProto) -> Result<(), String> {
    for import in &proto.opset_import {
        if (import.domain.is_empty() || import.domain == "ai.onnx") && import.version > NEWEST_OPSET
        {
            return Err(format!(
                "the model imports the default ONNX domain at opset {}, newer than any \
                 rnn-run knows (up to {NEWEST_OPSET}): its operators may not mean what \
                 rnn-run would read them as",
                import.version
            ));
        }
    }
    check_one_graph(graph)
}

fn check_one_graph(graph: &GraphProto) -> Result<(), String> {
    let mut initializers = HashSet::new();
    for t in &graph.initializer {
        if !initializers.insert(t.name.as_str()) {
            return Err(format!(
                "initializer '{}' is given twice in graph '{}'",
                t.name, graph.name
            ));
        }
    }
    let mut writers: HashMap<&str, &NodeProto> = HashMap::new();
    for node in &graph.node {
        for output in node.output.iter().filter(|o| !o.is_empty()) {
            if let Some(first) = writers.insert(output, node) {
                return Err(format!(
                    "tensor '{output}' is written by two nodes, {} and {}; a tensor has one \
                     producer",
                    describe(first),
                    describe(node)
                ));
            }
        }
        let mut seen = HashSet::new();
        for attr in &node.attribute {
            if !seen.insert(attr.name.as_str()) {
                return Err(format!(
                    "node {}: attribute '{}' is given twice",
                    describe(node),
                    attr.name
                ));
            }
            for g in attr.g.iter().chain(&attr.graphs) {
                check_one_graph(g)?;
            }
        }
    }
    Ok(())
}

/// "'name' (Op)", or the node's first output when it has no name.
fn describe(node: &NodeProto) -> String {
    if node.name.is_empty() {
        match node.output.iter().find(|o| !o.is_empty()) {
            Some(o) => format!("the {} node writing '{o}'", node.op_type),
            None => format!("an unnamed {} node", node.op_type),
        }
    } else {
        format!("'{}' ({})", node.name, node.op_type)
    }
}
