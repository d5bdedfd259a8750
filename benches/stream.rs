//! Per-push overhead of streaming: one time step pushed through `Stream::push` on an LSTM
//! (batch 1; H=256, and H=32 where the overhead is not lost in the noise), against a cell's
//! own `step` on the same weights, with `Layer::run` and a stateless `Model::run` between:
//! first interleaved call by call, then each in its own phase of back-to-back calls.
//!
//! `cargo bench --bench stream`

use std::time::Instant;

use ndarray::{Array2, Array3};
use rnn_run::attrs::Activation;
use rnn_run::attrs::NodeSpec;
use rnn_run::cells::{Cell, DirWeights, Lstm};
use rnn_run::layer::{Carry, Layer, RunInputs};
use rnn_run::{Model, Tensor};

#[path = "../tests/common/models.rs"]
mod models;
#[path = "../tests/common/proto.rs"]
mod proto;
use models::{lstm_node, weights};

/// One forward LSTM, X `[seq, 1, i]`, constant W, R and B.
fn lstm_model(w: &[f32], r: &[f32], b: &[f32], h: usize, i: usize) -> Vec<u8> {
    models::lstm_model(w, r, b, h, i, Some(1))
}

/// Times each closure `reps` times, interleaved (one call of each per round), so every
/// variant sees the same cache state: each one's weights evict the others' between calls.
/// Returns every round's times in µs, per closure.
fn interleaved_us(fs: &mut [&mut dyn FnMut()], reps: usize) -> Vec<Vec<f64>> {
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
}

/// Times each closure in its own phase of `reps` back-to-back calls (after a warm-up), the
/// phases taking turns for `rounds` rounds. Within a phase only that closure's weights are in
/// use, as in an application that pushes frame after frame. Returns each round's mean per
/// call in µs, per closure.
fn phased_us(fs: &mut [&mut dyn FnMut()], rounds: usize, reps: usize) -> Vec<Vec<f64>> {
    let mut means = vec![Vec::with_capacity(rounds); fs.len()];
    for _ in 0..rounds {
        for (f, m) in fs.iter_mut().zip(&mut means) {
            for _ in 0..reps / 10 {
                f();
            }
            let start = Instant::now();
            for _ in 0..reps {
                f();
            }
            m.push(start.elapsed().as_secs_f64() * 1e6 / reps as f64);
        }
    }
    means
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // H=256 is the case the overhead goal names; at H=32 the arithmetic is small enough that
    // the overhead stands out of the noise of streaming weights from L3.
    for h in [256, 32] {
        bench(h, h);
    }
}

#[allow(non_snake_case)]
fn bench(H: usize, I: usize) {
    let (w, r, b) = (
        weights(4 * H * I, 1),
        weights(4 * H * H, 2),
        weights(8 * H, 3),
    );
    let model = Model::from_bytes(&lstm_model(&w, &r, &b, H, I)).expect("model loads");
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

    let spec = NodeSpec::from_node(&lstm_node(H), 14).expect("node parses");
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
    let mut carry = Carry::default();
    let x3 = Array3::<f32>::from_elem((1, 1, I), 0.1).into_dyn();

    let reps = 3000;
    let t = interleaved_us(
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
    // The overhead is the median of each round's own difference: both calls of a round see
    // the same machine state, which the difference of two medians does not guarantee.
    let overhead = median(t[3].iter().zip(&t[0]).map(|(p, s)| p - s).collect());
    let [step, layer_run, run, push] = [0, 1, 2, 3].map(|i| median(t[i].clone()));
    println!("LSTM H={H} I={I} batch 1, one time step (medians of {reps}, interleaved):");
    println!("  cell.step            {step:8.2} µs   the cell's own arithmetic");
    println!("  layer.run (T=1)      {layer_run:8.2} µs   one node on arrays, state carried");
    println!("  model.run (T=1)      {run:8.2} µs   the whole graph, stateless");
    println!("  stream.push (T=1)    {push:8.2} µs");
    println!("  overhead per push    {overhead:8.2} µs   median of (push − step) per round");

    // Each in its own phase: the weights a phase reads are the only ones in use, as when an
    // application pushes frame after frame (interleaving makes the four copies of the weights
    // evict one another, which at H=256 costs as much as the overhead itself).
    let rounds = 15;
    let m = phased_us(
        &mut [&mut || cell.step(&mut state, x1.view()), &mut || {
            drop(stream.push(vec![x.clone()]).unwrap())
        }],
        rounds,
        reps / 3,
    );
    let overhead = median(m[1].iter().zip(&m[0]).map(|(p, s)| p - s).collect());
    let [step, push] = [0, 1].map(|i| median(m[i].clone()));
    println!(
        "  in phases of {} calls, {rounds} rounds (median of round means):",
        reps / 3
    );
    println!("  cell.step            {step:8.2} µs");
    println!("  stream.push (T=1)    {push:8.2} µs");
    println!("  overhead per push    {overhead:8.2} µs   median of (push − step) per round");
}
