//! One client must not break a pool: frames of other shapes, bad frames and closed streams
//! among good ones. Every good frame gets what its own stream run alone gets; every bad one is
//! refused for its stream alone, in words a user can act on.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::manifest::folder;
use common::random_graph::{Choices, Seeded};
use common::streaming::max_abs_diff;
use rnn_run::{Error, Model, Pending, PoolOptions, StreamId, Tensor};

fn random(shape: &[usize], c: &mut Seeded) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| c.small_float()).collect();
    Tensor::from_shape(shape, &data).unwrap()
}

/// Silero VAD (state → stateN fed back) and its 16 kHz sample rate.
fn silero() -> (Model, Tensor) {
    let f = folder("realworld");
    let m = f
        .models()
        .into_iter()
        .find(|m| m["name"] == "silero_vad_16k_op15")
        .unwrap()
        .clone();
    let model = Model::load(f.path(&m["file"])).unwrap();
    (model, Tensor::from(16000i64))
}

fn silero_pool(model: &Model, sr: &Tensor, max_batch: usize) -> rnn_run::StreamPool {
    let options = PoolOptions {
        feedback: vec![("state".into(), "stateN".into())],
        max_batch,
        max_wait: Duration::from_micros(500),
        ..Default::default()
    };
    model.stream_pool(options, vec![sr.clone()]).unwrap()
}

/// What a stream of Silero gets when its calls run alone: (outputs, next state), or the error.
fn silero_solo(model: &Model, sr: &Tensor, state: &Tensor, frame: &Tensor) -> Option<Vec<Tensor>> {
    match model.run(vec![frame.clone(), state.clone(), sr.clone()]) {
        Ok(o) => Some(o),
        Err(e) => {
            eprintln!("alone, {:?} fails: {e}", frame.shape());
            None
        }
    }
}

/// The case: a `[1, 512]` frame, then a `[1, 576]` one (64 samples of context + 512),
/// then `[1, 512]` again on a new stream. Each runs; each equals its own call.
#[test]
fn a_frame_of_another_length_gets_its_own_step() {
    let (model, sr) = silero();
    let pool = silero_pool(&model, &sr, 8);
    let mut c = Seeded(7);
    let zero = Tensor::zero::<f32>(&[2, 1, 128]).unwrap();
    for len in [512, 576, 512, 576, 256, 512] {
        let id = pool.open().unwrap();
        let frame = random(&[1, len], &mut c);
        let want = silero_solo(&model, &sr, &zero, &frame).unwrap();
        let got = pool.push(id, vec![frame]).unwrap().wait().unwrap();
        for (g, w) in got.outputs.iter().zip(&want) {
            assert!(max_abs_diff(g, w) <= 1e-6, "length {len}");
        }
    }
    // A length the model cannot take (1024 samples: Silero's own call refuses it too) is
    // refused for its stream alone, saying which shapes the pool runs; the pool goes on.
    let bad = pool.open().unwrap();
    let frame = random(&[1, 1024], &mut c);
    assert!(silero_solo(&model, &sr, &zero, &frame).is_none());
    let e = pool.push(bad, vec![frame]).unwrap().wait().unwrap_err();
    let text = e.to_string();
    eprintln!("{text}");
    assert!(
        text.contains("[1, 1024]") && text.contains("[1, 512]") && text.contains("[1, 576]"),
        "{text}"
    );
    let frame = random(&[1, 576], &mut c);
    let want = silero_solo(&model, &sr, &zero, &frame).unwrap();
    let got = pool.push(bad, vec![frame]).unwrap().wait().unwrap();
    assert!(max_abs_diff(&got.outputs[0], &want[0]) <= 1e-6);
}

