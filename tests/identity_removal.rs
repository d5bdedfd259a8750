//! Identity nodes are removed before tract reads a graph (src/passes/identity.rs): the
//! outputs, their names and their values must be those the graph defines, with Identities
//! that write graph outputs (a graph input passed straight to an output included) and
//! subgraphs that read removed names from the enclosing graph. Values are checked against
//! what the graph computes, written out by hand.

use ndarray::{arr1, arr2, Array1};
use rnn_run::{Model, Tensor, TensorExt};
use tract_onnx::pb::{self, attribute_proto::AttributeType, tensor_proto::DataType};

mod common;
use common::proto::{attr_int, float_initializer, model_bytes, value_info, Dim};

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
    pb::NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn graph_attr(name: &str, g: pb::GraphProto) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::Graph as i32,
        g: Some(g),
        ..Default::default()
    }
}

fn float3(name: &str) -> pb::ValueInfoProto {
    value_info(name, DataType::Float, Some(&[Dim::N(3)]))
}

/// Outputs `y = -x` (through Identities, the last writing `y`), `z = x` (an Identity from the
/// graph input to an output), `w = If(c, relu(b), a)` whose branches read the removed `a` and
/// `b`, and a Scan over `seq` whose body adds the removed `a` to its state.
fn model() -> Vec<u8> {
    let then_branch = pb::GraphProto {
        name: "then".into(),
        node: vec![
            node("then_identity", "Identity", &["b"], &["tb"]),
            node("then_relu", "Relu", &["tb"], &["t_out"]),
        ],
        output: vec![float3("t_out")],
        ..Default::default()
    };
    let else_branch = pb::GraphProto {
        name: "else".into(),
        node: vec![node("else_identity", "Identity", &["a"], &["e_out"])],
        output: vec![float3("e_out")],
        ..Default::default()
    };
    let body = pb::GraphProto {
        name: "body".into(),
        node: vec![
            node("body_add", "Add", &["s_in", "elem"], &["t"]),
            node("body_identity_t", "Identity", &["t"], &["t1"]),
            node("body_add_outer", "Add", &["t1", "a"], &["t2"]),
            node("body_state_out", "Identity", &["t2"], &["s_out"]),
            node("body_tmp", "Identity", &["t2"], &["tmp"]),
            node("body_scan_out", "Identity", &["tmp"], &["y_out"]),
        ],
        input: vec![float3("s_in"), float3("elem")],
        output: vec![float3("s_out"), float3("y_out")],
        value_info: vec![float3("t1"), float3("tmp")],
        ..Default::default()
    };
    let mut if_node = node("branch", "If", &["c"], &["w"]);
    if_node.attribute = vec![
        graph_attr("then_branch", then_branch),
        graph_attr("else_branch", else_branch),
    ];
    let mut scan = node("scan", "Scan", &["b", "seq"], &["s_final", "ys"]);
    scan.attribute = vec![graph_attr("body", body), attr_int("num_scan_inputs", 1)];
    let graph = pb::GraphProto {
        name: "identities".into(),
        node: vec![
            node("identity_a", "Identity", &["x"], &["a"]),
            node("identity_b", "Identity", &["a"], &["b"]),
            node("neg", "Neg", &["b"], &["n"]),
            node("identity_n", "Identity", &["n"], &["n2"]),
            node("identity_y", "Identity", &["n2"], &["y"]),
            node("identity_z", "Identity", &["x"], &["z"]),
            if_node,
            scan,
        ],
        input: vec![float3("x"), value_info("c", DataType::Bool, Some(&[]))],
        initializer: vec![float_initializer(
            "seq",
            &[2, 3],
            vec![1., 2., 3., 4., 5., 6.],
        )],
        output: vec![
            float3("y"),
            float3("z"),
            float3("w"),
            float3("s_final"),
            value_info("ys", DataType::Float, Some(&[Dim::N(2), Dim::N(3)])),
        ],
        value_info: vec![float3("a"), float3("b"), float3("n2")],
        ..Default::default()
    };
    model_bytes(graph, 17)
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_array::<f32>().unwrap().iter().copied().collect()
}

#[test]
fn removed_identities_change_no_output_nor_its_name() {
    let model = Model::from_bytes(&model()).unwrap();
    let names: Vec<&str> = model.outputs().iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["y", "z", "w", "s_final", "ys"]);
    let inputs: Vec<&str> = model.inputs().iter().map(|o| o.name.as_str()).collect();
    assert_eq!(inputs, ["x", "c"]);
    let x: Array1<f32> = arr1(&[-1.5, 0.25, 2.0]);
    let seq = arr2(&[[1f32, 2., 3.], [4., 5., 6.]]);
    for c in [true, false] {
        let cond = Tensor::from(ndarray::arr0(c));
        let out = model
            .run(vec![Tensor::from(x.clone()), cond])
            .unwrap_or_else(|e| panic!("c = {c}: {e}"));
        assert_eq!(f32s(&out[0]), x.mapv(|v| -v).to_vec(), "y = -x");
        assert_eq!(f32s(&out[1]), x.to_vec(), "z = x");
        let w = if c { x.mapv(|v| v.max(0.)) } else { x.clone() };
        assert_eq!(f32s(&out[2]), w.to_vec(), "w = If(c, relu(x), x)");
        // s1 = x + seq[0] + x, s2 = s1 + seq[1] + x
        let s1 = &x + &seq.row(0) + &x;
        let s2 = &s1 + &seq.row(1) + &x;
        assert_eq!(f32s(&out[3]), s2.to_vec(), "the Scan's final state");
        let ys: Vec<f32> = s1.iter().chain(s2.iter()).copied().collect();
        assert_eq!(f32s(&out[4]), ys, "the Scan's outputs");
    }
}

/// The whole graph an Identity chain: input to output through 1,000 Identities, and the
/// output named as the file names it.
#[test]
fn an_identity_chain_keeps_its_output_name() {
    let name = |i: usize| match i {
        0 => "x".to_string(),
        1000 => "y".to_string(),
        i => format!("t{i}"),
    };
    let nodes = (0..1000)
        .map(|i| node(&format!("id{i}"), "Identity", &[&name(i)], &[&name(i + 1)]))
        .collect();
    let graph = pb::GraphProto {
        node: nodes,
        input: vec![float3("x")],
        output: vec![float3("y")],
        ..Default::default()
    };
    let model = Model::from_bytes(&model_bytes(graph, 17)).unwrap();
    assert_eq!(model.outputs()[0].name, "y");
    let x = Tensor::from(arr1(&[1f32, -2., 3.]));
    assert_eq!(model.run(vec![x.clone()]).unwrap()[0], x);
}
