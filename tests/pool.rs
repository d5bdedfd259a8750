//! Many streams, one step: each stream of a pool gets, frame after frame, what its own solo
//! stream (or, for a model carrying its state through its inputs and outputs, its own calls
//! with the state fed back) gets, whichever streams shared its steps.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::manifest::folder;
use common::random_graph::{Choices, Seeded};
use common::streaming::max_abs_diff;
use rnn_run::npy::read_npy;
use rnn_run::{Error, Model, PoolOptions, Tensor};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn random(shape: &[usize], c: &mut Seeded) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| c.small_float()).collect();
    Tensor::from_shape(shape, &data).unwrap()
}

/// Random joins, leaves and frames over a pool of `streams`, each stream's frames checked
/// against a solo stream fed the same frames. Returns the largest difference, and how many
/// frames shared a step with another.
fn pooled_equals_solo(
    model: &Model,
    start_of: impl Fn(&mut Seeded) -> Vec<Tensor>,
    frame_shape: &[usize],
    seed: u64,
) -> (f64, usize) {
    let mut c = Seeded(seed);
    let options = PoolOptions {
        max_batch: 2 + c.below(7),
        max_wait: Duration::from_micros(200 + c.below(2000) as u64),
        ..Default::default()
    };
    let pool = model.stream_pool(options, vec![]).unwrap();
    let mut solos = HashMap::new();
    let mut pending = vec![];
    let mut worst = 0.0f64;
    for _ in 0..120 {
        match c.below(10) {
            0 | 1 if solos.len() < 12 => {
                let start = start_of(&mut c);
                let id = if start.is_empty() {
                    pool.open().unwrap()
                } else {
                    pool.open_from(start.clone()).unwrap()
                };
                let solo = if start.is_empty() {
                    model.stream().unwrap()
                } else {
                    model.stream_from(start).unwrap()
                };
                solos.insert(id, solo);
            }
            2 if !solos.is_empty() => {
                // A stream leaves once its frames are answered.
                let id = *solos.keys().nth(c.below(solos.len())).unwrap();
                for (pid, p, want) in std::mem::take(&mut pending) {
                    let got: rnn_run::Frame = rnn_run::Pending::wait(p).unwrap();
                    for (g, w) in got.outputs.iter().zip(&want) {
                        worst = worst.max(max_abs_diff(g, w));
                    }
                    let _: rnn_run::StreamId = pid;
                }
                pool.close(id).unwrap();
                solos.remove(&id);
            }
            _ if !solos.is_empty() => {
                let id = *solos.keys().nth(c.below(solos.len())).unwrap();
                let frame = vec![random(frame_shape, &mut c)];
                let want = solos.get_mut(&id).unwrap().push(frame.clone()).unwrap();
                pending.push((id, pool.push(id, frame).unwrap(), want));
            }
            _ => {}
        }
    }
    for (_, p, want) in pending {
        let got = p.wait().unwrap();
        for (g, w) in got.outputs.iter().zip(&want) {
            worst = worst.max(max_abs_diff(g, w));
        }
    }
    let stats = pool.stats();
    (worst, stats.frames - stats.steps)
}

#[test]
fn pooled_streams_equal_their_solo_streams() {
    // A GRU without initial states, and the tutorial LSTM whose streams start from their own.
    let gru = Model::load(fixture(
        "matrix/gru_l1_nobias_noinit_legacy_op17/model.onnx",
    ))
    .unwrap();
    let x = read_npy(fixture(
        "matrix/gru_l1_nobias_noinit_legacy_op17/run_input_0.npy",
    ))
    .unwrap();
    let axes = gru.time_axes().unwrap();
    let t = axes[0].unwrap();
    let mut shape = x.shape().to_vec();
    shape[t] = 1;
    shape[if t == 0 { 1 } else { 0 }] = 1;
    let lstm = Model::load(fixture("tutorial/lstm_legacy_long/model.onnx")).unwrap();
    let (mut worst, mut shared) = (0.0f64, 0);
    for seed in 0..6 {
        let (d, n) = pooled_equals_solo(&gru, |_| vec![], &shape, seed);
        let (e, m) = pooled_equals_solo(
            &lstm,
            |c| vec![random(&[2, 1, 6], c), random(&[2, 1, 6], c)],
            &[1, 1, 5],
            100 + seed,
        );
        worst = worst.max(d).max(e);
        shared += n + m;
    }
    eprintln!(
        "pooled vs solo streams: largest difference {worst:e}, {shared} frames shared a step"
    );
    assert!(
        shared > 50,
        "too few frames shared a step ({shared}) to test batching"
    );
    assert_eq!(
        worst, 0.0,
        "pooled streams must be bit-identical to solo streams"
    );
}