/// Random opens, closes and frames of random lengths (some too short to run, some of the
/// wrong rank, batch or type) over one Silero pool, checked frame by frame against each
/// stream's own calls with its state fed back.
#[test]
fn silero_pool_survives_random_frames_bad_frames_and_closed_streams() {
    let (model, sr) = silero();
    let zero = Tensor::zero::<f32>(&[2, 1, 128]).unwrap();
    let (mut worst, mut good, mut refused, mut shared_steps) = (0.0f64, 0, 0, 0);
    for seed in 0..3u64 {
        let mut c = Seeded(1000 + seed);
        let pool = silero_pool(&model, &sr, 2 + c.below(6));
        // Each open stream: its state as its own calls leave it.
        let mut streams: HashMap<StreamId, Tensor> = HashMap::new();
        let mut closed: Vec<StreamId> = vec![];
        for _round in 0..30 {
            match c.below(8) {
                0 if streams.len() < 6 => {
                    streams.insert(pool.open().unwrap(), zero.clone());
                }
                1 if !streams.is_empty() => {
                    let id = *streams.keys().nth(c.below(streams.len())).unwrap();
                    pool.close(id).unwrap();
                    streams.remove(&id);
                    closed.push(id);
                }
                2 if !closed.is_empty() => {
                    let id = closed[c.below(closed.len())];
                    let e = pool.push(id, vec![random(&[1, 512], &mut c)]).unwrap_err();
                    let text = e.to_string();
                    assert!(
                        text.contains("not open") && !text.contains("StreamId"),
                        "{text}"
                    );
                    refused += 1;
                }
                _ => {}
            }
            // A frame from every open stream, each of its own kind, all pushed before any
            // answer is read so that they share steps.
            let mut pending: Vec<(StreamId, Pending, Option<Vec<Tensor>>, Tensor)> = vec![];
            let ids: Vec<StreamId> = streams.keys().copied().collect();
            for id in ids {
                let frame = match c.below(10) {
                    0 => Tensor::zero::<f32>(&[512]).unwrap(),    // wrong rank
                    1 => Tensor::zero::<f32>(&[2, 512]).unwrap(), // a batch of 2
                    2 => Tensor::zero::<i64>(&[1, 512]).unwrap(), // wrong type
                    3 => random(&[1, [1, 7, 31][c.below(3)]], &mut c), // too short to run?
                    _ => random(&[1, [512, 576, 1024, 256][c.below(4)]], &mut c),
                };
                let want = silero_solo(&model, &sr, &streams[&id], &frame);
                match pool.push(id, vec![frame.clone()]) {
                    Ok(p) => pending.push((id, p, want, frame)),
                    Err(e) => {
                        assert!(want.is_none(), "refused at push, but runs alone: {e}");
                        refused += 1;
                    }
                }
            }
            for (id, p, want, frame) in pending {
                match (p.wait(), want) {
                    (Ok(got), Some(want)) => {
                        for (g, w) in got.outputs.iter().zip(&want) {
                            worst = worst.max(max_abs_diff(g, w));
                        }
                        if got.batch > 1 {
                            shared_steps += 1;
                        }
                        streams.insert(id, want[1].clone());
                        good += 1;
                    }
                    (Err(e), None) => {
                        let text = e.to_string();
                        assert!(
                            text.contains(&format!("{:?}", frame.shape()).replace(' ', ""))
                                || text.contains("[1, ")
                                || text.contains("input"),
                            "{text}"
                        );
                        refused += 1;
                    }
                    (Ok(_), None) => panic!(
                        "a frame of shape {:?} ran pooled, but not alone",
                        frame.shape()
                    ),
                    (Err(e), Some(_)) => panic!(
                        "a frame of shape {:?} failed pooled, but runs alone: {e}",
                        frame.shape()
                    ),
                }
            }
        }
    }
    eprintln!(
        "Silero pool fuzz: {good} good frames (largest difference {worst:e}, {shared_steps} in \
         shared steps), {refused} refused"
    );
    assert!(worst <= 1e-6, "{worst:e}");
    assert!(good > 50 && refused > 10 && shared_steps > 10);
}

