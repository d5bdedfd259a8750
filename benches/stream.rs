//! Per-push overhead of streaming: one time step pushed through `Stream::push` on an LSTM
//! (H=256, batch 1), against the same cell's own `step` on the same weights.
//!
//! `cargo bench --bench stream`

use std::time::Instant;

use ndarray::{Array2, Array3};
use prost::Message;
use rnn_run::attrs::Activation;
use rnn_run::attrs::NodeSpec;
use rnn_run::cells::{Cell, DirWeights, Lstm};
use rnn_run::layer::{Layer, RunInputs};
use rnn_run::{Model, Tensor};
use tract_onnx::pb;

const H: usize = 256;
const I: usize = 256;

fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        float_data: data,
        ..Default::default()
    }
}

fn x_info() -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dims = [
        Value::DimParam("seq".into()),
        Value::DimValue(1),
        Value::DimValue(I as i64),
    ];
    pb::ValueInfoProto {
        name: "X".into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|v| Dimension {
                            value: Some(v),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn lstm_node() -> pb::NodeProto {
    pb::NodeProto {
        name: "lstm".into(),
        op_type: "LSTM".into(),
        input: vec!["X".into(), "W".into(), "R".into(), "B".into()],
        output: vec!["Y".into()],
        attribute: vec![pb::AttributeProto {
            name: "hidden_size".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: H as i64,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn lstm_model(w: &[f32], r: &[f32], b: &[f32]) -> Vec<u8> {
    let g = 4 * H as i64;
    let graph = pb::GraphProto {
        name: "lstm".into(),
        node: vec![lstm_node()],
        initializer: vec![
            tensor("W", &[1, g, I as i64], w.to_vec()),
            tensor("R", &[1, g, H as i64], r.to_vec()),
            tensor("B", &[1, 2 * g], b.to_vec()),
        ],
        input: vec![x_info()],
        output: vec![pb::ValueInfoProto {
            name: "Y".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 14,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Times each closure `reps` times, interleaved (one call of each per round), so every
/// variant sees the same cache state: each one's weights evict the others' between calls.
/// Returns the medians in µs.
fn interleaved_medians_us(fs: &mut [&mut dyn FnMut()], reps: usize) -> Vec<f64> {
    for _ in 0..reps / 10 {
        fs.iter_mut().for_each(|f| f());
    }
    let mut times = vec![Vec::with_capacity(reps); fs.len()];
    for _ in 0..reps {
        for (f, t) in fs.iter_mut().zip(&mut times) {
            let start = Instant::now();
            f();
            t.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(|a, b| a.total_cmp(b));
            t[reps / 2]
        })
        .collect()
}

fn main() {
    let (w, r, b) = (
        weights(4 * H * I, 1),
        weights(4 * H * H, 2),
        weights(8 * H, 3),
    );
    let model = Model::from_bytes(&lstm_model(&w, &r, &b)).expect("model loads");
    let mut stream = model.stream().expect("model streams");
    let x = Tensor::from(Array3::<f32>::from_elem((1, 1, I), 0.1));

    let dir = DirWeights::from_onnx(
        ndarray::ArrayView2::from_shape((4 * H, I), &w).unwrap(),
        ndarray::ArrayView2::from_shape((4 * H, H), &r).unwrap(),
        Some(ndarray::ArrayView1::from(&b)),
        None,
    );
    let cell = Lstm::new(
        dir,
        &[Activation::Sigmoid, Activation::Tanh, Activation::Tanh],
        None,
        false,
    );
    let mut state = cell.zero_state(1);
    let x1 = Array2::<f32>::from_elem((1, I), 0.1);

    let spec = NodeSpec::from_node(&lstm_node(), 14).expect("node parses");
    let layer = Layer::from_onnx(
        &spec,
        ndarray::ArrayView3::from_shape((1, 4 * H, I), &w)
            .unwrap()
            .into_dyn(),
        ndarray::ArrayView3::from_shape((1, 4 * H, H), &r)
            .unwrap()
            .into_dyn(),
        Some(
            ndarray::ArrayView2::from_shape((1, 8 * H), &b)
                .unwrap()
                .into_dyn(),
        ),
        None,
    )
    .expect("layer builds");
    let mut carry = vec![];
    let x3 = Array3::<f32>::from_elem((1, 1, I), 0.1).into_dyn();

    let reps = 3000;
    let t = interleaved_medians_us(
        &mut [
            &mut || cell.step(&mut state, x1.view()),
            &mut || {
                drop(
                    layer
                        .run(x3.view(), RunInputs::default(), Some(&mut carry))
                        .unwrap(),
                )
            },
            &mut || drop(model.run(vec![x.clone()]).unwrap()),
            &mut || drop(stream.push(vec![x.clone()]).unwrap()),
        ],
        reps,
    );
    let (step, layer_run, run, push) = (t[0], t[1], t[2], t[3]);
    println!("LSTM H={H} I={I} batch 1, one time step (medians of {reps}, interleaved):");
    println!("  cell.step            {step:8.2} µs   the cell's own arithmetic");
    println!("  layer.run (T=1)      {layer_run:8.2} µs   one node on arrays, state carried");
    println!("  model.run (T=1)      {run:8.2} µs   the whole graph, stateless");
    println!("  stream.push (T=1)    {push:8.2} µs");
    println!("  overhead per push    {:8.2} µs", push - step);
}
