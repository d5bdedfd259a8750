//! rnn-run's own float convolutions (`src/conv`, chosen by `src/passes/conv.rs` when a plan is
//! made) against tract's: random single-convolution ONNX graphs (one or two spatial axes, any
//! kernel, strides, dilations, explicit or automatic padding, groups, batch sizes, a ReLU or a
//! clip after) run through the library and through plain tract-onnx, which lowers the same
//! `Conv` itself. Within 1e-5, relative where values exceed 1: the sums are the same, only
//! their order and FMA rounding differ.
//!
//! `RNN_RUN_CONV_GRAPHS=N` sets how many graphs (default 300), `RNN_RUN_CONV_SEED=S` replays
//! one (its seed is printed on failure).

mod common;

use common::proto::{
    attr_int, attr_string, fixed, float_initializer, model_bytes, value_info, Dim,
};
use common::rng::Rng;
use rnn_run::{Model, Tensor};
use tract_onnx::pb::{tensor_proto::DataType, AttributeProto, GraphProto, NodeProto};
use tract_onnx::prelude::*;

fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.iter().map(|&i| i as i64).collect(),
        ..Default::default()
    }
}

impl Rng {
    fn floats(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect()
    }
}

/// What follows the convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
enum After {
    Nothing,
    Relu,
    /// Clip(min, max), opset 11 inputs.
    Clip(f32, f32),
    /// Relu, and the convolution's own output is a graph output too.
    ReluAndRaw,
}

/// Which convolution runs a graph.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// rnn-run's `PackedConv` (a 1×1 kernel without groups too, which tract's declutter turns
    /// into an einsum and a bias `Add`, read back as a convolution), or `DepthwiseConv16`
    /// (AVX-512) or `DepthwiseConv8` (AVX2) for a depthwise one.
    Ours(&'static str),
    /// tract's: with the weights fed as an input, or depthwise without AVX-512 or AVX2.
    Tracts,
    /// Either: a 1×1 kernel from or to a single channel, which tract's einsum writes without
    /// the size-1 axis (a scaling or a sum over channels, left to tract).
    Either,
}

#[derive(Debug)]
struct Graph {
    bytes: Vec<u8>,
    input: Tensor,
    /// Weights fed as a graph input (tract's Conv keeps them).
    weights_input: Option<Tensor>,
    /// Which convolution the plan must run it on.
    expect: Expect,
    description: String,
}

