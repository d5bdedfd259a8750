//! Cell throughput: µs per time step for each op, hidden size and batch, single thread.
//!
//! `cargo bench --bench cells` runs every case; arguments filter cases by substring
//! (`cargo bench --bench cells -- lstm h256 b1`; sizes match whole words, so `b1` is not
//! `b16`), `accuracy` runs only the f32-vs-f64 check,
//! `bf16` or `f16` times the f32 cells with Rᵀ stored in 16 bits, `threads2` on two threads,
//! `vs1` one thread and two in the same process, pass by pass alternately (so both meet the
//! same load; `vs1 same`: one thread against one, the noise of that comparison),
//! `kernel` times the packed matrix product alone (in GFLOP/s, on every kernel set this CPU
//! runs), `bandwidth` measures single-core read bandwidth for buffers of 256 KiB to 64 MiB
//! and the batch-1 recurrent product against the floor it sets (Rᵀ bytes ÷ bandwidth).
//! Plain `std::time`: one warm-up run, then the median of as many runs as fit in ~0.25 s
//! (at least 3).

use std::hint::black_box;
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2, Array3};
use rnn_run::cells::{run_sequence, Cell, DirWeights, Gru, Lstm, Rnn};
use rnn_run::kernels::{gemm_packed_on, gemm_packed_par, Float, Init, Isa, Packed, WeightFormat};

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

fn build<T: Float>(
    op: Op,
    w: &Array2<f64>,
    r: &Array2<f64>,
    b: &Array1<f64>,
    format: WeightFormat,
) -> Box<dyn Cell<T>> {
    let cv = |x: &f64| <T as num_traits::NumCast>::from(*x).unwrap();
    let weights = DirWeights::from_onnx(
        w.map(cv).view(),
        r.map(cv).view(),
        Some(b.map(cv).view()),
        None,
    );
    match op {
        Op::Lstm => Box::new(Lstm::new(weights, &[], None, false).with_recurrent_weights(format)),
        Op::Gru0 => Box::new(Gru::new(weights, &[], None, false).with_recurrent_weights(format)),
        Op::Gru1 => Box::new(Gru::new(weights, &[], None, true).with_recurrent_weights(format)),
        Op::Rnn => Box::new(Rnn::new(weights, &[], None).with_recurrent_weights(format)),
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

/// Median seconds of one pass over `xs` on one thread and on `threads`, alternately: one
/// warm-up pass each, then blocks of passes of about 25 ms (long enough that a helper's
/// wake-up after the other mode's block is one pass in many, short enough that both modes
/// meet the same load), in both orders, for about 1.5 s. Both run in one pool of
/// `threads` threads, so that the lone passes run on the thread that leads the shared ones
/// and do not flush the caches of a helper's core (as a lone thread of another pool would).
fn time_seq_vs1(cell: &dyn Cell<f32>, xs: &Array3<f32>, threads: usize) -> (f64, f64) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let time = |parts: usize| {
            let s = Instant::now();
            pass(cell, xs, parts);
            s.elapsed().as_secs_f64()
        };
        let once = (time(1) + time(threads)).max(1e-9);
        let block = (0.025 / once).clamp(1.0, 100.0) as usize;
        let pairs = (1.5 / (once * block as f64)).clamp(5.0, 60.0) as usize;
        let mut times = [Vec::new(), Vec::new()];
        for p in 0..pairs {
            for k in [p % 2, 1 - p % 2] {
                for _ in 0..block {
                    times[k].push(time([1, threads][k]));
                }
            }
        }
        let [a, b] = times.map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        });
        (a, b)
    })
}

/// One pass over `xs` from the zero state, products split over `threads`.
fn pass(cell: &dyn Cell<f32>, xs: &Array3<f32>, threads: usize) {
    let batch = xs.dim().1;
    let mut state = cell.zero_state(batch);
    let (t, b, _) = xs.dim();
    let mut y = Array3::zeros((t, b, cell.hidden_size()));
    run_sequence(
        cell,
        black_box(xs.view()),
        &mut state,
        None,
        false,
        Some(y.view_mut()),
        threads,
    );
    black_box(y);
}

