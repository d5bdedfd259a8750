//! Cell throughput: µs per time step for each op, hidden size and batch, single thread.
//!
//! `cargo bench --bench cells` runs every case; arguments filter cases by substring
//! (`cargo bench --bench cells -- lstm h256`), `accuracy` runs only the f32-vs-f64 check,
//! `kernel` times the packed matrix product alone.
//! Plain `std::time`: one warm-up run, then the median of as many runs as fit in ~0.25 s
//! (at least 3).

use std::hint::black_box;
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2, Array3};
use rnn_run::cells::{run_sequence, Cell, DirWeights, Gru, Lstm, Rnn};
use rnn_run::kernels::{gemm_packed_par, Float, Init, Packed};

/// Deterministic uniform numbers in [-1, 1) (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        v as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Lstm,
    Gru0,
    Gru1,
    Rnn,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Lstm => "lstm",
            Op::Gru0 => "gru_lbr0",
            Op::Gru1 => "gru_lbr1",
            Op::Rnn => "rnn",
        }
    }
    fn gates(self) -> usize {
        match self {
            Op::Lstm => 4,
            Op::Gru0 | Op::Gru1 => 3,
            Op::Rnn => 1,
        }
    }
}

/// ONNX-shaped weights W `[G·H, I]`, R `[G·H, H]`, B `[2·G·H]`, scaled like PyTorch's
/// default init (uniform ±1/√H), in f64 so both precisions share them.
fn onnx_weights(op: Op, h: usize, i: usize, seed: u64) -> (Array2<f64>, Array2<f64>, Array1<f64>) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let k = 1.0 / (h as f64).sqrt();
    let gh = op.gates() * h;
    let w = Array2::from_shape_fn((gh, i), |_| rng.next() * k);
    let r = Array2::from_shape_fn((gh, h), |_| rng.next() * k);
    let b = Array1::from_shape_fn(2 * gh, |_| rng.next() * k);
    (w, r, b)
}

fn build<T: Float>(op: Op, w: &Array2<f64>, r: &Array2<f64>, b: &Array1<f64>) -> Box<dyn Cell<T>> {
    let cv = |x: &f64| <T as num_traits::NumCast>::from(*x).unwrap();
    let weights = DirWeights::from_onnx(
        w.map(cv).view(),
        r.map(cv).view(),
        Some(b.map(cv).view()),
        None,
    );
    match op {
        Op::Lstm => Box::new(Lstm::new(weights, &[], None, false)),
        Op::Gru0 => Box::new(Gru::new(weights, &[], None, false)),
        Op::Gru1 => Box::new(Gru::new(weights, &[], None, true)),
        Op::Rnn => Box::new(Rnn::new(weights, &[], None)),
    }
}

fn input(t: usize, b: usize, i: usize, seed: u64) -> Array3<f64> {
    let mut rng = Rng(seed ^ 0xD1B5_4A32_D192_ED03);
    Array3::from_shape_fn((t, b, i), |_| rng.next())
}

/// Median seconds of one pass over `xs` (on `threads` threads when more than one).
fn time_seq(cell: &dyn Cell<f32>, xs: &Array3<f32>, threads: usize) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| time_seq_in_pool(cell, xs, threads))
}

fn time_seq_in_pool(cell: &dyn Cell<f32>, xs: &Array3<f32>, threads: usize) -> f64 {
    let batch = xs.dim().1;
    let run = || {
        let mut state = cell.zero_state(batch);
        let (t, b, _) = xs.dim();
        let mut y = Array3::zeros((t, b, cell.hidden_size()));
        let xs = black_box(xs.view());
        run_sequence(
            cell,
            xs,
            &mut state,
            None,
            false,
            Some(y.view_mut()),
            threads,
        );
        black_box(y);
    };
    let start = Instant::now();
    run();
    let once = start.elapsed();
    let reps = (Duration::from_millis(250).as_secs_f64() / once.as_secs_f64().max(1e-9))
        .clamp(3.0, 200.0) as usize;
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            run();
            s.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times[times.len() / 2]
}

/// Max |f32 − f64| over Y for one op at H = I = 256, T = 200, batch 1.
fn accuracy(op: Op, h: usize, t: usize) -> (f64, f64) {
    let (w, r, b) = onnx_weights(op, h, h, 7);
    let x = input(t, 1, h, 11);
    let c32 = build::<f32>(op, &w, &r, &b);
    let c64 = build::<f64>(op, &w, &r, &b);
    let y32 = c32.seq(&mut c32.zero_state(1), x.mapv(|v| v as f32).view());
    let y64 = c64.seq(&mut c64.zero_state(1), x.view());
    let mut max_err = 0.0f64;
    let mut max_abs = 0.0f64;
    for (a, b) in y32.iter().zip(y64.iter()) {
        max_err = max_err.max((*a as f64 - b).abs());
        max_abs = max_abs.max(b.abs());
    }
    (max_err, max_abs)
}