/// A random `Conv`, its attributes as an exporter writes them.
fn random_graph(seed: u64) -> Graph {
    let rng = &mut Rng(seed);
    loop {
        let rank = rng.range(1, 2);
        let group = [1, 1, 1, 2, 4][rng.range(0, 4)];
        let (cig, cog) = if group > 1 && rng.range(0, 3) == 0 {
            (1, 1)
        } else {
            (rng.range(1, 9), rng.range(1, 24))
        };
        let (cin, cout) = (cig * group, cog * group);
        let kernel: Vec<usize> = (0..rank).map(|_| rng.range(1, 5)).collect();
        let strides: Vec<usize> = (0..rank).map(|_| rng.range(1, 3)).collect();
        let dilations: Vec<usize> = (0..rank).map(|_| rng.range(1, 3)).collect();
        let pads: Vec<usize> = (0..2 * rank).map(|_| rng.range(0, 3)).collect();
        let auto_pad = ["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"][rng.range(0, 4)];
        let batch = rng.range(1, 3);
        let hw: Vec<usize> = (0..rank)
            .map(|_| rng.range(1, if rank == 1 { 90 } else { 40 }))
            .collect();
        // The output size, to skip empty outputs.
        let out: Vec<isize> = (0..rank)
            .map(|d| {
                let span = (dilations[d] * (kernel[d] - 1) + 1) as isize;
                match auto_pad {
                    "NOTSET" => {
                        (hw[d] as isize + (pads[d] + pads[d + rank]) as isize - span)
                            .div_euclid(strides[d] as isize)
                            + 1
                    }
                    "VALID" => (hw[d] as isize - span).div_euclid(strides[d] as isize) + 1,
                    _ => hw[d].div_ceil(strides[d]) as isize,
                }
            })
            .collect();
        if out.iter().any(|&o| o < 1) || out.iter().product::<isize>() > 4000 {
            continue;
        }
        let after = match rng.range(0, 5) {
            0 | 1 => After::Nothing,
            2 => After::Relu,
            3 => After::Clip(-0.25, 0.5),
            _ => After::ReluAndRaw,
        };
        let has_bias = rng.range(0, 3) > 0;
        let weights_as_input = rng.range(0, 9) == 0;
        let symbolic = rng.range(0, 1) == 0;

        let mut wshape = vec![cout, cig];
        wshape.extend(&kernel);
        let w = rng.floats(wshape.iter().product());
        let b = rng.floats(cout);
        let mut xshape = vec![batch, cin];
        xshape.extend(&hw);
        let x = rng.floats(xshape.iter().product());

        let mut attrs = vec![
            attr_ints("kernel_shape", &kernel),
            attr_ints("strides", &strides),
            attr_ints("dilations", &dilations),
            attr_int("group", group as i64),
        ];
        if auto_pad == "NOTSET" {
            attrs.push(attr_ints("pads", &pads));
        } else {
            attrs.push(attr_string("auto_pad", auto_pad));
        }
        let mut conv_inputs = vec!["x".to_string(), "w".to_string()];
        if has_bias {
            conv_inputs.push("b".into());
        }
        let mut nodes = vec![NodeProto {
            op_type: "Conv".into(),
            name: "conv".into(),
            input: conv_inputs,
            output: vec!["conv_out".into()],
            attribute: attrs,
            ..Default::default()
        }];
        let mut initializer = vec![];
        if has_bias {
            initializer.push(float_initializer("b", &[cout as i64], b));
        }
        let dims: Vec<Dim> = if symbolic {
            [Dim::S("batch"), Dim::N(cin as i64)]
                .into_iter()
                .chain(hw.iter().map(|&d| Dim::N(d as i64)))
                .collect()
        } else {
            fixed(&xshape)
        };
        let mut inputs = vec![value_info("x", DataType::Float, Some(&dims))];
        let weights_input = if weights_as_input {
            inputs.push(value_info("w", DataType::Float, Some(&fixed(&wshape))));
            Some(tensor(&wshape, w))
        } else {
            initializer.push(float_initializer(
                "w",
                &wshape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
                w,
            ));
            None
        };
        let mut outputs = vec![];
        match after {
            After::Nothing => outputs.push("conv_out"),
            After::Relu | After::ReluAndRaw => {
                nodes.push(NodeProto {
                    op_type: "Relu".into(),
                    name: "relu".into(),
                    input: vec!["conv_out".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                });
                outputs.push("y");
                if after == After::ReluAndRaw {
                    outputs.push("conv_out");
                }
            }
            After::Clip(lo, hi) => {
                initializer.push(float_initializer("lo", &[], vec![lo]));
                initializer.push(float_initializer("hi", &[], vec![hi]));
                nodes.push(NodeProto {
                    op_type: "Clip".into(),
                    name: "clip".into(),
                    input: vec!["conv_out".into(), "lo".into(), "hi".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                });
                outputs.push("y");
            }
        }
        let graph = GraphProto {
            name: "conv".into(),
            node: nodes,
            initializer,
            input: inputs,
            output: outputs
                .iter()
                .map(|o| value_info(o, DataType::Float, None))
                .collect(),
            ..Default::default()
        };
        let description = format!(
            "x {xshape:?} w {wshape:?} strides {strides:?} dilations {dilations:?} pads {pads:?} \
             auto_pad {auto_pad} group {group} bias {has_bias} after {after:?} weights as input \
             {weights_as_input} symbolic batch {symbolic}"
        );
        return Graph {
            bytes: model_bytes(graph, 13),
            input: tensor(&xshape, x),
            weights_input,
            expect: if weights_as_input {
                Expect::Tracts
            } else if group > 1 && cig == 1 && cog == 1 {
                // rnn-run's depthwise kernels are AVX-512 and AVX2; tract's elsewhere.
                match depthwise_op() {
                    Some(op) => Expect::Ours(op),
                    None => Expect::Tracts,
                }
            } else if group == 1 && kernel.iter().product::<usize>() == 1 && cin.min(cout) == 1 {
                Expect::Either
            } else {
                Expect::Ours("PackedConv")
            },
            description,
        };
    }
}

/// The op rnn-run's depthwise kernel runs as here: 16 channels a vector with AVX-512F, 8
/// with AVX2+FMA, none elsewhere (or with `RNN_RUN_ISA=portable`; `avx2` skips AVX-512).
fn depthwise_op() -> Option<&'static str> {
    let wanted = std::env::var("RNN_RUN_ISA")
        .unwrap_or_default()
        .to_lowercase();
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 =
            std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl");
        let avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        match wanted.trim() {
            "portable" if avx2 => return None,
            "avx2" if avx2 => return Some("DepthwiseConv8"),
            _ if avx512 && avx2 => return Some("DepthwiseConv16"),
            _ if avx2 => return Some("DepthwiseConv8"),
            _ => {}
        }
    }
    let _ = wanted;
    None
}

