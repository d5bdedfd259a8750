//! Small ONNX models built in code for the benches: a forward LSTM of a given size.
#![allow(dead_code)]

use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

use super::proto::{attr_int, float_initializer, model_bytes, value_info, Dim};

/// Deterministic weights in [-0.05, 0.05].
pub fn weights(n: usize, seed: u64) -> Vec<f32> {
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

/// The LSTM node of [`lstm_model`].
pub fn lstm_node(h: usize) -> pb::NodeProto {
    pb::NodeProto {
        name: "lstm".into(),
        op_type: "LSTM".into(),
        input: vec!["X".into(), "W".into(), "R".into(), "B".into()],
        output: vec!["Y".into()],
        attribute: vec![attr_int("hidden_size", h as i64)],
        ..Default::default()
    }
}

/// One forward LSTM with constant W, R and B, X `[seq, batch, i]` (batch fixed when given),
/// output Y only.
pub fn lstm_model(
    w: &[f32],
    r: &[f32],
    b: &[f32],
    h: usize,
    i: usize,
    batch: Option<i64>,
) -> Vec<u8> {
    let g = 4 * h as i64;
    let batch = match batch {
        Some(n) => Dim::N(n),
        None => Dim::S("batch"),
    };
    let x_dims = [Dim::S("seq"), batch, Dim::N(i as i64)];
    let graph = pb::GraphProto {
        name: "lstm".into(),
        node: vec![lstm_node(h)],
        initializer: vec![
            float_initializer("W", &[1, g, i as i64], w.to_vec()),
            float_initializer("R", &[1, g, h as i64], r.to_vec()),
            float_initializer("B", &[1, 2 * g], b.to_vec()),
        ],
        input: vec![value_info("X", DataType::Float, Some(&x_dims))],
        output: vec![value_info("Y", DataType::Float, None)],
        ..Default::default()
    };
    model_bytes(graph, 14)
}

/// The same with random weights.
pub fn lstm(h: usize, i: usize, batch: Option<i64>) -> Vec<u8> {
    let g = 4 * h;
    lstm_model(
        &weights(g * i, 1),
        &weights(g * h, 2),
        &weights(2 * g, 3),
        h,
        i,
        batch,
    )
}
