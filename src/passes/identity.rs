//! `Identity` nodes removed from the protobuf before tract reads it, each reader of an
//! Identity's output reading its input instead (onnxruntime does the same).
//!
//! tract 0.23.9 types a graph by wiring one node at a time, and `TypedModel::wire_node` looks
//! through every node already wired for one of the same name: typing costs time quadratic in
//! the node count (100,000 Identity nodes took most of a minute). An Identity computes
//! nothing, so dropping it changes no number; what must not change is a name the caller sees
//! or a name a subgraph refers to. So an Identity is kept when its output is a graph output
//! (of the main graph or of any subgraph: a graph input passed to an output by an Identity
//! still produces the output's name), and when its input or output name is defined more than
//! once anywhere in the model (a subgraph shadowing an outer name, or two writers, which the
//! pre-check refuses): a flat renaming is then exact, in subgraphs that refer to outer names
//! too. `value_info` entries of removed names are dropped with them.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{GraphProto, ModelProto, NodeProto};

/// Removes the Identity nodes the rules above allow, in the main graph and every subgraph.
pub(crate) fn remove_identities(proto: &mut ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let mut defined: HashMap<String, u32> = HashMap::new();
    let mut outputs: HashSet<String> = HashSet::new();
    walk(graph, &mut |g| {
        let names = g
            .input
            .iter()
            .map(|i| &i.name)
            .chain(g.initializer.iter().map(|t| &t.name))
            .chain(
                g.sparse_initializer
                    .iter()
                    .filter_map(|s| s.values.as_ref().map(|v| &v.name)),
            )
            .chain(g.node.iter().flat_map(|n| &n.output));
        for name in names.filter(|n| !n.is_empty()) {
            *defined.entry(name.clone()).or_default() += 1;
        }
        outputs.extend(g.output.iter().map(|o| o.name.clone()));
    });
    let once = |name: &str| defined.get(name) == Some(&1);
    // The output each removable Identity writes, and the input it reads.
    let mut source_of: HashMap<String, String> = HashMap::new();
    walk(graph, &mut |g| {
        for node in &g.node {
            if is_plain_identity(node)
                && !outputs.contains(&node.output[0])
                && once(&node.output[0])
                && once(&node.input[0])
            {
                source_of.insert(node.output[0].clone(), node.input[0].clone());
            }
        }
    });
    if source_of.is_empty() {
        return;
    }
    let Some(resolved) = resolve(&source_of) else {
        // A cycle of Identities: the pre-check refuses the graph; leave it as it is.
        return;
    };
    rewrite(graph, &resolved);
}

fn is_plain_identity(node: &NodeProto) -> bool {
    node.op_type == "Identity"
        && (node.domain.is_empty() || node.domain == "ai.onnx")
        && node.input.len() == 1
        && node.output.len() == 1
        && !node.input[0].is_empty()
        && !node.output[0].is_empty()
}

/// Each removed name mapped to the first name up its chain of Identities that stays, in time
/// linear in the chains' length; `None` if the Identities form a cycle.
fn resolve(source_of: &HashMap<String, String>) -> Option<HashMap<String, String>> {
    let mut resolved: HashMap<String, String> = HashMap::with_capacity(source_of.len());
    for start in source_of.keys() {
        let mut path: Vec<&str> = vec![];
        let mut on_path: HashSet<&str> = HashSet::new();
        let mut at = start.as_str();
        let root = loop {
            if let Some(r) = resolved.get(at) {
                break r.clone();
            }
            match source_of.get(at) {
                Some(next) => {
                    if !on_path.insert(at) {
                        return None;
                    }
                    path.push(at);
                    at = next;
                }
                None => break at.to_string(),
            }
        };
        for name in path {
            resolved.insert(name.to_string(), root.clone());
        }
    }
    Some(resolved)
}

