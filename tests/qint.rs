//! rnn-run's `ConvInteger` and `MatMulInteger` (`src/qint`, their epilogue folded by
//! `src/passes/qfuse.rs`) against plain tract-onnx's, in graphs as onnxruntime's
//! `quantize_dynamic` writes them (`DynamicQuantizeLinear`, the integer op, an int32 bias `Add`,
//! `Cast`, `Mul` by the scales, a float bias `Add` after a product), with the integer output
//! itself a graph output, and with the weights fed as a graph input (left to tract's op).
//! Integer sums are exact and the float operations the same, so the outputs are equal bit for
//! bit.

mod common;

use common::proto::{attr_int, fixed, float_initializer, model_bytes, value_info};
use common::rng::Rng;
use rnn_run::{Model, Tensor};
use tract_onnx::pb::{tensor_proto::DataType, AttributeProto, GraphProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;

fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.iter().map(|&i| i as i64).collect(),
        ..Default::default()
    }
}

fn u8_initializer(name: &str, dims: &[usize], data: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Uint8 as i32,
        raw_data: data,
        ..Default::default()
    }
}

fn i32_initializer(name: &str, dims: &[usize], data: Vec<i32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Int32 as i32,
        int32_data: data,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: format!("{op}_{}", outputs[0]),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

fn floats(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 22) as f32 - 1.5)
        .collect()
}

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// How the integer op's output leaves the graph.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tail {
    /// The whole epilogue `quantize_dynamic` writes.
    Scaled,
    /// The int32 sums are the graph's output.
    Integer,
    /// The weights are a graph input: tract's op runs.
    WeightsAsInput,
}

struct Graph {
    bytes: Vec<u8>,
    inputs: Vec<Tensor>,
    description: String,
}

fn input_fact(t: &Tensor) -> InferenceFact {
    t.datum_type().fact(t.shape()).into()
}

/// A quantized convolution: x → DynamicQuantizeLinear → ConvInteger → tail.
fn conv_graph(rng: &mut Rng, tail: Tail) -> Graph {
    let group = [1, 1, 2][rng.range(0, 2)];
    let (cin, cout) = (rng.range(1, 4) * group, rng.range(1, 5) * group);
    let k = [rng.range(1, 3), rng.range(1, 3)];
    let strides = [rng.range(1, 2), rng.range(1, 2)];
    let pads: Vec<usize> = (0..4).map(|_| rng.range(0, 1)).collect();
    let hw = [rng.range(3, 9), rng.range(3, 12)];
    let xshape = [rng.range(1, 2), cin, hw[0], hw[1]];
    let wshape = [cout, cin / group, k[0], k[1]];
    let w = bytes(rng, wshape.iter().product());
    let w_zp = rng.next_u64() as u8;
    let x = floats(rng, xshape.iter().product());
    let mut initializer = vec![u8_initializer("w_zp", &[], vec![w_zp])];
    let mut inputs = vec![value_info("x", DataType::Float, Some(&fixed(&xshape)))];
    let mut feeds = vec![Tensor::from_shape(&xshape, &x).unwrap()];
    if tail == Tail::WeightsAsInput {
        inputs.push(value_info("w", DataType::Uint8, Some(&fixed(&wshape))));
        feeds.push(Tensor::from_shape(&wshape, &w).unwrap());
    } else {
        initializer.push(u8_initializer("w", &wshape, w));
    }
    let mut nodes = vec![
        node("DynamicQuantizeLinear", &["x"], &["xq", "xs", "xz"], vec![]),
        node(
            "ConvInteger",
            &["xq", "w", "xz", "w_zp"],
            &["acc"],
            vec![
                attr_ints("kernel_shape", &k),
                attr_ints("strides", &strides),
                attr_ints("pads", &pads),
                attr_int("group", group as i64),
            ],
        ),
    ];
    let output = if tail == Tail::Integer {
        value_info("acc", DataType::Int32, None)
    } else {
        let bias: Vec<i32> = (0..cout)
            .map(|_| (rng.next_u64() % 20001) as i32 - 10000)
            .collect();
        initializer.push(i32_initializer("bias", &[1, cout, 1, 1], bias));
        initializer.push(float_initializer("w_scale", &[], vec![0.0123]));
        nodes.extend([
            node("Add", &["acc", "bias"], &["biased"], vec![]),
            node("Cast", &["biased"], &["f"], vec![attr_int("to", 1)]),
            node("Mul", &["xs", "w_scale"], &["scale"], vec![]),
            node("Mul", &["f", "scale"], &["y"], vec![]),
        ]);
        value_info("y", DataType::Float, None)
    };
    let graph = GraphProto {
        name: "qconv".into(),
        node: nodes,
        initializer,
        input: inputs,
        output: vec![output],
        ..Default::default()
    };
    Graph {
        bytes: model_bytes(graph, 13),
        inputs: feeds,
        description: format!(
            "conv x {xshape:?} w {wshape:?} zp {w_zp} strides {strides:?} pads {pads:?} \
             group {group} {tail:?}"
        ),
    }
}