fn time_seq_in_pool(cell: &dyn Cell<f32>, xs: &Array3<f32>, threads: usize) -> f64 {
    let run = || pass(cell, xs, threads);
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

/// Max |f32 − f64| over Y for one op at H = I = `h`, `t` steps, batch 1, with the f32 cell's
/// Rᵀ stored as `format`.
fn accuracy(op: Op, h: usize, t: usize, format: WeightFormat) -> (f64, f64) {
    let (w, r, b) = onnx_weights(op, h, h, 7);
    let x = input(t, 1, h, 11);
    let c32 = build::<f32>(op, &w, &r, &b, format);
    let c64 = build::<f64>(op, &w, &r, &b, WeightFormat::Full);
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

/// Seconds per call of the packed product `[m, k] × [k, n]` on `isa`, one thread: the
/// median and the fastest of repeated calls (the weights stay in whatever cache holds them).
fn kernel_secs_on(isa: Isa, m: usize, k: usize, n: usize) -> (f64, f64) {
    let mut rng = Rng(42);
    let a: Vec<f32> = (0..m * k).map(|_| rng.next() as f32).collect();
    let b = Array2::from_shape_fn((k, n), |_| rng.next() as f32);
    let packed = Packed::pack(b.view());
    let mut c = vec![0f32; m * n];
    let reps = (2e9 / (2.0 * (m * k * n) as f64)).clamp(5.0, 20000.0) as usize;
    for _ in 0..3 {
        gemm_packed_on(isa, m, &a, k, &packed, &mut c, n, Init::Zero);
    }
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            gemm_packed_on(isa, m, black_box(&a), k, &packed, &mut c, n, Init::Zero);
            s.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    (times[times.len() / 2], times[0])
}

/// Sums a buffer of f32 with eight independent vector accumulators: one pass reads every
/// byte once, and the adds are far cheaper than the loads.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn read_pass_avx512(buf: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 8];
    let p = buf.as_ptr();
    let mut i = 0;
    while i + 128 <= buf.len() {
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = _mm512_add_ps(*acc, _mm512_loadu_ps(p.add(i + 16 * j)));
        }
        i += 128;
    }
    let mut s = _mm512_setzero_ps();
    for a in acc {
        s = _mm512_add_ps(s, a);
    }
    _mm512_reduce_add_ps(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn read_pass_avx2(buf: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); 8];
    let p = buf.as_ptr();
    let mut i = 0;
    while i + 64 <= buf.len() {
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_add_ps(*acc, _mm256_loadu_ps(p.add(i + 8 * j)));
        }
        i += 64;
    }
    let mut out = [0f32; 8];
    for a in acc {
        _mm256_storeu_ps(out.as_mut_ptr(), a);
    }
    out.iter().sum()
}

fn read_pass(buf: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512 F.
            return unsafe { read_pass_avx512(buf) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { read_pass_avx2(buf) };
        }
    }
    let mut acc = [0f32; 16];
    for c in buf.chunks_exact(16) {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum()
}