/// GFLOP/s of the packed product alone, `[m, k] × [k, n]`, best of repeated calls, with
/// its columns split over `parts` threads.
fn kernel_gflops(m: usize, k: usize, n: usize, parts: usize) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(parts)
        .build()
        .unwrap();
    pool.install(|| kernel_gflops_in_pool(m, k, n, parts))
}

fn kernel_gflops_in_pool(m: usize, k: usize, n: usize, parts: usize) -> f64 {
    let mut rng = Rng(42);
    let a: Vec<f32> = (0..m * k).map(|_| rng.next() as f32).collect();
    let b = Array2::from_shape_fn((k, n), |_| rng.next() as f32);
    let packed = Packed::pack(b.view());
    let mut c = vec![0f32; m * n];
    let reps = (2e9 / (2.0 * (m * k * n) as f64)).clamp(5.0, 20000.0) as usize;
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            gemm_packed_par(parts, m, black_box(&a), k, &packed, &mut c, n, Init::Zero);
            s.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    // The fastest run: the kernel is compute-bound, and slower runs are the machine's noise.
    2.0 * (m * k * n) as f64 / times[0] / 1e9
}

fn main() {
    if std::env::args().any(|a| a == "kernel") {
        println!(
            "{:>6} {:>6} {:>6} {:>10} {:>10}",
            "m", "k", "n", "GFLOP/s", "2 threads"
        );
        for (m, k, n) in [
            (1, 128, 512),
            (1, 256, 1024),
            (4, 256, 1024),
            (16, 256, 1024),
            (1600, 256, 1024),
            (16, 512, 2048),
            (128, 512, 2048),
            (1, 512, 2048),
        ] {
            println!(
                "{m:>6} {k:>6} {n:>6} {:>10.1} {:>10.1}",
                kernel_gflops(m, k, n, 1),
                kernel_gflops(m, k, n, 2)
            );
        }
        return;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let only_accuracy = filters.iter().any(|f| f == "accuracy");
    // `threads2`: the same cases with the products split over two threads.
    let threads = if filters.iter().any(|f| f == "threads2") {
        2
    } else {
        1
    };
    let filters: Vec<&String> = filters
        .iter()
        .filter(|f| *f != "accuracy" && *f != "threads2")
        .collect();
    let ops = [Op::Lstm, Op::Gru0, Op::Gru1, Op::Rnn];

    if !only_accuracy {
        println!(
            "{:<10} {:>5} {:>5} {:>6} {:>12} {:>10}",
            "op", "H", "batch", "T", "us/step", "GFLOP/s"
        );
        for &op in &ops {
            for &h in &[64usize, 128, 256, 512] {
                for &batch in &[1usize, 4, 16] {
                    let seqs: &[usize] = if h <= 128 { &[100, 1000] } else { &[100] };
                    for &t in seqs {
                        let label = format!("{} h{} b{} t{}", op.name(), h, batch, t);
                        if !filters.is_empty()
                            && !filters.iter().all(|f| label.contains(f.as_str()))
                        {
                            continue;
                        }
                        let (w, r, b) = onnx_weights(op, h, h, 1);
                        let cell = build::<f32>(op, &w, &r, &b);
                        let xs = input(t, batch, h, 2).mapv(|v| v as f32);
                        let secs = time_seq(cell.as_ref(), &xs, threads);
                        let us = secs * 1e6 / t as f64;
                        // Two products (input and recurrent) of [batch, H] × [H, G·H] per step.
                        let flops = 2.0 * 2.0 * (batch * h * op.gates() * h) as f64;
                        println!(
                            "{:<10} {:>5} {:>5} {:>6} {:>12.2} {:>10.1}",
                            op.name(),
                            h,
                            batch,
                            t,
                            us,
                            flops / (us * 1e3)
                        );
                    }
                }
            }
        }
    }

    if only_accuracy || filters.is_empty() {
        println!("\naccuracy: max |Y_f32 - Y_f64|, H = I = 256, T = 200, batch 1");
        for &op in &ops {
            let (err, mag) = accuracy(op, 256, 200);
            println!("{:<10} {:>10.3e}   (max |Y| {:.3})", op.name(), err, mag);
        }
    }
}
