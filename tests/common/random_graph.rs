//! Random ONNX graphs from a small grammar, to check the streaming promise beyond hand-picked
//! models: time inputs `[batch, time, features]` (one or two) and stream-start inputs
//! (initial states), through
//! - time-local ops: unary and binary elementwise ops, matrix products over features,
//!   concatenation, softmax and normalization over features, transposes and reshapes that
//!   keep the time axis whole, gathers and slices of features;
//! - stateful ops: forward RNN/LSTM/GRU (either layout, with or without initial states), and
//!   convolutions causal along time;
//! - last-step reads: a gather or slice of the last step, a recurrent node's final state;
//! - time-mixing ops, each named `mix<k>_<op>`: reductions, softmax and cumulative sums over
//!   time, reads of other steps, a convolution that looks ahead, a backward or bidirectional
//!   recurrent node, time flattened into features, a product across time, concatenation and
//!   padding along time, a final value added to per-step ones.
//!
//! Choices come from a byte source (a seeded generator in the property test, the fuzzer's
//! input in the fuzz target), so a failure is replayed from its seed or bytes.
#![allow(dead_code)]

use tract_onnx::pb::{self, tensor_proto::DataType};

use super::proto::{attr_int, attr_string, float_initializer, model_bytes, value_info, Dim};

/// Where the generator's choices come from.
pub trait Choices {
    /// A number in `0..n` (n ≥ 1).
    fn below(&mut self, n: usize) -> usize;

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn small_float(&mut self) -> f32 {
        (self.below(2001) as f32 - 1000.0) / 1000.0
    }
}

/// A seeded generator (splitmix64).
pub struct Seeded(pub u64);

impl Choices for Seeded {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n.max(1) as u64) as usize
    }
}

/// Bytes, then zeros: a fuzzer's input.
pub struct Bytes<'a>(pub &'a [u8]);

impl Choices for Bytes<'_> {
    fn below(&mut self, n: usize) -> usize {
        let (first, rest) = match self.0.split_first() {
            Some((f, r)) => (*f as usize, r),
            None => (0, &[][..]),
        };
        self.0 = rest;
        first % n.max(1)
    }
}

/// What a wire holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `[batch, time, f]`.
    Step,
    /// `[batch, f]`: after the last step.
    Final,
}

#[derive(Clone, Debug)]
struct Wire {
    name: String,
    kind: Kind,
    features: usize,
}

/// A generated model and what the test needs to know about it.
pub struct Generated {
    pub bytes: Vec<u8>,
    /// Names of the nodes that mix time steps (a stream must refuse one of them).
    pub mixers: Vec<String>,
    /// Inputs: (name, time input?, shape without batch and time for time inputs / full
    /// shape for start inputs, where 0 stands for the batch).
    pub inputs: Vec<(String, bool, Vec<usize>)>,
    /// One line per node, to replay a failure by eye.
    pub description: Vec<String>,
}

struct Builder<'c, C: Choices> {
    c: &'c mut C,
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    input_list: Vec<(String, bool, Vec<usize>)>,
    wires: Vec<Wire>,
    mixers: Vec<String>,
    dead_ends: Vec<String>,
    count: usize,
    description: Vec<String>,
}

/// Generates a model; `mixing` is the chance (percent) that each op is a time-mixing one.
pub fn generate<C: Choices>(c: &mut C, mixing: usize) -> Generated {
    let mut b = Builder {
        c,
        nodes: vec![],
        inits: vec![],
        inputs: vec![],
        input_list: vec![],
        wires: vec![],
        mixers: vec![],
        dead_ends: vec![],
        count: 0,
        description: vec![],
    };
    let f0 = 2 + b.c.below(5);
    b.time_input("x", f0);
    if b.c.chance(30) {
        let f1 = 2 + b.c.below(4);
        b.time_input("y", f1);
    }
    let ops = 2 + b.c.below(6);
    for _ in 0..ops {
        if b.c.chance(mixing) {
            b.mixer();
        } else {
            b.local();
        }
    }
    // Outputs: the last wire, maybe another, and every dead end of a mixer.
    let mut outputs: Vec<String> = vec![b.wires.last().unwrap().name.clone()];
    if b.wires.len() > 2 && b.c.chance(50) {
        let k = b.c.below(b.wires.len() - 1);
        let name = b.wires[k].name.clone();
        if !outputs.contains(&name) && !b.input_list.iter().any(|(n, _, _)| *n == name) {
            outputs.push(name);
        }
    }
    for d in std::mem::take(&mut b.dead_ends) {
        if !outputs.contains(&d) {
            outputs.push(d);
        }
    }
    let graph = pb::GraphProto {
        name: "random".into(),
        node: b.nodes,
        initializer: b.inits,
        input: b.inputs,
        output: outputs
            .iter()
            .map(|o| value_info(o, DataType::Float, None))
            .collect(),
        ..Default::default()
    };
    Generated {
        bytes: model_bytes(graph, 17),
        mixers: b.mixers,
        inputs: b.input_list,
        description: b.description,
    }
}