/// Single-core read bandwidth in GB/s for a buffer of `bytes`: the median of repeated passes
/// over it (after two warm-up passes that bring it into the caches it fits in).
fn read_gbs(bytes: usize) -> (f64, f64) {
    let buf: Vec<f32> = (0..bytes / 4).map(|i| (i % 7) as f32).collect();
    let passes = ((256 << 20) / bytes).clamp(20, 2000);
    black_box(read_pass(&buf));
    black_box(read_pass(&buf));
    let mut times: Vec<f64> = (0..passes)
        .map(|_| {
            let s = Instant::now();
            black_box(read_pass(black_box(&buf)));
            s.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let gbs = |t: f64| bytes as f64 / t / 1e9;
    (gbs(times[times.len() / 2]), gbs(times[0]))
}

/// The probe, then each batch-1 recurrent product (LSTM 4·H columns, GRU 3·H) on every kernel
/// set against Rᵀ bytes ÷ the L3 bandwidth (the 8 MiB buffer's).
fn bandwidth() {
    println!("single-core read bandwidth (median of passes; best in brackets)");
    println!("{:>9} {:>14}", "buffer", "GB/s");
    let mut l3 = 0.0;
    let mut by_size = vec![];
    for kib in [256usize, 512, 1024, 2048, 4096, 8192, 16384, 65536] {
        let (med, best) = read_gbs(kib << 10);
        let label = if kib >= 1024 {
            format!("{} MiB", kib >> 10)
        } else {
            format!("{kib} KiB")
        };
        println!("{label:>9} {med:>7.1} ({best:.1})");
        if kib == 8192 {
            l3 = med;
        }
        by_size.push((kib << 10, med));
    }
    // The bandwidth of the smallest probe buffer at least as big as `bytes`.
    let at = |bytes: usize| {
        by_size
            .iter()
            .find(|&&(b, _)| b >= bytes)
            .map_or(l3, |&(_, g)| g)
    };
    println!(
        "\nbatch-1 recurrent product, one thread, µs per call (median), against Rᵀ bytes ÷ \
         bandwidth: at L3 ({l3:.1} GB/s, the 8 MiB buffer's) and at the smallest probe buffer \
         that holds Rᵀ"
    );
    print!(
        "{:<6} {:>4} {:>8} {:>9} {:>10}",
        "op", "H", "Rᵀ KiB", "floor L3", "floor size"
    );
    let isas: Vec<Isa> = Isa::available()
        .into_iter()
        .filter(|&i| i != Isa::Portable)
        .collect();
    for isa in &isas {
        print!(" {:>9} {:>6}", isa.name(), "/L3");
    }
    println!();
    for (op, gates) in [("lstm", 4usize), ("gru", 3)] {
        for h in [128usize, 256, 512] {
            let bytes = h * gates * h * 4;
            let floor_l3 = bytes as f64 / (l3 * 1e3);
            let floor_size = bytes as f64 / (at(bytes) * 1e3);
            print!(
                "{op:<6} {h:>4} {:>8} {floor_l3:>9.2} {floor_size:>10.2}",
                bytes >> 10
            );
            for &isa in &isas {
                let us = kernel_secs_on(isa, 1, h, gates * h).0 * 1e6;
                print!(" {us:>9.2} {:>6.2}", us / floor_l3);
            }
            println!();
        }
    }
}

/// Whether a case's label (`lstm h256 b1 t100`) passes a filter: a size (`h256`, `b1`,
/// `t100`) must be one of its words (so `b1` is not `b16`), anything else a part of it.
fn matches(label: &str, filter: &str) -> bool {
    let is_size = filter.len() > 1
        && matches!(filter.as_bytes()[0], b'h' | b'b' | b't')
        && filter[1..].bytes().all(|c| c.is_ascii_digit());
    if is_size {
        label.split(' ').any(|w| w == filter)
    } else {
        label.contains(filter)
    }
}

fn main() {
    if std::env::args().any(|a| a == "bandwidth") {
        bandwidth();
        return;
    }
    if std::env::args().any(|a| a == "kernel") {
        let isas: Vec<Isa> = Isa::available()
            .into_iter()
            .filter(|&i| i != Isa::Portable)
            .collect();
        println!(
            "GFLOP/s of the packed product (from the median call; selected set: {})",
            Isa::selected().name()
        );
        print!("{:>6} {:>6} {:>6}", "m", "k", "n");
        for isa in &isas {
            print!(" {:>8}", isa.name());
        }
        println!(" {:>10}", "2 threads");
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
            print!("{m:>6} {k:>6} {n:>6}");
            for &isa in &isas {
                let secs = kernel_secs_on(isa, m, k, n).0;
                print!(" {:>8.1}", 2.0 * (m * k * n) as f64 / secs / 1e9);
            }
            println!(" {:>10.1}", kernel_gflops(m, k, n, 2));
        }
        return;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let only_accuracy = filters.iter().any(|f| f == "accuracy");
    // `bf16` / `f16`: the f32 cells with Rᵀ stored in 16 bits.
    let format = if filters.iter().any(|f| f == "bf16") {
        WeightFormat::Bf16
    } else if filters.iter().any(|f| f == "f16") {
        WeightFormat::F16
    } else {
        WeightFormat::Full
    };
    // `threads2`: the same cases with the products split over two threads.
    let threads = if filters.iter().any(|f| f == "threads2") {
        2
    } else {
        1
    };
    // `vs1`: two threads against one, alternately in this process (`vs1 same`: one against
    // one).
    let vs1 = filters.iter().any(|f| f == "vs1");
    let vs = if filters.iter().any(|f| f == "same") {
        1
    } else {
        2
    };
    let filters: Vec<&String> = filters
        .iter()
        .filter(|f| !["accuracy", "threads2", "bf16", "f16", "vs1", "same"].contains(&f.as_str()))
        .collect();
    let ops = [Op::Lstm, Op::Gru0, Op::Gru1, Op::Rnn];

    if !only_accuracy {
        if vs1 {
            let other = format!("us/step {vs}t");
            println!(
                "{:<10} {:>5} {:>5} {:>6} {:>12} {:>12}",
                "op", "H", "batch", "T", "us/step 1t", other
            );
        } else {
            println!(
                "{:<10} {:>5} {:>5} {:>6} {:>12} {:>10}",
                "op", "H", "batch", "T", "us/step", "GFLOP/s"
            );
        }
        for &op in &ops {
            for &h in &[64usize, 128, 256, 512] {
                for &batch in &[1usize, 4, 16] {
                    let seqs: &[usize] = if h <= 128 { &[100, 1000] } else { &[100] };
                    for &t in seqs {
                        let label = format!("{} h{} b{} t{}", op.name(), h, batch, t);
                        if !filters.is_empty() && !filters.iter().all(|f| matches(&label, f)) {
                            continue;
                        }
                        let (w, r, b) = onnx_weights(op, h, h, 1);
                        let cell = build::<f32>(op, &w, &r, &b, format);
                        let xs = input(t, batch, h, 2).mapv(|v| v as f32);
                        if vs1 {
                            let (one, other) = time_seq_vs1(cell.as_ref(), &xs, vs);
                            println!(
                                "{:<10} {h:>5} {batch:>5} {t:>6} {:>12.2} {:>12.2}",
                                op.name(),
                                one * 1e6 / t as f64,
                                other * 1e6 / t as f64
                            );
                            continue;
                        }
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

    if only_accuracy || (filters.is_empty() && !vs1) {
        println!(
            "\naccuracy: max |Y_f32 - Y_f64| over T = 200 steps, batch 1, by H and the f32 \
             cell's Rᵀ storage"
        );
        println!(
            "{:<10} {:>5} {:>10} {:>10} {:>10} {:>8}",
            "op", "H", "f32", "bf16", "f16", "max |Y|"
        );
        for &op in &ops {
            for h in [256, 512] {
                let (full, mag) = accuracy(op, h, 200, WeightFormat::Full);
                let (bf16, _) = accuracy(op, h, 200, WeightFormat::Bf16);
                let (f16, _) = accuracy(op, h, 200, WeightFormat::F16);
                println!(
                    "{:<10} {h:>5} {full:>10.3e} {bf16:>10.3e} {f16:>10.3e} {mag:>8.3}",
                    op.name()
                );
            }
        }
    }
}
