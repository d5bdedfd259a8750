//! Keras `Conv1D` as tf2onnx writes it (channels-last `[n, w, c]` input, `ExpandDims`, a
//! `Transpose` to NCHW, a 1 × k `Conv`, the `Transpose` back and a `Squeeze`, its bias a
//! separate `Add` or the `Conv`'s own, a ReLU or not), through the library: tract's declutter
//! turns it into a channels-last 1-D convolution, which the plan must run on rnn-run's
//! `ChannelsLastConv` alone (no im2col, bias and ReLU inside), computing a float64 reference of the same convolution
//! within f32 rounding.

mod common;

use common::proto::{fixed, float_initializer, model_bytes, value_info, Dim};
use common::rng::Rng;
use rnn_run::{Model, Tensor};
use tract_onnx::pb::{tensor_proto::DataType, AttributeProto, GraphProto, NodeProto};

fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.iter().map(|&i| i as i64).collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn floats(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        .collect()
}

/// One case: its sizes and how the graph writes the bias and the activation.
#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    w: usize,
    c: usize,
    k: usize,
    cout: usize,
    /// The bias as an `Add` after the `Squeeze` (Keras), or as the `Conv`'s third input.
    bias_add: bool,
    relu: bool,
    /// The batch axis declared as a symbol.
    symbolic: bool,
}

/// The graph, its input, and the reference output `[n, w - k + 1, cout]` in float64 with the
/// sum of each value's terms' magnitudes.
fn build(case: Case, seed: u64) -> (Vec<u8>, Tensor, Vec<f64>, Vec<f64>) {
    let rng = &mut Rng(seed);
    let Case {
        n,
        w,
        c,
        k,
        cout,
        bias_add,
        relu,
        symbolic,
    } = case;
    let x = floats(rng, n * w * c);
    let kernel = floats(rng, cout * c * k);
    let bias = floats(rng, cout);
    let conv_inputs: &[&str] = if bias_add {
        &["nchw", "kernel"]
    } else {
        &["nchw", "kernel", "bias"]
    };
    let mut nodes = vec![
        node(
            "Unsqueeze",
            &["x"],
            "expanded",
            vec![attr_ints("axes", &[1])],
        ),
        node(
            "Transpose",
            &["expanded"],
            "nchw",
            vec![attr_ints("perm", &[0, 3, 1, 2])],
        ),
        node(
            "Conv",
            conv_inputs,
            "conv",
            vec![
                attr_ints("kernel_shape", &[1, k]),
                attr_ints("strides", &[1, 1]),
                attr_ints("dilations", &[1, 1]),
            ],
        ),
        node(
            "Transpose",
            &["conv"],
            "nhwc",
            vec![attr_ints("perm", &[0, 2, 3, 1])],
        ),
        node(
            "Squeeze",
            &["nhwc"],
            "squeezed",
            vec![attr_ints("axes", &[1])],
        ),
    ];
    let mut last = "squeezed";
    if bias_add {
        nodes.push(node("Add", &[last, "bias"], "biased", vec![]));
        last = "biased";
    }
    if relu {
        nodes.push(node("Relu", &[last], "y", vec![]));
    } else {
        nodes.push(node("Identity", &[last], "y", vec![]));
    }
    let dims: Vec<Dim> = if symbolic {
        vec![Dim::S("batch"), Dim::N(w as i64), Dim::N(c as i64)]
    } else {
        fixed(&[n, w, c])
    };
    let graph = GraphProto {
        name: "conv1d".into(),
        node: nodes,
        initializer: vec![
            float_initializer(
                "kernel",
                &[cout as i64, c as i64, 1, k as i64],
                kernel.clone(),
            ),
            float_initializer("bias", &[cout as i64], bias.clone()),
        ],
        input: vec![value_info("x", DataType::Float, Some(&dims))],
        output: vec![value_info("y", DataType::Float, None)],
        ..Default::default()
    };
    let ow = w + 1 - k;
    let (mut want, mut magnitudes) = (vec![], vec![]);
    for nn in 0..n {
        for p in 0..ow {
            for o in 0..cout {
                let (mut sum, mut mag) = (bias[o] as f64, bias[o].abs() as f64);
                for t in 0..k {
                    for i in 0..c {
                        let term =
                            x[(nn * w + p + t) * c + i] as f64 * kernel[(o * c + i) * k + t] as f64;
                        sum += term;
                        mag += term.abs();
                    }
                }
                want.push(if relu { sum.max(0.0) } else { sum });
                magnitudes.push(mag);
            }
        }
    }
    let input = tract_onnx::prelude::tract_ndarray::ArrayD::from_shape_vec(vec![n, w, c], x)
        .unwrap()
        .into();
    (model_bytes(graph, 11), input, want, magnitudes)
}

#[test]
fn keras_conv1d_runs_on_channels_last_conv() {
    let cases = [
        // OSKut's refiner: 70 × 21 positions of 32 channels.
        (70, 21, 32, 8, 200, true, true, false),
        (70, 21, 32, 12, 100, true, true, true),
        // The kernel as wide as the input: one output position.
        (2, 7, 5, 7, 17, false, false, false),
        (1, 1, 40, 1, 210, false, true, false),
        (3, 30, 1, 3, 1, true, false, true),
        (4, 13, 40, 12, 33, false, true, true),
        (1, 50, 16, 5, 64, true, false, false),
    ];
    for (seed, &(n, w, c, k, cout, bias_add, relu, symbolic)) in cases.iter().enumerate() {
        let case = Case {
            n,
            w,
            c,
            k,
            cout,
            bias_add,
            relu,
            symbolic,
        };
        let (bytes, x, want, magnitudes) = build(case, seed as u64);
        let model = Model::from_bytes(&bytes).unwrap();
        let got = model.run(vec![x.clone()]).unwrap();
        assert_eq!(got[0].shape(), [n, w + 1 - k, cout], "{case:?}");
        let got = got[0].to_plain_array_view::<f32>().unwrap();
        for (j, ((&g, &v), &m)) in got.iter().zip(&want).zip(&magnitudes).enumerate() {
            let d = (g as f64 - v).abs() / (m + 1e-3);
            assert!(d <= 1e-5, "{case:?}: element {j} is {g}, expected {v}");
        }
        let ops: Vec<String> = model
            .profile(vec![x], 1)
            .unwrap()
            .into_iter()
            .map(|(_, op, _)| op)
            .collect();
        // One node: the bias folded in by tract, the ReLU fused by rnn-run's pass. A kernel
        // of one tap is a plain product, which tract's declutter writes as an einsum, left to
        // the passes for those.
        if k > 1 {
            let nodes: Vec<&String> = ops.iter().filter(|op| *op != "Source").collect();
            assert_eq!(nodes, ["ChannelsLastConv"], "{case:?}");
        }
    }
}