impl<C: Choices> Builder<'_, C> {
    fn fresh(&mut self, what: &str) -> String {
        self.count += 1;
        format!("n{}_{what}", self.count)
    }

    fn mixer_name(&mut self, what: &str) -> String {
        self.count += 1;
        let name = format!("mix{}_{what}", self.count);
        self.mixers.push(name.clone());
        name
    }

    fn time_input(&mut self, name: &str, features: usize) {
        let dims = [Dim::S("batch"), Dim::S("time"), Dim::N(features as i64)];
        self.inputs
            .push(value_info(name, DataType::Float, Some(&dims)));
        self.input_list.push((name.into(), true, vec![features]));
        self.wires.push(Wire {
            name: name.into(),
            kind: Kind::Step,
            features,
        });
    }

    fn konst(&mut self, dims: &[usize]) -> String {
        let name = self.fresh("c");
        let n: usize = dims.iter().product();
        let data = (0..n).map(|_| self.c.small_float()).collect();
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        self.inits.push(float_initializer(&name, &dims, data));
        name
    }

    fn ints(&mut self, values: &[i64]) -> String {
        let name = self.fresh("i");
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name
    }

    fn scalar_int(&mut self, value: i64) -> String {
        let name = self.fresh("i");
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![],
            data_type: DataType::Int64 as i32,
            int64_data: vec![value],
            ..Default::default()
        });
        name
    }

    fn node(
        &mut self,
        name: &str,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<pb::AttributeProto>,
    ) {
        self.description.push(format!(
            "{name}: {op}({}) -> {}",
            inputs.join(", "),
            outputs.join(", ")
        ));
        self.nodes.push(pb::NodeProto {
            name: name.into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute,
            ..Default::default()
        });
    }

    /// A node with one output, which becomes a new wire.
    fn wire(
        &mut self,
        name: String,
        op: &str,
        inputs: &[&str],
        attribute: Vec<pb::AttributeProto>,
        kind: Kind,
        features: usize,
    ) -> String {
        let out = format!("{name}_out");
        self.node(&name, op, inputs, &[&out], attribute);
        self.wires.push(Wire {
            name: out.clone(),
            kind,
            features,
        });
        out
    }

    fn pick(&mut self, kind: Kind) -> Option<Wire> {
        let of_kind: Vec<Wire> = self
            .wires
            .iter()
            .filter(|w| w.kind == kind)
            .cloned()
            .collect();
        if of_kind.is_empty() {
            return None;
        }
        // Favour recent wires: the graph grows deeper rather than wider.
        let k = of_kind.len() - 1 - self.c.below(of_kind.len().min(3));
        Some(of_kind[k].clone())
    }

    /// A time-local, stateful or last-step op.
    fn local(&mut self) {
        let step = self.pick(Kind::Step).expect("a time input");
        let f = step.features;
        match self.c.below(16) {
            0 => {
                let op = ["Relu", "Tanh", "Sigmoid", "Neg"][self.c.below(4)];
                let name = self.fresh(op);
                let kind = self.pick_any();
                self.wire(name, op, &[&kind.name], vec![], kind.kind, kind.features);
            }
            1 => {
                let op = ["Add", "Mul", "Sub"][self.c.below(3)];
                let w = self.pick_any();
                let k = self.konst(&[w.features]);
                let name = self.fresh(op);
                self.wire(name, op, &[&w.name, &k], vec![], w.kind, w.features);
            }
            2 => {
                // Two wires of the same kind and width.
                let w = self.pick_any();
                let others: Vec<Wire> = self
                    .wires
                    .iter()
                    .filter(|o| o.kind == w.kind && o.features == w.features)
                    .cloned()
                    .collect();
                let o = others[self.c.below(others.len())].clone();
                let op = ["Add", "Mul", "Sub"][self.c.below(3)];
                let name = self.fresh(op);
                self.wire(name, op, &[&w.name, &o.name], vec![], w.kind, w.features);
            }
            3 => {
                let w = self.pick_any();
                let g = 2 + self.c.below(5);
                let k = self.konst(&[w.features, g]);
                let name = self.fresh("MatMul");
                self.wire(name, "MatMul", &[&w.name, &k], vec![], w.kind, g);
            }
            4 => {
                let o = self.pick(Kind::Step).unwrap();
                let name = self.fresh("Concat");
                self.wire(
                    name,
                    "Concat",
                    &[&step.name, &o.name],
                    vec![attr_int("axis", 2)],
                    Kind::Step,
                    f + o.features,
                );
            }
            5 => {
                let name = self.fresh("Softmax");
                self.wire(
                    name,
                    "Softmax",
                    &[&step.name],
                    vec![attr_int("axis", -1)],
                    Kind::Step,
                    f,
                );
            }
            6 => {
                // Normalization over features: x - mean(x).
                let name = self.fresh("ReduceMean");
                let mean = format!("{name}_out");
                self.node(
                    &name,
                    "ReduceMean",
                    &[&step.name],
                    &[&mean],
                    vec![ints_attr("axes", &[2]), attr_int("keepdims", 1)],
                );
                let sub = self.fresh("Sub");
                self.wire(sub, "Sub", &[&step.name, &mean], vec![], Kind::Step, f);
            }
            7 => {
                // Time-major and back.
                let t = self.fresh("Transpose");
                let tout = format!("{t}_out");
                self.node(
                    &t,
                    "Transpose",
                    &[&step.name],
                    &[&tout],
                    vec![ints_attr("perm", &[1, 0, 2])],
                );
                let r = self.fresh("Relu");
                let rout = format!("{r}_out");
                self.node(&r, "Relu", &[&tout], &[&rout], vec![]);
                let back = self.fresh("Transpose");
                self.wire(
                    back,
                    "Transpose",
                    &[&rout],
                    vec![ints_attr("perm", &[1, 0, 2])],
                    Kind::Step,
                    f,
                );
            }
            8 if f.is_multiple_of(2) => {
                let split = self.ints(&[0, 0, 2, f as i64 / 2]);
                let r = self.fresh("Reshape");
                let rout = format!("{r}_out");
                self.node(&r, "Reshape", &[&step.name, &split], &[&rout], vec![]);
                let merge = self.ints(&[0, 0, f as i64]);
                let back = self.fresh("Reshape");
                self.wire(back, "Reshape", &[&rout, &merge], vec![], Kind::Step, f);
            }
            9 | 10 => self.recurrent(&step, "forward"),
            11 => self.conv(&step, true),
            12 => {
                let idx = self.ints(&[(f - 1) as i64, 0]);
                let name = self.fresh("Gather");
                self.wire(
                    name,
                    "Gather",
                    &[&step.name, &idx],
                    vec![attr_int("axis", 2)],
                    Kind::Step,
                    2,
                );
            }
            13 => {
                // The last step, by Gather or by Slice.
                if self.c.chance(50) {
                    let idx = self.scalar_int(-1);
                    let name = self.fresh("Gather");
                    self.wire(
                        name,
                        "Gather",
                        &[&step.name, &idx],
                        vec![attr_int("axis", 1)],
                        Kind::Final,
                        f,
                    );
                } else {
                    let (s, e, a) = (self.ints(&[-1]), self.ints(&[i64::MAX]), self.ints(&[1]));
                    let name = self.fresh("Slice");
                    let out = format!("{name}_out");
                    self.node(&name, "Slice", &[&step.name, &s, &e, &a], &[&out], vec![]);
                    let axes = self.ints(&[1]);
                    let sq = self.fresh("Squeeze");
                    self.wire(sq, "Squeeze", &[&out, &axes], vec![], Kind::Final, f);
                }
            }
            14 => {
                let (s, e, a) = (self.ints(&[0]), self.ints(&[1]), self.ints(&[2]));
                let name = self.fresh("Slice");
                self.wire(
                    name,
                    "Slice",
                    &[&step.name, &s, &e, &a],
                    vec![],
                    Kind::Step,
                    1,
                );
            }
            _ => {
                let name = self.fresh("Tanh");
                self.wire(name, "Tanh", &[&step.name], vec![], Kind::Step, f);
            }
        }
    }

    /// Any wire, step or final.
    fn pick_any(&mut self) -> Wire {
        let k = self.wires.len() - 1 - self.c.below(self.wires.len().min(3));
        self.wires[k].clone()
    }

    /// A recurrent node on `step` (`[batch, time, f]`), its Y back in that layout.
    fn recurrent(&mut self, step: &Wire, direction: &str) {
        let op = ["RNN", "LSTM", "GRU"][self.c.below(3)];
        let gates = match op {
            "RNN" => 1,
            "LSTM" => 4,
            _ => 3,
        };
        let dirs = if direction == "bidirectional" { 2 } else { 1 };
        let h = 2 + self.c.below(4);
        let f = step.features;
        let batch_major = self.c.chance(50);
        let name = if direction == "forward" {
            self.fresh(op)
        } else {
            self.mixer_name(op)
        };
        let x = if batch_major {
            step.name.clone()
        } else {
            let t = self.fresh("Transpose");
            let out = format!("{t}_out");
            self.node(
                &t,
                "Transpose",
                &[&step.name],
                &[&out],
                vec![ints_attr("perm", &[1, 0, 2])],
            );
            out
        };
        let w = self.konst(&[dirs, gates * h, f]);
        let r = self.konst(&[dirs, gates * h, h]);
        let bias = self.konst(&[dirs, 2 * gates * h]);
        let mut inputs = vec![x, w, r, bias];
        // An initial state from a stream-start input, sometimes.
        if self.c.chance(40) {
            let h0 = format!("{name}_h0");
            let dims = if batch_major {
                [Dim::S("batch"), Dim::N(dirs as i64), Dim::N(h as i64)]
            } else {
                [Dim::N(dirs as i64), Dim::S("batch"), Dim::N(h as i64)]
            };
            self.inputs
                .push(value_info(&h0, DataType::Float, Some(&dims)));
            let shape = if batch_major {
                vec![0, dirs, h]
            } else {
                vec![dirs, 0, h]
            };
            self.input_list.push((h0.clone(), false, shape));
            inputs.push(String::new());
            inputs.push(h0);
        }
        let y = format!("{name}_y");
        let y_h = format!("{name}_yh");
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let mut attrs = vec![
            attr_int("hidden_size", h as i64),
            attr_string("direction", direction),
        ];
        if batch_major {
            attrs.push(attr_int("layout", 1));
        }
        self.node(&name, op, &refs, &[&y, &y_h], attrs);
        // Y: [seq, dirs, batch, h] or [batch, seq, dirs, h] -> [batch, time, dirs*h].
        let flat = if batch_major {
            let shape = self.ints(&[0, 0, (dirs * h) as i64]);
            let n = self.fresh("Reshape");
            let out = format!("{n}_out");
            self.node(&n, "Reshape", &[&y, &shape], &[&out], vec![]);
            out
        } else {
            let t = self.fresh("Transpose");
            let tout = format!("{t}_out");
            self.node(
                &t,
                "Transpose",
                &[&y],
                &[&tout],
                vec![ints_attr("perm", &[2, 0, 1, 3])],
            );
            let shape = self.ints(&[0, 0, (dirs * h) as i64]);
            let n = self.fresh("Reshape");
            let out = format!("{n}_out");
            self.node(&n, "Reshape", &[&tout, &shape], &[&out], vec![]);
            out
        };
        self.wires.push(Wire {
            name: flat,
            kind: Kind::Step,
            features: dirs * h,
        });
        // Y_h, final: [dirs, batch, h] or [batch, dirs, h] -> [batch, dirs*h].
        if self.c.chance(40) {
            let t = if batch_major {
                y_h.clone()
            } else {
                let t = self.fresh("Transpose");
                let tout = format!("{t}_out");
                self.node(
                    &t,
                    "Transpose",
                    &[&y_h],
                    &[&tout],
                    vec![ints_attr("perm", &[1, 0, 2])],
                );
                tout
            };
            let shape = self.ints(&[0, (dirs * h) as i64]);
            let n = self.fresh("Reshape");
            self.wire(n, "Reshape", &[&t, &shape], vec![], Kind::Final, dirs * h);
        }
    }

    /// A convolution along time: causal (left padding = its reach) or looking ahead.
    fn conv(&mut self, step: &Wire, causal: bool) {
        let f = step.features;
        let k = 2 + self.c.below(3);
        let d = 1 + self.c.below(2);
        let reach = (k - 1) * d;
        let (before, after) = if causal {
            (reach, 0)
        } else {
            let after = 1 + self.c.below(reach);
            (reach - after, after)
        };
        let g = 2 + self.c.below(4);
        let t = self.fresh("Transpose");
        let tout = format!("{t}_out");
        self.node(
            &t,
            "Transpose",
            &[&step.name],
            &[&tout],
            vec![ints_attr("perm", &[0, 2, 1])],
        );
        let w = self.konst(&[g, f, k]);
        let b = self.konst(&[g]);
        let name = if causal {
            self.fresh("Conv")
        } else {
            self.mixer_name("Conv")
        };
        let out = format!("{name}_out");
        self.node(
            &name,
            "Conv",
            &[&tout, &w, &b],
            &[&out],
            vec![
                ints_attr("kernel_shape", &[k as i64]),
                ints_attr("dilations", &[d as i64]),
                ints_attr("pads", &[before as i64, after as i64]),
            ],
        );
        let back = self.fresh("Transpose");
        self.wire(
            back,
            "Transpose",
            &[&out],
            vec![ints_attr("perm", &[0, 2, 1])],
            Kind::Step,
            g,
        );
    }

    /// An op that mixes time steps; its result is a graph output (a dead end) or a wire.
    fn mixer(&mut self) {
        let step = self.pick(Kind::Step).expect("a time input");
        let f = step.features;
        match self.c.below(13) {
            0 => {
                let op = ["ReduceMean", "ReduceMax", "ReduceSum"][self.c.below(3)];
                let name = self.mixer_name(op);
                let attrs = if op == "ReduceSum" {
                    vec![attr_int("keepdims", 0)]
                } else {
                    vec![ints_attr("axes", &[1]), attr_int("keepdims", 0)]
                };
                let inputs: Vec<String> = if op == "ReduceSum" {
                    vec![step.name.clone(), self.ints(&[1])]
                } else {
                    vec![step.name.clone()]
                };
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                self.wire(name, op, &refs, attrs, Kind::Final, f);
            }
            1 => {
                let first = self.c.below(2) as i64;
                let idx = self.scalar_int(first);
                let name = self.mixer_name("Gather");
                self.wire(
                    name,
                    "Gather",
                    &[&step.name, &idx],
                    vec![attr_int("axis", 1)],
                    Kind::Final,
                    f,
                );
            }
            2 => {
                let (s, e, a) = (self.ints(&[0]), self.ints(&[2]), self.ints(&[1]));
                let name = self.mixer_name("Slice");
                let out = format!("{name}_out");
                self.node(&name, "Slice", &[&step.name, &s, &e, &a], &[&out], vec![]);
                self.dead_ends.push(out);
            }
            3 => {
                let name = self.mixer_name("Softmax");
                self.wire(
                    name,
                    "Softmax",
                    &[&step.name],
                    vec![attr_int("axis", 1)],
                    Kind::Step,
                    f,
                );
            }
            4 => {
                let axis = self.scalar_int(1);
                let name = self.mixer_name("CumSum");
                self.wire(name, "CumSum", &[&step.name, &axis], vec![], Kind::Step, f);
            }
            5 => self.conv(&step, false),
            6 => self.recurrent(&step, "reverse"),
            7 => self.recurrent(&step, "bidirectional"),
            8 => {
                let shape = self.ints(&[0, -1]);
                let name = self.mixer_name("Reshape");
                let out = format!("{name}_out");
                self.node(&name, "Reshape", &[&step.name, &shape], &[&out], vec![]);
                self.dead_ends.push(out);
            }
            9 => {
                let t = self.fresh("Transpose");
                let tout = format!("{t}_out");
                self.node(
                    &t,
                    "Transpose",
                    &[&step.name],
                    &[&tout],
                    vec![ints_attr("perm", &[0, 2, 1])],
                );
                let name = self.mixer_name("MatMul");
                let out = format!("{name}_out");
                self.node(&name, "MatMul", &[&tout, &step.name], &[&out], vec![]);
                self.dead_ends.push(out);
            }
            10 => {
                let name = self.mixer_name("Concat");
                let out = format!("{name}_out");
                self.node(
                    &name,
                    "Concat",
                    &[&step.name, &step.name],
                    &[&out],
                    vec![attr_int("axis", 1)],
                );
                self.dead_ends.push(out);
            }
            11 => {
                let pads = self.ints(&[0, 1, 0, 0, 0, 0]);
                let name = self.mixer_name("Pad");
                let out = format!("{name}_out");
                self.node(&name, "Pad", &[&step.name, &pads], &[&out], vec![]);
                self.dead_ends.push(out);
            }
            _ => {
                // The value after the last step, added back to every step.
                let idx = self.scalar_int(-1);
                let last = self.fresh("Gather");
                let lout = format!("{last}_out");
                self.node(
                    &last,
                    "Gather",
                    &[&step.name, &idx],
                    &[&lout],
                    vec![attr_int("axis", 1)],
                );
                let axes = self.ints(&[1]);
                let u = self.fresh("Unsqueeze");
                let uout = format!("{u}_out");
                self.node(&u, "Unsqueeze", &[&lout, &axes], &[&uout], vec![]);
                let name = self.mixer_name("Add");
                self.wire(name, "Add", &[&step.name, &uout], vec![], Kind::Step, f);
            }
        }
    }
}

fn ints_attr(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}