fn rewrite(graph: &mut GraphProto, resolved: &HashMap<String, String>) {
    graph
        .node
        .retain(|n| !(is_plain_identity(n) && resolved.contains_key(&n.output[0])));
    graph.value_info.retain(|v| !resolved.contains_key(&v.name));
    for node in &mut graph.node {
        for input in &mut node.input {
            if let Some(to) = resolved.get(input.as_str()) {
                input.clone_from(to);
            }
        }
        for attr in &mut node.attribute {
            for g in attr.g.iter_mut().chain(&mut attr.graphs) {
                rewrite(g, resolved);
            }
        }
    }
}

/// Calls `f` on `graph` and on every subgraph, depth first.
fn walk(graph: &GraphProto, f: &mut impl FnMut(&GraphProto)) {
    f(graph);
    for node in &graph.node {
        for attr in &node.attribute {
            for g in attr.g.iter().chain(&attr.graphs) {
                walk(g, f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{attribute_proto::AttributeType, AttributeProto, ValueInfoProto};

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            name: outputs[0].into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn named(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            ..Default::default()
        }
    }

    fn model(graph: GraphProto) -> ModelProto {
        ModelProto {
            graph: Some(graph),
            ..Default::default()
        }
    }

    fn ops(g: &GraphProto) -> Vec<String> {
        g.node
            .iter()
            .map(|n| format!("{}({})", n.op_type, n.input.join(",")))
            .collect()
    }

    #[test]
    fn readers_read_the_first_name_kept_and_graph_outputs_stay() {
        let mut m = model(GraphProto {
            node: vec![
                node("Identity", &["x"], &["a"]),
                node("Identity", &["a"], &["b"]),
                node("Relu", &["b"], &["r"]),
                node("Identity", &["r"], &["y"]),
                node("Identity", &["x"], &["z"]),
            ],
            input: vec![named("x")],
            output: vec![named("y"), named("z")],
            value_info: vec![named("a"), named("b"), named("r")],
            ..Default::default()
        });
        remove_identities(&mut m);
        let g = m.graph.unwrap();
        assert_eq!(ops(&g), ["Relu(x)", "Identity(r)", "Identity(x)"]);
        let kept: Vec<&str> = g.value_info.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(kept, ["r"]);
    }

    #[test]
    fn subgraphs_follow_and_shadowed_names_are_left_alone() {
        let body = GraphProto {
            node: vec![
                // Reads the outer `a`, which is removed: reads `x` instead.
                node("Add", &["a", "s"], &["t"]),
                // Writes `b`, also written outside: both Identities writing or reading `b`
                // stay.
                node("Identity", &["t"], &["b"]),
                node("Identity", &["b"], &["o"]),
            ],
            input: vec![named("s")],
            output: vec![named("o")],
            ..Default::default()
        };
        let mut scan = node("Scan", &["x", "x"], &["w"]);
        scan.attribute = vec![AttributeProto {
            name: "body".into(),
            r#type: AttributeType::Graph as i32,
            g: Some(body),
            ..Default::default()
        }];
        let mut m = model(GraphProto {
            node: vec![
                node("Identity", &["x"], &["a"]),
                node("Identity", &["a"], &["b"]),
                node("Neg", &["b"], &["y"]),
                scan,
            ],
            input: vec![named("x")],
            output: vec![named("y"), named("w")],
            ..Default::default()
        });
        remove_identities(&mut m);
        let g = m.graph.unwrap();
        assert_eq!(ops(&g), ["Identity(x)", "Neg(b)", "Scan(x,x)"]);
        let body = g.node[2].attribute[0].g.as_ref().unwrap();
        assert_eq!(ops(body), ["Add(x,s)", "Identity(t)", "Identity(b)"]);
    }

    #[test]
    fn a_cycle_of_identities_is_left_for_the_precheck() {
        let graph = GraphProto {
            node: vec![
                node("Identity", &["b"], &["a"]),
                node("Identity", &["a"], &["b"]),
                node("Neg", &["a"], &["y"]),
            ],
            output: vec![named("y")],
            ..Default::default()
        };
        let mut m = model(graph.clone());
        remove_identities(&mut m);
        assert_eq!(m.graph.unwrap(), graph);
    }
}
