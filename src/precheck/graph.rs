//! Defects of the graph itself that tract would accept with a silent choice: a tensor written
//! by two nodes (the later one wins), an attribute given twice on a node (the first wins), and
//! a default-domain opset newer than any rnn-run knows (its ops read by older definitions);
//! and a Concat of constants of different ranks, which tract reports in its analyser's words
//! ("Impossible to unify 2 with 1") only when the model runs. onnxruntime refuses all four; so
//! does rnn-run, naming the tensor, node or opset.

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
        check_concat_ranks(graph, node)?;
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

/// A Concat of initializers of different ranks. The dynamo exporter writes one for a
/// multi-layer or bidirectional `nn.LSTM(proj_size=P)` (the weights of the second layer or
/// direction joined to a bias); such a module has no ONNX form, and the message says what runs it.
fn check_concat_ranks(graph: &GraphProto, node: &NodeProto) -> Result<(), String> {
    if node.op_type != "Concat" || !node.domain.is_empty() && node.domain != "ai.onnx" {
        return Ok(());
    }
    let shapes: Vec<(&str, &[i64])> = node
        .input
        .iter()
        .filter_map(|i| {
            let t = graph.initializer.iter().find(|t| &t.name == i)?;
            Some((i.as_str(), t.dims.as_slice()))
        })
        .collect();
    let Some((first, rest)) = shapes.split_first() else {
        return Ok(());
    };
    let Some(other) = rest.iter().find(|(_, dims)| dims.len() != first.1.len()) else {
        return Ok(());
    };
    let show = |(name, dims): &(&str, &[i64])| {
        let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        format!("'{name}' is [{}] (rank {})", dims.join(", "), dims.len())
    };
    Err(format!(
        "node {}: the export is invalid: Concat joins tensors of one rank, and its inputs \
         differ: {} but {}{}",
        describe(node),
        show(first),
        show(other),
        projected_lstm_hint(graph)
    ))
}

/// When an LSTM of the graph starts from an initial_c wider than its hidden_size, the graph is
/// an export of `nn.LSTM(proj_size=...)`: what to run instead.
fn projected_lstm_hint(graph: &GraphProto) -> String {
    for node in graph.node.iter().filter(|n| n.op_type == "LSTM") {
        let hidden = node
            .attribute
            .iter()
            .find(|a| a.name == "hidden_size")
            .map(|a| a.i);
        let cell = node
            .input
            .get(6)
            .and_then(|c| graph.initializer.iter().find(|t| &t.name == c))
            .and_then(|t| t.dims.last().copied());
        if let (Some(h), Some(c)) = (hidden, cell) {
            if c > h {
                return format!(
                    ". This is an export of nn.LSTM(hidden_size={c}, proj_size={h}) ('{}' \
                     starts from a cell state {c} wide and a hidden state {h} wide): ONNX's \
                     LSTM cannot express proj_size, and onnxruntime refuses this file too; \
                     rnn_run::torch::TorchRecurrent runs that module from its state dict \
                     (safetensors.torch.save_file(lstm.state_dict(), \"weights.safetensors\"))",
                    node.name
                );
            }
        }
    }
    " (onnxruntime refuses this file too)".into()
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
