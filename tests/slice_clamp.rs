//! `Slice` bounds outside the axis, with positive and negative steps, against the ONNX spec's
//! clamping written out here: a negative start or end has the dimension added once, then for
//! a positive step both are clamped to `[0, dim]`, for a negative step the start to
//! `[0, dim - 1]` and the end to `[-1, dim - 1]` (src/passes/slice_clamp.rs,
//! src/passes/slice_bounds.rs). Each bound, step and declared shape (fixed or symbolic) is
//! its own model. onnxruntime 1.32 agrees on every case but an end of `INT64_MAX` with a
//! negative step, which it reads as "to the start" where the spec clamps it to the last
//! entry (an empty slice); rnn-run follows the spec.

use ndarray::{Array2, Axis};
use rnn_run::{Model, Tensor, TensorExt};
use tract_onnx::pb::{self, tensor_proto::DataType};

mod common;
use common::proto::{model_bytes, value_info, Dim};

const D: usize = 5;

fn spec(x: &Array2<f32>, start: i64, end: i64, step: i64) -> Array2<f32> {
    let d = D as i64;
    let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (mut s, mut e) = (fix(start), fix(end));
    let mut rows = vec![];
    if step > 0 {
        (s, e) = (s.clamp(0, d), e.clamp(0, d));
        while s < e {
            rows.push(s as usize);
            s += step;
        }
    } else {
        (s, e) = (s.clamp(0, d - 1), e.clamp(-1, d - 1));
        while s > e {
            rows.push(s as usize);
            s += step;
        }
    }
    x.select(Axis(0), &rows)
}

fn int(name: &str, v: i64) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![1],
        data_type: DataType::Int64 as i32,
        int64_data: vec![v],
        ..Default::default()
    }
}

fn slice_model(start: i64, end: i64, step: i64, first: Dim) -> Vec<u8> {
    let node = pb::NodeProto {
        name: "slice".into(),
        op_type: "Slice".into(),
        input: ["x", "starts", "ends", "axes", "steps"]
            .map(String::from)
            .to_vec(),
        output: vec!["y".into()],
        ..Default::default()
    };
    let graph = pb::GraphProto {
        node: vec![node],
        input: vec![value_info("x", DataType::Float, Some(&[first, Dim::N(3)]))],
        output: vec![value_info("y", DataType::Float, None)],
        initializer: vec![
            int("starts", start),
            int("ends", end),
            int("axes", 0),
            int("steps", step),
        ],
        ..Default::default()
    };
    model_bytes(graph, 17)
}

#[test]
fn slices_clamp_as_the_spec_says() {
    let d = D as i64;
    let bounds = [
        i64::MIN,
        -(1 << 40),
        -(1 << 31),
        -(1 << 31) + 3,
        -1000,
        -d - 3,
        -d - 1,
        -d,
        -d + 1,
        -1,
        0,
        2,
        d - 1,
        d,
        d + 2,
        1000,
        (1 << 31) - 3,
        (1 << 31) - 1,
        1 << 40,
        i64::MAX,
    ];
    let x = Array2::from_shape_fn((D, 3), |(i, j)| (10 * i + j) as f32);
    let mut checked = 0;
    for first in [Dim::N(D as i64), Dim::S("T")] {
        for &start in &bounds {
            for &end in &bounds {
                for step in [-3, -1, 1, 2] {
                    let case = format!("{first:?} x[{start} : {end} : {step}]");
                    let model = Model::from_bytes(&slice_model(start, end, step, first))
                        .unwrap_or_else(|e| panic!("{case}: {e}"));
                    let y = model
                        .run(vec![Tensor::from(x.clone())])
                        .unwrap_or_else(|e| panic!("{case}: {e}"));
                    let got = y[0].to_array::<f32>().unwrap();
                    let want = spec(&x, start, end, step).into_dyn();
                    assert_eq!(got, want, "{case}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * 20 * 20 * 4);
}
