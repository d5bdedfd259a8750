//! A dense layer unrolled step by step over an axis, as tf2onnx writes Keras'
//! `TimeDistributed(Dense)` (`Transpose`, then per step `Slice`, `Squeeze`, `MatMul`, `Add`,
//! `Unsqueeze`, then one `Concat`): rnn-run runs it as one product (src/passes/
//! unrolled_dense.rs), and the answer must be the float64 reference's, whatever the axis, the
//! first step, the bias; an input with fewer steps than the graph unrolls is an error, as it
//! is for the graph as written.

mod common;

use common::proto::{
    attr_int, attr_ints, float_initializer, int64_initializer, model_bytes, node, value_info, Dim,
};
use common::random_graph::{Choices, Seeded};
use ndarray::{Array2, Array3, ArrayD};
use rnn_run::{Model, Tensor, TensorExt};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::GraphProto;

const C: usize = 6;
const N: usize = 5;

/// The layer: input `seq` `[batch, C, len]`, transposed so that the steps are along `axis`
/// (0: `[len, batch, C]`, 1: `[batch, len, C]`), steps `first .. first + steps` each through
/// the same `[C, N]` weight and bias, joined along `axis`, then a ReLU.
struct Layer {
    axis: usize,
    first: usize,
    steps: usize,
    bias: bool,
    w: Array2<f32>,
    b: Vec<f32>,
}

impl Layer {
    fn new(axis: usize, first: usize, steps: usize, bias: bool, seed: u64) -> Layer {
        let mut c = Seeded(seed);
        Layer {
            axis,
            first,
            steps,
            bias,
            w: Array2::from_shape_fn((C, N), |_| c.small_float()),
            b: (0..N).map(|_| c.small_float()).collect(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let perm: &[i64] = if self.axis == 0 {
            &[2, 0, 1]
        } else {
            &[0, 2, 1]
        };
        let mut t = node("Transpose", "transpose", &["seq"], &["x"]);
        t.attribute.push(attr_ints("perm", perm));
        let mut g = GraphProto {
            name: "time_distributed".into(),
            node: vec![t],
            input: vec![value_info(
                "seq",
                DataType::Float,
                Some(&[Dim::S("batch"), Dim::N(C as i64), Dim::S("len")]),
            )],
            output: vec![value_info("y", DataType::Float, None)],
            initializer: vec![
                float_initializer("W", &[C as i64, N as i64], self.w.iter().copied().collect()),
                float_initializer("B", &[N as i64], self.b.clone()),
                int64_initializer("axes", &[self.axis as i64]),
            ],
            ..Default::default()
        };
        let mut joined = vec![];
        for k in 0..self.steps {
            let step = (self.first + k) as i64;
            g.initializer
                .push(int64_initializer(&format!("start{k}"), &[step]));
            g.initializer
                .push(int64_initializer(&format!("end{k}"), &[step + 1]));
            let v = |s: &str| format!("td/{s}_{k}");
            g.node.extend([
                node(
                    "Slice",
                    &v("strided_slice"),
                    &["x", &format!("start{k}"), &format!("end{k}"), "axes"],
                    &[&v("sliced")],
                ),
                node(
                    "Squeeze",
                    &v("squeeze"),
                    &[&v("sliced"), "axes"],
                    &[&v("row")],
                ),
                node("MatMul", &v("MatMul"), &[&v("row"), "W"], &[&v("product")]),
            ]);
            let out = if self.bias {
                g.node.push(node(
                    "Add",
                    &v("BiasAdd"),
                    &[&v("product"), "B"],
                    &[&v("biased")],
                ));
                v("biased")
            } else {
                v("product")
            };
            g.node.push(node(
                "Unsqueeze",
                &v("stack_Unsqueeze"),
                &[&out, "axes"],
                &[&v("step")],
            ));
            joined.push(v("step"));
        }
        let refs: Vec<&str> = joined.iter().map(|s| s.as_str()).collect();
        let mut concat = node("Concat", "td/stack_Concat", &refs, &["joined"]);
        concat.attribute.push(attr_int("axis", self.axis as i64));
        g.node.push(concat);
        g.node.push(node("Relu", "relu", &["joined"], &["y"]));
        model_bytes(g, 13)
    }

    /// The float64 reference on `seq` `[batch, C, len]`.
    fn reference(&self, seq: &Array3<f32>) -> ArrayD<f64> {
        let batch = seq.dim().0;
        let mut shape = vec![batch, self.steps, N];
        if self.axis == 0 {
            shape.swap(0, 1);
        }
        let mut y = ArrayD::<f64>::zeros(shape);
        for b in 0..batch {
            for k in 0..self.steps {
                for n in 0..N {
                    let mut acc = if self.bias { self.b[n] as f64 } else { 0.0 };
                    for c in 0..C {
                        acc += seq[[b, c, self.first + k]] as f64 * self.w[[c, n]] as f64;
                    }
                    let ix = if self.axis == 0 { [k, b, n] } else { [b, k, n] };
                    y[&ix[..]] = acc.max(0.0);
                }
            }
        }
        y
    }
}

fn input(batch: usize, len: usize, seed: u64) -> Array3<f32> {
    let mut c = Seeded(seed);
    Array3::from_shape_fn((batch, C, len), |_| c.small_float())
}

#[test]
fn one_product_gives_the_unrolled_layers_answer() {
    let mut cases = 0;
    for axis in [0, 1] {
        for (first, steps, len) in [(0, 7, 7), (2, 5, 9), (0, 2, 2)] {
            for bias in [true, false] {
                let layer = Layer::new(axis, first, steps, bias, 31 + cases);
                let model = Model::from_bytes(&layer.bytes()).unwrap();
                for batch in [1, 3] {
                    let seq = input(batch, len, 7 * cases + batch as u64);
                    let want = layer.reference(&seq);
                    let out = model.run(vec![Tensor::from(seq.clone())]).unwrap();
                    let got = out[0].array_view::<f32>().unwrap();
                    assert_eq!(
                        got.shape(),
                        want.shape(),
                        "axis {axis} first {first} bias {bias}"
                    );
                    for (g, w) in got.iter().zip(want.iter()) {
                        assert!(
                            (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                            "axis {axis} first {first} steps {steps} bias {bias}: {g} vs {w}"
                        );
                    }
                }
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 12);
}

#[test]
fn the_layer_runs_as_one_product() {
    // The per-step products are gone from the plan: none of the steps' node names is left.
    let layer = Layer::new(0, 0, 6, true, 5);
    let model = Model::from_bytes(&layer.bytes()).unwrap();
    let rows = model
        .profile(vec![Tensor::from(input(2, 6, 1))], 1)
        .unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("strided_slice") || n.contains("MatMul_")),
        "{names:?}"
    );
}

#[test]
fn fewer_steps_than_the_graph_unrolls_is_an_error() {
    // Steps 2..7 of an input of 5: the graph as written fails at its Squeeze of an empty
    // slice; the one product must fail too, not return fewer rows.
    let layer = Layer::new(0, 2, 5, true, 9);
    let model = Model::from_bytes(&layer.bytes()).unwrap();
    let err = model.run(vec![Tensor::from(input(2, 5, 3))]).unwrap_err();
    let text = err.to_string();
    common::hostile::assert_plain("an unrolled layer's input too short", &text);
    assert!(text.contains("td/stack_Concat"), "{text}");
}