fn tensor(shape: &[usize], v: Vec<f32>) -> Tensor {
    tract_ndarray::ArrayD::from_shape_vec(shape, v)
        .unwrap()
        .into()
}

/// The graph through plain tract-onnx: its own lowering of every node.
fn tract_run(bytes: &[u8], inputs: &[Tensor]) -> Vec<Tensor> {
    let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).unwrap();
    for (ix, t) in inputs.iter().enumerate() {
        model = model
            .with_input_fact(ix, f32::fact(t.shape()).into())
            .unwrap();
    }
    let plan = model.into_optimized().unwrap().into_runnable().unwrap();
    plan.run(inputs.iter().map(|t| t.clone().into_tvalue()).collect())
        .unwrap()
        .into_iter()
        .map(|v| v.into_tensor())
        .collect()
}

/// The largest difference, relative where the value exceeds 1.
fn difference(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let got = got.to_plain_array_view::<f32>().unwrap();
    let want = want.to_plain_array_view::<f32>().unwrap();
    got.iter()
        .zip(want.iter())
        .map(|(&a, &b)| ((a - b).abs() / b.abs().max(1.0)) as f64)
        .fold(0.0, f64::max)
}

/// The plan's ops, by name.
fn plan_ops(model: &Model, inputs: &[Tensor]) -> Vec<String> {
    model
        .profile(inputs.to_vec(), 1)
        .unwrap()
        .into_iter()
        .map(|(_, op, _)| op)
        .collect()
}

/// Runs one graph both ways; returns the difference and whether rnn-run's conv ran.
fn check(seed: u64) -> Result<(f64, bool), String> {
    let g = random_graph(seed);
    let fail = |what: String| format!("seed {seed}: {what}\n  {}", g.description);
    let model = Model::from_bytes(&g.bytes).map_err(|e| fail(format!("load: {e}")))?;
    let inputs: Vec<Tensor> = std::iter::once(g.input.clone())
        .chain(g.weights_input.clone())
        .collect();
    let got = model
        .run(inputs.clone())
        .map_err(|e| fail(format!("run: {e}")))?;
    let want = tract_run(&g.bytes, &inputs);
    if got.len() != want.len() {
        return Err(fail(format!("{} outputs, tract {}", got.len(), want.len())));
    }
    let mut worst = 0.0f64;
    for (got, want) in got.iter().zip(&want) {
        if got.shape() != want.shape() {
            return Err(fail(format!(
                "shape {:?}, tract {:?}",
                got.shape(),
                want.shape()
            )));
        }
        worst = worst.max(difference(got, want));
    }
    if worst > 1e-5 {
        return Err(fail(format!("difference {worst:e}")));
    }
    let ops = plan_ops(&model, &inputs);
    let ours: Vec<&String> = ops
        .iter()
        .filter(|op| *op == "PackedConv" || op.starts_with("DepthwiseConv"))
        .collect();
    let fine = match g.expect {
        Expect::Ours(op) => ours == [op],
        Expect::Tracts => ours.is_empty(),
        Expect::Either => ours.len() <= 1,
    };
    if !fine {
        return Err(fail(format!("plan {ops:?}, expected {:?}", g.expect)));
    }
    Ok((worst, !ours.is_empty()))
}

