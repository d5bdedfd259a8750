//! A MobileNetV3-style block stack (PP-OCR's backbone): `Conv` → `BatchNormalization` →
//! hard-swish written as `Add(3)`, `Clip(0, 6)`, `Mul`, `Div(6)`, with a dense 3×3, a
//! depthwise 3×3 and a 1×1 convolution, then a 2×2 max pooling, through `rnn_run::Model`
//! against a float64 reference computed here. The plan must have folded every batch
//! normalization into its convolution (src/passes/bn_fold.rs) and run every hard-swish as one
//! op (src/passes/hard_swish.rs); the values differ from exact ones by rounding only.

mod common;

use common::proto::{attr_float, attr_int, fixed, float_initializer, model_bytes, value_info};
use common::rng::Rng;
use rnn_run::{Model, Tensor};
use tract_onnx::pb::{tensor_proto::DataType, AttributeProto, GraphProto, NodeProto};

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.to_vec(),
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

fn floats(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n)
        .map(|_| lo + (hi - lo) * ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32))
        .collect()
}

/// One convolution layer: `cout` channels, a `k`×`k` kernel padded to keep the size, groups.
struct Layer {
    cin: usize,
    cout: usize,
    k: usize,
    group: usize,
    w: Vec<f32>,
    b: Vec<f32>,
    /// BatchNormalization's scale, bias, mean, variance.
    bn: [Vec<f32>; 4],
}

const EPS: f32 = 1e-5;

fn layers(rng: &mut Rng) -> Vec<Layer> {
    [(4, 8, 3, 1), (8, 8, 3, 8), (8, 16, 1, 1)]
        .into_iter()
        .map(|(cin, cout, k, group)| Layer {
            cin,
            cout,
            k,
            group,
            w: floats(rng, cout * cin / group * k * k, -0.6, 0.6),
            b: floats(rng, cout, -0.5, 0.5),
            bn: [
                floats(rng, cout, 0.5, 2.0),
                floats(rng, cout, -1.0, 1.0),
                floats(rng, cout, -0.5, 0.5),
                floats(rng, cout, 0.2, 3.0),
            ],
        })
        .collect()
}

fn graph(layers: &[Layer], h: usize, w: usize) -> Vec<u8> {
    let (mut nodes, mut init) = (vec![], vec![]);
    init.push(float_initializer("three", &[], vec![3.0]));
    init.push(float_initializer("zero", &[], vec![0.0]));
    init.push(float_initializer("six", &[], vec![6.0]));
    let mut x = "x".to_string();
    for (j, l) in layers.iter().enumerate() {
        let n = |s: &str| format!("{s}{j}");
        let wshape = [
            l.cout as i64,
            (l.cin / l.group) as i64,
            l.k as i64,
            l.k as i64,
        ];
        init.push(float_initializer(&n("w"), &wshape, l.w.clone()));
        init.push(float_initializer(&n("b"), &[l.cout as i64], l.b.clone()));
        for (name, v) in ["gamma", "beta", "mean", "var"].iter().zip(&l.bn) {
            init.push(float_initializer(&n(name), &[l.cout as i64], v.clone()));
        }
        let p = (l.k / 2) as i64;
        nodes.push(node(
            "Conv",
            &[&x, &n("w"), &n("b")],
            &n("conv"),
            vec![
                attr_ints("kernel_shape", &[l.k as i64, l.k as i64]),
                attr_ints("pads", &[p, p, p, p]),
                attr_int("group", l.group as i64),
            ],
        ));
        nodes.push(node(
            "BatchNormalization",
            &[&n("conv"), &n("gamma"), &n("beta"), &n("mean"), &n("var")],
            &n("bn"),
            vec![attr_float("epsilon", EPS)],
        ));
        nodes.push(node("Add", &[&n("bn"), "three"], &n("plus3"), vec![]));
        nodes.push(node(
            "Clip",
            &[&n("plus3"), "zero", "six"],
            &n("clip"),
            vec![],
        ));
        nodes.push(node("Mul", &[&n("bn"), &n("clip")], &n("prod"), vec![]));
        nodes.push(node("Div", &[&n("prod"), "six"], &n("hswish"), vec![]));
        x = n("hswish");
    }
    nodes.push(node(
        "MaxPool",
        &[&x],
        "y",
        vec![
            attr_ints("kernel_shape", &[2, 2]),
            attr_ints("strides", &[2, 2]),
        ],
    ));
    let graph = GraphProto {
        name: "bn_hard_swish".into(),
        node: nodes,
        initializer: init,
        input: vec![value_info(
            "x",
            DataType::Float,
            Some(&fixed(&[1, 4, h, w])),
        )],
        output: vec![value_info("y", DataType::Float, None)],
        ..Default::default()
    };
    model_bytes(graph, 13)
}