/// A streaming model's pool: chunks of random lengths, frames of another feature size or
/// batch, pushes to closed streams; every good frame equals its solo stream's.
#[test]
fn stream_pool_survives_random_chunks_bad_frames_and_closed_streams() {
    let model = Model::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/matrix/gru_l1_nobias_noinit_legacy_op17/model.onnx"),
    )
    .unwrap();
    let t = model.time_axes().unwrap()[0].unwrap();
    let features = match &model.inputs()[0].shape[2] {
        rnn_run::Dim::Fixed(n) => *n,
        d => panic!("{d:?}"),
    };
    let shape = |steps: usize, batch: usize, features: usize| -> Vec<usize> {
        let mut s = vec![batch; 3];
        s[t] = steps;
        s[1 - t] = batch;
        s[2] = features;
        s
    };
    let (mut worst, mut good, mut refused) = (0.0f64, 0, 0);
    for seed in 0..4u64 {
        let mut c = Seeded(500 + seed);
        let options = PoolOptions {
            max_batch: 2 + c.below(5),
            max_wait: Duration::from_micros(300),
            ..Default::default()
        };
        let pool = model.stream_pool(options, vec![]).unwrap();
        let mut solos: HashMap<StreamId, rnn_run::Stream> = HashMap::new();
        let mut closed = vec![];
        for _ in 0..25 {
            match c.below(6) {
                0 if solos.len() < 6 => {
                    solos.insert(pool.open().unwrap(), model.stream().unwrap());
                }
                1 if !solos.is_empty() => {
                    let id = *solos.keys().nth(c.below(solos.len())).unwrap();
                    pool.close(id).unwrap();
                    solos.remove(&id);
                    closed.push(id);
                }
                2 if !closed.is_empty() => {
                    let id = closed[c.below(closed.len())];
                    let e = pool
                        .push(id, vec![random(&shape(1, 1, features), &mut c)])
                        .unwrap_err();
                    assert!(e.to_string().contains("not open"), "{e}");
                    refused += 1;
                }
                _ => {}
            }
            let mut pending = vec![];
            let ids: Vec<StreamId> = solos.keys().copied().collect();
            for id in ids {
                let frame = match c.below(8) {
                    0 => random(&shape(1, 1, features + 1), &mut c),
                    1 => random(&shape(2, 2, features), &mut c),
                    2 => Tensor::zero::<f32>(&[features]).unwrap(),
                    _ => random(&shape(1 + c.below(4), 1, features), &mut c),
                };
                if frame.rank() == 3 && frame.shape()[1 - t] != 1 {
                    // A frame of a pool holds one stream's (batch 1).
                    let e = pool.push(id, vec![frame]).unwrap_err().to_string();
                    assert!(e.contains("input '") && e.contains("found shape"), "{e}");
                    refused += 1;
                    continue;
                }
                let want = solos.get_mut(&id).unwrap().push(vec![frame.clone()]);
                match (pool.push(id, vec![frame.clone()]), want) {
                    (Ok(p), Ok(want)) => pending.push((p, want)),
                    (Err(e), Err(_)) => {
                        assert!(e.to_string().contains("input '"), "{e}");
                        refused += 1;
                    }
                    (Ok(_), Err(e)) => panic!("{:?} pushed, but refused alone: {e}", frame.shape()),
                    (Err(e), Ok(_)) => panic!("{:?} refused ({e}), but runs alone", frame.shape()),
                }
            }
            for (p, want) in pending {
                let got = p.wait().unwrap();
                for (g, w) in got.outputs.iter().zip(&want) {
                    worst = worst.max(max_abs_diff(g, w));
                }
                good += 1;
            }
        }
    }
    eprintln!(
        "stream pool fuzz: {good} good frames (largest difference {worst:e}), {refused} refused"
    );
    assert_eq!(worst, 0.0);
    assert!(good > 40 && refused > 10);
}

/// Refusals name what is wrong in the pool's words: a state pushed as a frame says the pool
/// carries it; a closed stream is not an input.
#[test]
fn pool_refusals_speak_of_frames_and_streams() {
    let (model, sr) = silero();
    let pool = silero_pool(&model, &sr, 4);
    let id = pool.open().unwrap();
    let state = Tensor::zero::<f32>(&[2, 1, 128]).unwrap();
    let e = pool
        .push(id, vec![Tensor::zero::<f32>(&[1, 576]).unwrap(), state])
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("a frame of this pool holds 1 tensor (input), found 2")
            && text.contains("'state'")
            && !text.contains("''"),
        "{text}"
    );
    pool.close(id).unwrap();
    let e = pool
        .push(id, vec![Tensor::zero::<f32>(&[1, 576]).unwrap()])
        .unwrap_err();
    assert!(matches!(e, Error::Run(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with("stream ") && text.contains("not open"),
        "{text}"
    );
    let e = pool.close(id).unwrap_err().to_string();
    assert!(!e.contains("StreamId") && e.contains("not open"), "{e}");
}