/// Silero VAD carries its state through `state` → `stateN`: served batched, each stream's
/// calls give what its own calls with the state fed back give (the realworld fixture's
/// inputs, several streams offset in time).
#[test]
fn silero_vad_is_served_batched() {
    let f = folder("realworld");
    let m = f
        .models()
        .into_iter()
        .find(|m| m["name"] == "silero_vad_16k_op15")
        .unwrap()
        .clone();
    let model = Model::load(f.path(&m["file"])).unwrap();
    let calls: Vec<Vec<Tensor>> = m["cases"][0]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| f.inputs(&model, &c["inputs"]))
        .collect();
    let names: Vec<&str> = model.inputs().iter().map(|i| i.name.as_str()).collect();
    let (input, state, sr) = (
        names.iter().position(|n| *n == "input").unwrap(),
        names.iter().position(|n| *n == "state").unwrap(),
        names.iter().position(|n| *n == "sr").unwrap(),
    );
    let state_n = model
        .outputs()
        .iter()
        .position(|o| o.name == "stateN")
        .unwrap();
    let options = PoolOptions {
        feedback: vec![("state".into(), "stateN".into())],
        max_batch: 8,
        max_wait: Duration::from_millis(1),
        ..Default::default()
    };
    let pool = model
        .stream_pool(options, vec![calls[0][sr].clone()])
        .unwrap();
    // Stream k starts at call k of the sequence: 5 streams, each its own history.
    let mut worst = 0.0f64;
    let streams: Vec<_> = (0..5).map(|_| pool.open().unwrap()).collect();
    let mut solo_state: Vec<Tensor> = vec![calls[0][state].clone(); streams.len()];
    for round in 0..(calls.len() - 4) {
        let mut pending = vec![];
        for (k, id) in streams.iter().enumerate() {
            let call = &calls[round + k];
            let mut solo_in = call.clone();
            solo_in[state] = solo_state[k].clone();
            let want = model.run(solo_in).unwrap();
            solo_state[k] = want[state_n].clone();
            pending.push((pool.push(*id, vec![call[input].clone()]).unwrap(), want));
        }
        for (p, want) in pending {
            let got = p.wait().unwrap();
            for (g, w) in got.outputs.iter().zip(&want) {
                worst = worst.max(max_abs_diff(g, w));
            }
        }
    }
    eprintln!("Silero VAD pooled vs its own calls: largest difference {worst:e}");
    assert!(worst <= 1e-6, "{worst:e}");
    assert!(
        pool.stats().steps < pool.stats().frames,
        "{:?}",
        pool.stats()
    );
}

/// A model whose ops mix the entries of a batch cannot be pooled: the refusal names the node.
#[test]
fn a_model_that_mixes_the_batch_is_refused() {
    let f = folder("streaming");
    let m = f
        .models()
        .into_iter()
        .find(|m| m["name"] == "lstm_layernorm_legacy")
        .unwrap()
        .clone();
    let model = Model::load(f.path(&m["file"])).unwrap();
    // Declared batch axis: the feature axis instead (a deliberate mistake): the LayerNorm
    // then normalizes over the "batch".
    let options = PoolOptions {
        batch_axes: Some(vec![Some(2)]),
        ..Default::default()
    };
    let pool = model.stream_pool(options, vec![]).unwrap();
    let id = pool.open().unwrap();
    let frame = Tensor::zero::<f32>(&[2, 1, 1]).unwrap();
    match pool.push(id, vec![frame]).unwrap().wait() {
        Err(Error::Run(m)) | Err(Error::NotStreamable(m)) => {
            assert!(
                m.contains("cannot batch streams") && m.contains("node '"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
}