#[test]
fn random_conv_graphs_equal_tracts_lowering() {
    if let Ok(seed) = std::env::var("RNN_RUN_CONV_SEED") {
        let seed: u64 = seed.parse().unwrap();
        match check(seed) {
            Ok((d, packed)) => eprintln!("seed {seed}: difference {d:e}, ours {packed}"),
            Err(e) => panic!("{e}"),
        }
        return;
    }
    let n: u64 = std::env::var("RNN_RUN_CONV_GRAPHS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let (mut worst, mut packed, mut failures) = (0.0f64, 0, vec![]);
    for seed in 0..n {
        match check(seed) {
            Ok((d, p)) => {
                worst = worst.max(d);
                packed += p as usize;
            }
            Err(e) => failures.push(e),
        }
        if failures.len() >= 5 {
            break;
        }
    }
    eprintln!("{n} conv graphs: {packed} on ours, largest difference {worst:e}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(packed * 2 > n as usize, "only {packed} of {n} on ours");
}

/// The DeepFilterNet-class fixtures: every Conv on PackedConv with its ReLU fused, no
/// padded copy left in the plan.
#[test]
fn dfn_fixture_plans_run_packed_convs() {
    for name in ["conv_gru_dfn_legacy", "conv_gru_dfn_dynamo"] {
        let dir = std::path::Path::new("fixtures/graphs").join(name);
        let model = Model::load(dir.join("model.onnx")).unwrap();
        let mut by_name: std::collections::HashMap<String, Tensor> =
            rnn_run::npy::read_npz(dir.join("b1_t200_call0_inputs.npz"))
                .unwrap()
                .into_iter()
                .collect();
        let inputs: Vec<Tensor> = model
            .inputs()
            .iter()
            .map(|i| by_name.remove(&i.name).unwrap())
            .collect();
        let rows = model.profile(inputs, 1).unwrap();
        let count = |op: &str| rows.iter().filter(|(_, o, _)| o == op).count();
        assert_eq!(count("PackedConv"), 4, "{name}: {rows:?}");
        assert_eq!(count("Pad"), 0, "{name}: {rows:?}");
        assert_eq!(count("OptMaxByScalar"), 0, "{name}: {rows:?}");
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

/// A 1×1 convolution whose output a CRNN squeezes and transposes to `[T, N, C]`: tract folds
/// both into the einsum (`NIHW,OI->WNO`); the plan still runs it on PackedConv, its axes moved
/// after, and computes what tract does.
#[test]
fn pointwise_conv_before_squeeze_and_transpose() {
    let rng = &mut Rng(7);
    let (n, cin, cout, w) = (2, 8, 12, 30);
    let nodes = vec![
        node(
            "Conv",
            &["x", "w", "b"],
            "conv",
            vec![attr_ints("kernel_shape", &[1, 1])],
        ),
        node(
            "Squeeze",
            &["conv"],
            "squeezed",
            vec![attr_ints("axes", &[2])],
        ),
        node(
            "Transpose",
            &["squeezed"],
            "seq",
            vec![attr_ints("perm", &[2, 0, 1])],
        ),
        node("Relu", &["seq"], "y", vec![]),
    ];
    let graph = GraphProto {
        name: "pointwise".into(),
        node: nodes,
        initializer: vec![
            float_initializer("w", &[cout, cin, 1, 1], rng.floats((cout * cin) as usize)),
            float_initializer("b", &[cout], rng.floats(cout as usize)),
        ],
        input: vec![value_info(
            "x",
            DataType::Float,
            Some(&fixed(&[n, cin as usize, 1, w])),
        )],
        output: vec![value_info("y", DataType::Float, None)],
        ..Default::default()
    };
    let bytes = model_bytes(graph, 11);
    let x = tensor(&[n, cin as usize, 1, w], rng.floats(n * cin as usize * w));
    let model = Model::from_bytes(&bytes).unwrap();
    let got = model.run(vec![x.clone()]).unwrap();
    let want = tract_run(&bytes, std::slice::from_ref(&x));
    assert_eq!(got[0].shape(), [w, n, cout as usize]);
    assert!(difference(&got[0], &want[0]) <= 1e-5);
    let ops = plan_ops(&model, &[x]);
    assert!(ops.iter().any(|op| op == "PackedConv"), "{ops:?}");
    assert!(!ops.iter().any(|op| op.contains("MatMul")), "{ops:?}");
}
