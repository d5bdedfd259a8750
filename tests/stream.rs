//! Streaming: feeding a sequence chunk by chunk gives the same outputs as one whole run, and
//! models that cannot stream are refused with the node named.

use std::path::{Path, PathBuf};

use rnn_run::npy::read_npy;
use rnn_run::{Error, Model, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn inputs(dir: &Path, prefix: &str) -> Vec<Tensor> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.npy")))
        .take_while(|p| p.exists())
        .map(|p| read_npy(&p).unwrap())
        .collect()
}

fn slice_axis(t: &Tensor, axis: usize, start: usize, end: usize) -> Tensor {
    t.slice(axis, start, end).unwrap()
}

fn concat(parts: &[Tensor], axis: usize) -> Tensor {
    Tensor::stack_tensors(axis, parts).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let a = a.cast_to::<f64>().unwrap();
    let b = b.cast_to::<f64>().unwrap();
    let a = a.to_plain_array_view::<f64>().unwrap();
    let b = b.to_plain_array_view::<f64>().unwrap();
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Runs `name`'s inputs whole and in chunks of each size; returns the largest difference.
fn chunked_equals_whole(name: &str, prefix: &str) -> f64 {
    let dir = fixture(name);
    let model = Model::load(dir.join("model.onnx")).unwrap();
    let ins = inputs(&dir, prefix);
    let whole = model.run(ins.clone()).unwrap();
    let mut stream = model.stream().unwrap_or_else(|e| panic!("{name}: {e}"));
    let seq_axes = stream.input_seq_axes().to_vec();
    let out_axes = stream.output_seq_axes().to_vec();
    let axis = seq_axes
        .iter()
        .flatten()
        .next()
        .copied()
        .expect("a sequence input");
    let (ix, _) = seq_axes
        .iter()
        .enumerate()
        .find(|(_, a)| a.is_some())
        .unwrap();
    let t_len = ins[ix].shape()[axis];
    let mut worst = 0.0f64;
    // Fixed chunk sizes, then uneven ones: the buffers a stream keeps between pushes must
    // follow a chunk that grows or shrinks.
    for schedule in [
        vec![1],
        vec![3],
        vec![7],
        vec![t_len],
        vec![1, 6, 2, 40, 1, 3],
    ] {
        let chunk = format!("{schedule:?}");
        stream.reset().unwrap();
        let mut collected: Vec<Vec<Tensor>> = vec![vec![]; whole.len()];
        let mut last = vec![];
        let mut start = 0;
        let mut sizes = schedule.iter().cycle();
        while start < t_len {
            let end = (start + sizes.next().unwrap()).min(t_len);
            let chunk_inputs = ins
                .iter()
                .zip(&seq_axes)
                .map(|(t, a)| match a {
                    Some(a) => slice_axis(t, *a, start, end),
                    None => t.clone(),
                })
                .collect();
            last = stream
                .push(chunk_inputs)
                .unwrap_or_else(|e| panic!("{name} chunk {chunk}: {e}"));
            for (k, o) in last.iter().enumerate() {
                collected[k].push(o.clone());
            }
            start = end;
        }
        for (k, want) in whole.iter().enumerate() {
            let got = match out_axes[k] {
                Some(a) => concat(&collected[k], a),
                None => last[k].clone(),
            };
            let d = max_abs_diff(&got, want);
            assert!(
                d <= 1e-6,
                "{name}: chunk {chunk}, output {k}: differs by {d:e}"
            );
            worst = worst.max(d);
        }
    }
    worst
}

#[test]
fn chunked_runs_equal_whole_runs() {
    let cases = [
        ("tutorial/lstm_legacy_long", "input"),
        ("tutorial/gru_legacy_long", "input"),
        ("tutorial/rnn_legacy_long", "input"),
        ("tutorial/lstm_dynamo_long", "input"),
        ("tutorial/gru_dynamo_long", "input"),
        ("matrix/lstm_l3_bf_legacy_op17", "run_input"),
        ("matrix/gru_l3_bf_dynamo", "run_input"),
        ("matrix/rnn_tanh_l3_bf_legacy_op17", "run_input"),
        ("matrix/lstm_l1_nobias_noinit_legacy_op17", "run_input"),
        ("matrix/lstm_on_gru_legacy_op17", "run_input"),
        ("matrix/embed_lstm_linear_legacy_op17", "run_input"),
        ("matrix/lstm_l2_static_legacy_op14", "input"),
        // dynamo without dynamic_shapes: the length is written into Reshape targets.
        ("matrix/lstm_l2_static_dynamo", "input"),
        ("matrix/gru_l2_static_dynamo", "input"),
        ("matrix/gru_long_h192_dynamo", "input"),
    ];
    let mut worst = 0.0f64;
    for (name, prefix) in cases {
        worst = worst.max(chunked_equals_whole(name, prefix));
    }
    eprintln!(
        "{} models, chunks 1/3/7/full/uneven: largest difference {worst:e}",
        cases.len()
    );
}

fn refusal(name: &str) -> String {
    let model = Model::load(fixture(name).join("model.onnx")).unwrap();
    match model.stream() {
        Err(Error::NotStreamable(m)) => m,
        Err(e) => panic!("{name}: wrong error kind: {e}"),
        Ok(_) => panic!("{name}: streaming should be refused"),
    }
}

#[test]
fn bidirectional_models_are_refused_naming_the_node() {
    let m = refusal("matrix/lstm_l1_bi_legacy_op17");
    assert!(
        m.contains("LSTM") && m.contains("bidirectional") && m.contains("node '"),
        "{m}"
    );
}

#[test]
fn sequence_lens_models_are_refused() {
    let m = refusal("matrix/gru_packed_legacy_op17");
    assert!(m.contains("sequence_lens"), "{m}");
}

#[test]
fn unrolled_models_are_refused() {
    let m = refusal("tutorial/rnn_dynamo");
    assert!(m.contains("no RNN, LSTM or GRU node"), "{m}");
}

#[test]
fn reset_starts_over() {
    let dir = fixture("tutorial/lstm_legacy_long");
    let model = Model::load(dir.join("model.onnx")).unwrap();
    let ins = inputs(&dir, "input");
    let mut stream = model.stream().unwrap();
    let first = stream.push(ins.clone()).unwrap();
    let second = stream.push(ins.clone()).unwrap();
    assert!(
        max_abs_diff(&first[0], &second[0]) > 1e-3,
        "state must carry between pushes"
    );
    stream.reset().unwrap();
    let again = stream.push(ins).unwrap();
    assert_eq!(max_abs_diff(&first[0], &again[0]), 0.0);
}