/// A quantized product: a → DynamicQuantizeLinear → MatMulInteger → tail.
fn matmul_graph(rng: &mut Rng, tail: Tail) -> Graph {
    let (m, k, n) = (rng.range(1, 13), rng.range(1, 80), rng.range(1, 150));
    let b = bytes(rng, k * n);
    let b_zp = rng.next_u64() as u8;
    let a = floats(rng, m * k);
    let mut initializer = vec![u8_initializer("b_zp", &[], vec![b_zp])];
    let mut inputs = vec![value_info("a", DataType::Float, Some(&fixed(&[m, k])))];
    let mut feeds = vec![Tensor::from_shape(&[m, k], &a).unwrap()];
    if tail == Tail::WeightsAsInput {
        inputs.push(value_info("b", DataType::Uint8, Some(&fixed(&[k, n]))));
        feeds.push(Tensor::from_shape(&[k, n], &b).unwrap());
    } else {
        initializer.push(u8_initializer("b", &[k, n], b));
    }
    let mut nodes = vec![
        node("DynamicQuantizeLinear", &["a"], &["aq", "as", "az"], vec![]),
        node(
            "MatMulInteger",
            &["aq", "b", "az", "b_zp"],
            &["acc"],
            vec![],
        ),
    ];
    let output = if tail == Tail::Integer {
        value_info("acc", DataType::Int32, None)
    } else {
        initializer.push(float_initializer("b_scale", &[], vec![0.0311]));
        initializer.push(float_initializer("bias", &[n as i64], floats(rng, n)));
        nodes.extend([
            node("Cast", &["acc"], &["f"], vec![attr_int("to", 1)]),
            node("Mul", &["as", "b_scale"], &["scale"], vec![]),
            node("Mul", &["f", "scale"], &["scaled"], vec![]),
            node("Add", &["scaled", "bias"], &["y"], vec![]),
        ]);
        value_info("y", DataType::Float, None)
    };
    let graph = GraphProto {
        name: "qmatmul".into(),
        node: nodes,
        initializer,
        input: inputs,
        output: vec![output],
        ..Default::default()
    };
    Graph {
        bytes: model_bytes(graph, 13),
        inputs: feeds,
        description: format!("matmul [{m}, {k}]×[{k}, {n}] zp {b_zp} {tail:?}"),
    }
}

/// The graph through plain tract-onnx.
fn tract_run(g: &Graph) -> Tensor {
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut &g.bytes[..])
        .unwrap();
    for (ix, t) in g.inputs.iter().enumerate() {
        model = model.with_input_fact(ix, input_fact(t)).unwrap();
    }
    let plan = model.into_optimized().unwrap().into_runnable().unwrap();
    let inputs = g.inputs.iter().map(|t| t.clone().into_tvalue()).collect();
    plan.run(inputs).unwrap().remove(0).into_tensor()
}

/// Runs `g` both ways: the same bits, and rnn-run's op in the plan exactly when expected.
fn check(g: &Graph, op: &str, ours: bool) {
    let model = Model::from_bytes(&g.bytes).unwrap();
    let got = model.run(g.inputs.clone()).unwrap().remove(0);
    let want = tract_run(g);
    assert_eq!(got.datum_type(), want.datum_type(), "{}", g.description);
    assert_eq!(got.shape(), want.shape(), "{}", g.description);
    let bits = |t: &Tensor| t.cast_to::<i32>().map(|t| t.into_owned());
    if got.datum_type() == DatumType::F32 {
        let (a, b) = (
            got.to_plain_array_view::<f32>().unwrap(),
            want.to_plain_array_view::<f32>().unwrap(),
        );
        let same = a
            .iter()
            .zip(b.iter())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{}: {a:?} vs tract {b:?}", g.description);
    } else {
        assert_eq!(
            bits(&got).unwrap(),
            bits(&want).unwrap(),
            "{}",
            g.description
        );
    }
    let ops: Vec<String> = model
        .profile(g.inputs.clone(), 1)
        .unwrap()
        .into_iter()
        .map(|(_, op, _)| op)
        .collect();
    assert_eq!(
        ops.iter().any(|o| o == op),
        ours,
        "{}: {ops:?}",
        g.description
    );
    if ours && g.description.contains("Scaled") {
        // The epilogue is folded: no tract Cast or int32 Add remains after the op.
        assert!(
            !ops.iter().any(|o| o == "Cast"),
            "{}: {ops:?}",
            g.description
        );
    }
}

#[test]
fn quantized_convolutions_match_tract() {
    let rng = &mut Rng(0x5DEE_CE66_D1CE_5EED);
    for _ in 0..30 {
        for tail in [Tail::Scaled, Tail::Integer, Tail::WeightsAsInput] {
            let g = conv_graph(rng, tail);
            check(&g, "QConvInteger", tail != Tail::WeightsAsInput);
        }
    }
}

#[test]
fn quantized_products_match_tract() {
    let rng = &mut Rng(0x0123_4567_89AB_CDEF);
    for _ in 0..30 {
        for tail in [Tail::Scaled, Tail::Integer, Tail::WeightsAsInput] {
            let g = matmul_graph(rng, tail);
            check(&g, "QMatMulInteger", tail != Tail::WeightsAsInput);
        }
    }
}