/// The stack in f64, as the ONNX spec defines each op.
fn reference(layers: &[Layer], x: &[f32], h: usize, w: usize) -> Vec<f64> {
    let mut x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for l in layers {
        let (cig, cog, p) = (l.cin / l.group, l.cout / l.group, l.k / 2);
        let mut y = vec![0f64; l.cout * h * w];
        for o in 0..l.cout {
            let g = o / cog;
            let [gamma, beta, mean, var] = &l.bn;
            let s = gamma[o] as f64 / (var[o] as f64 + EPS as f64).sqrt();
            for r in 0..h {
                for c in 0..w {
                    let mut sum = l.b[o] as f64;
                    for i in 0..cig {
                        for dr in 0..l.k {
                            for dc in 0..l.k {
                                let (rr, cc) = (
                                    (r + dr) as isize - p as isize,
                                    (c + dc) as isize - p as isize,
                                );
                                if rr < 0 || cc < 0 || rr >= h as isize || cc >= w as isize {
                                    continue;
                                }
                                let xi = ((g * cig + i) * h + rr as usize) * w + cc as usize;
                                let wi = ((o * cig + i) * l.k + dr) * l.k + dc;
                                sum += l.w[wi] as f64 * x[xi];
                            }
                        }
                    }
                    let bn = (sum - mean[o] as f64) * s + beta[o] as f64;
                    y[(o * h + r) * w + c] = bn * (bn + 3.0).clamp(0.0, 6.0) / 6.0;
                }
            }
        }
        x = y;
    }
    let c = layers.last().unwrap().cout;
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0f64; c * oh * ow];
    for ch in 0..c {
        for r in 0..oh {
            for col in 0..ow {
                let at = |dr: usize, dc: usize| x[(ch * h + 2 * r + dr) * w + 2 * col + dc];
                out[(ch * oh + r) * ow + col] = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
            }
        }
    }
    out
}

#[test]
fn conv_batch_norm_hard_swish_stack_folds_and_matches_f64() {
    for (seed, h, w) in [(1, 8, 12), (2, 6, 34), (3, 32, 20)] {
        let rng = &mut Rng(seed);
        let layers = layers(rng);
        let model = Model::from_bytes(&graph(&layers, h, w)).unwrap();
        let xs = floats(rng, 4 * h * w, -4.0, 4.0);
        let x: Tensor = tract_onnx::prelude::tract_ndarray::ArrayD::from_shape_vec(
            vec![1, 4, h, w],
            xs.clone(),
        )
        .unwrap()
        .into();
        let got = model.run(vec![x.clone()]).unwrap().remove(0);
        assert_eq!(got.shape(), [1, 16, h / 2, w / 2]);
        let got = got.to_plain_array_view::<f32>().unwrap();
        let want = reference(&layers, &xs, h, w);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f64 - w).abs() / w.abs().max(1.0))
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "seed {seed}: difference {worst:e}");
        let ops: Vec<String> = model
            .profile(vec![x], 1)
            .unwrap()
            .into_iter()
            .map(|(_, op, _)| op)
            .collect();
        let count = |name: &str| ops.iter().filter(|o| o.contains(name)).count();
        assert_eq!(count("HardSwishChain"), 3, "{ops:?}");
        // No element-wise pass left: every batch normalization is in its convolution.
        assert_eq!(count("Bin"), 0, "{ops:?}");
    }
}
