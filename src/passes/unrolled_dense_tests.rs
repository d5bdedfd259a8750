//! Which chains [`rejoin`] rewrites and which it leaves (the numbers are checked end to end in
//! tests/unrolled_dense.rs).

use super::*;
use tract_onnx::pb::{
    tensor_shape_proto::{dimension::Value, Dimension},
    type_proto, AttributeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: DataType::Int64 as i32,
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        float_data: vec![0.5; dims.iter().product::<i64>() as usize],
        ..Default::default()
    }
}

fn input(name: &str, rank: usize) -> ValueInfoProto {
    let dim = Dimension {
        value: Some(Value::DimValue(2)),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto {
                    dim: vec![dim; rank],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What the chains of a test graph look like; `Default` is the rewritten case.
#[derive(Clone)]
struct Spec {
    steps: usize,
    axis: i64,
    rank: usize,
    bias: bool,
    /// Step `k` slices `starts[k]` (default: `k`).
    starts: Option<Vec<i64>>,
    /// Step 1 reads another weight.
    other_weight: bool,
    /// Step 0's product is also a graph output.
    leak: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            steps: 3,
            axis: 0,
            rank: 3,
            bias: true,
            starts: None,
            other_weight: false,
            leak: false,
        }
    }
}

fn model(spec: &Spec) -> ModelProto {
    let mut g = GraphProto {
        name: "g".into(),
        input: vec![input("x", spec.rank)],
        output: vec![input("y", spec.rank)],
        initializer: vec![
            floats("W", &[2, 4]),
            floats("W2", &[2, 4]),
            floats("b", &[4]),
            ints("axes", &[spec.axis]),
        ],
        ..Default::default()
    };
    let mut outs = vec![];
    for k in 0..spec.steps {
        let t = spec.starts.as_ref().map_or(k as i64, |s| s[k]);
        g.initializer.push(ints(&format!("s{k}"), &[t]));
        g.initializer.push(ints(&format!("e{k}"), &[t + 1]));
        let w = if spec.other_weight && k == 1 {
            "W2"
        } else {
            "W"
        };
        g.node.extend([
            node(
                "Slice",
                &format!("slice{k}"),
                &["x", &format!("s{k}"), &format!("e{k}"), "axes"],
                &format!("sl{k}"),
            ),
            node(
                "Squeeze",
                &format!("squeeze{k}"),
                &[&format!("sl{k}"), "axes"],
                &format!("sq{k}"),
            ),
            node(
                "MatMul",
                &format!("matmul{k}"),
                &[&format!("sq{k}"), w],
                &format!("m{k}"),
            ),
        ]);
        let y = if spec.bias {
            g.node.push(node(
                "Add",
                &format!("add{k}"),
                &["b", &format!("m{k}")],
                &format!("a{k}"),
            ));
            format!("a{k}")
        } else {
            format!("m{k}")
        };
        g.node.push(node(
            "Unsqueeze",
            &format!("unsqueeze{k}"),
            &[&y, "axes"],
            &format!("u{k}"),
        ));
        outs.push(format!("u{k}"));
    }
    let refs: Vec<&str> = outs.iter().map(|s| s.as_str()).collect();
    let mut c = node("Concat", "stack", &refs, "y");
    c.attribute.push(AttributeProto {
        name: "axis".into(),
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Int as i32,
        i: spec.axis,
        ..Default::default()
    });
    g.node.push(c);
    if spec.leak {
        g.output.push(input("m0", spec.rank - 1));
    }
    ModelProto {
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(g),
        ..Default::default()
    }
}

fn ops_after(spec: &Spec) -> Vec<String> {
    let mut m = model(spec);
    rejoin(&mut m);
    m.graph
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type.clone())
        .collect()
}

#[test]
fn a_dense_layer_unrolled_over_an_axis_becomes_one_product() {
    let mut m = model(&Spec::default());
    rejoin(&mut m);
    let g = m.graph.unwrap();
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Slice", "Reshape", "MatMul", "Add"]);
    let last = g.node.last().unwrap();
    assert_eq!(
        (last.name.as_str(), last.output[0].as_str()),
        ("stack", "y")
    );
    let shape = g
        .initializer
        .iter()
        .find(|t| t.name == "stack.rejoined.shape")
        .unwrap();
    assert_eq!(shape.int64_data, [3, 0, 0]);
    // Along a middle axis, with no bias.
    let spec = Spec {
        axis: 1,
        bias: false,
        ..Spec::default()
    };
    assert_eq!(ops_after(&spec), ["Slice", "Reshape", "MatMul"]);
    // Steps need not start at 0.
    let spec = Spec {
        starts: Some(vec![2, 3, 4]),
        ..Spec::default()
    };
    assert_eq!(ops_after(&spec).len(), 4);
}

#[test]
fn chains_that_are_not_one_layer_over_consecutive_steps_are_left() {
    let unchanged = |spec: Spec| {
        let ops = ops_after(&spec);
        assert_eq!(ops.len(), model(&spec).graph.unwrap().node.len(), "{ops:?}");
    };
    // A step skipped, or out of order.
    unchanged(Spec {
        starts: Some(vec![0, 2, 3]),
        ..Spec::default()
    });
    unchanged(Spec {
        starts: Some(vec![1, 0, 2]),
        ..Spec::default()
    });
    // Another weight in one step.
    unchanged(Spec {
        other_weight: true,
        ..Spec::default()
    });
    // A value inside the chain that is also a graph output.
    unchanged(Spec {
        leak: true,
        ..Spec::default()
    });
    // The product's inner axis (the last), where one product would contract another axis.
    unchanged(Spec {
        axis: 2,
        ..Spec::default()
    });
    // One step only: nothing to gain.
    unchanged(Spec {
        steps: 1,
        ..Spec::default()
    });
}

#[test]
fn the_input_rank_must_be_known() {
    let mut m = model(&Spec::default());
    let g = m.graph.as_mut().unwrap();
    g.input[0].r#type = None;
    let before = g.node.len();
    rejoin(&mut m);
    assert_eq!(m.graph.unwrap().node.len(), before);
}
