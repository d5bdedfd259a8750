//! Unit tests of the cells, their time loop and the pieces they are cut into.

use super::*;
use crate::attrs::Activation;
use crate::kernels::WeightFormat;
use ndarray::Array3;

fn cast<T: Float>(v: f64) -> T {
    <T as num_traits::NumCast>::from(v).unwrap()
}

/// Deterministic values in [-scale, scale).
fn values(n: usize, seed: u64, scale: f64) -> impl Iterator<Item = f64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
    })
}

fn cells<T: Float>(h: usize, i: usize, format: WeightFormat) -> Vec<Box<dyn Cell<T>>> {
    let k = 1.0 / (h as f64).sqrt();
    let arr = |r: usize, c: usize, seed| {
        Array2::from_shape_vec((r, c), values(r * c, seed, k).map(cast::<T>).collect()).unwrap()
    };
    let vec = |n: usize, seed| Array1::from_iter(values(n, seed, k).map(cast::<T>));
    let dir = |g: usize, peep: bool| {
        DirWeights::from_onnx(
            arr(g * h, i, 1).view(),
            arr(g * h, h, 2).view(),
            Some(vec(2 * g * h, 3).view()),
            peep.then(|| vec(3 * h, 4)).as_ref().map(|p| p.view()),
        )
    };
    let relu = [Activation::Relu];
    vec![
        Box::new(Lstm::new(dir(4, false), &[], None, false).with_recurrent_weights(format)),
        Box::new(Lstm::new(dir(4, true), &[], Some(2.5), false).with_recurrent_weights(format)),
        Box::new(Lstm::new(dir(4, true), &[], None, true).with_recurrent_weights(format)),
        Box::new(Gru::new(dir(3, false), &[], None, false).with_recurrent_weights(format)),
        Box::new(Gru::new(dir(3, false), &[], Some(1.5), true).with_recurrent_weights(format)),
        Box::new(Rnn::new(dir(1, false), &relu, None).with_recurrent_weights(format)),
    ]
}

/// `run_sequence` of `cell` over `x` from the zero state on `pool`, its products split over
/// `parts` threads: Y and the final state.
fn run_on<T: Float>(
    pool: &rayon::ThreadPool,
    cell: &dyn Cell<T>,
    x: &Array3<T>,
    (lens, reverse): (Option<&[usize]>, bool),
    parts: usize,
) -> (Array3<T>, State<T>) {
    let (t, batch, _) = x.dim();
    let mut state = cell.zero_state(batch);
    let mut y = Array3::zeros((t, batch, cell.hidden_size()));
    pool.install(|| {
        run_sequence(
            cell,
            x.view(),
            &mut state,
            lens,
            reverse,
            Some(y.view_mut()),
            parts,
        )
    });
    (y, state)
}

/// `run_sequence` of every cell kind with its steps cut among 1 to 5 threads: the same
/// bits every time, with H both a whole number of panels and not.
fn pieces_give_the_same_bits<T: Float>() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(5)
        .build()
        .unwrap();
    for format in [WeightFormat::Full, WeightFormat::Bf16] {
        // H=128 (f32) and 64 (f64): gate rows of 2 KiB, padded by a cache line.
        for (h, i, batch) in [
            (37, 5, 3),
            (136, 12, 1),
            (64, 7, 2),
            (200, 9, 4),
            (128, 6, 3),
        ] {
            let x = Array3::from_shape_vec(
                (6, batch, i),
                values(6 * batch * i, 9, 1.0).map(cast::<T>).collect(),
            )
            .unwrap();
            // Equal lengths (a team runs the pieces) and, past batch 1, different ones
            // (rayon joins do), backwards.
            let lens: Vec<usize> = (0..batch).map(|b| 6 - b % 4).collect();
            let walks = [(None, false), (Some(&lens[..]), true)];
            for (n, cell) in cells::<T>(h, i, format).iter().enumerate() {
                for (lens, reverse) in walks.iter().take(if batch > 1 { 2 } else { 1 }) {
                    let run = |parts| run_on(&pool, cell.as_ref(), &x, (*lens, *reverse), parts);
                    let (y1, s1) = run(1);
                    assert!(y1.iter().all(|v| v.is_finite()) && y1.iter().any(|v| !v.is_zero()));
                    for parts in 2..=5 {
                        let (y, s) = run(parts);
                        let same = y.iter().zip(&y1).all(|(a, b)| a == b);
                        assert!(
                            same && s == s1,
                            "cell {n} h {h} batch {batch} {format:?} lens {lens:?} {parts} parts"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn pieces_give_the_same_bits_f32() {
    pieces_give_the_same_bits::<f32>();
}

#[test]
fn pieces_give_the_same_bits_f64() {
    pieces_give_the_same_bits::<f64>();
}

#[test]
fn switching_between_shared_and_lone_steps_keeps_the_bits() {
    // 40 steps in segments of 2 (the unit tests' size): a new record shares the first
    // segment and runs the second alone, then follows whatever the timings say, probing the
    // other mode every few segments. Every run must equal one thread's, bit for bit.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (h, i, batch, t) = (136, 12, 3, 40);
    let x = Array3::from_shape_vec(
        (t, batch, i),
        values(t * batch * i, 5, 1.0).map(cast::<f32>).collect(),
    )
    .unwrap();
    for (n, cell) in cells::<f32>(h, i, WeightFormat::Full).iter().enumerate() {
        let run = |parts| run_on(&pool, cell.as_ref(), &x, (None, false), parts);
        let (y1, s1) = run(1);
        for _ in 0..5 {
            let (y, s) = run(2);
            assert!(y == y1 && s == s1, "cell {n}");
        }
        let addr = cell.as_ref() as *const dyn Cell<f32> as *const () as usize;
        // The lone steps ran (the shared ones did unless every shared segment stalled); the
        // record may be gone already, pushed out by the records of tests running alongside.
        if let Some([alone, _]) = choice::segments_of(addr, batch) {
            assert!(alone > 0, "cell {n}");
        }
    }
}

#[test]
fn steps_and_projections_taken_over_from_a_helper_keep_the_bits() {
    // Helpers that sleep in every third piece (as if descheduled mid-piece): the leader takes
    // their pieces over and their late results are never copied. Every run equals one
    // thread's, bit for bit, for every cell kind (two-phase GRU waits instead), forward and
    // reverse, over more steps than a chunk's projection.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .thread_name(|i| format!("slow-helper-{i}"))
        .build()
        .unwrap();
    let (h, i, batch, t) = (72, 10, 2, 150);
    let x = Array3::from_shape_vec(
        (t, batch, i),
        values(t * batch * i, 9, 1.0).map(cast::<f32>).collect(),
    )
    .unwrap();
    let slept = || jobs::SLOW_PIECES.load(std::sync::atomic::Ordering::Relaxed);
    let first = slept();
    for (n, cell) in cells::<f32>(h, i, WeightFormat::Full).iter().enumerate() {
        for reverse in [false, true] {
            let run = |parts| run_on(&pool, cell.as_ref(), &x, (None, reverse), parts);
            let (y1, s1) = run(1);
            // Runs repeat until helpers have slept in a few pieces (or 50 runs: on a busy
            // machine a helper may not get a core for a whole run).
            let before = slept();
            for k in 0..50 {
                let (y, s) = run(2);
                assert!(y == y1 && s == s1, "cell {n}, reverse {reverse}");
                if k >= 2 && slept() >= before + 6 {
                    break;
                }
            }
        }
    }
    assert!(slept() > first, "no helper ran a piece");
}
