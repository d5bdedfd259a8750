//! Unit tests of the kernels: every kernel set against ndarray's product and each other, the
//! 16-bit roundings, and the fast activations.

use super::activations::{sigmoid_slice_f32, tanh_slice_f32};
use super::dispatch::{lstm_row_f32_on, sigmoid_slice_f32_on, tanh_slice_f32_on};
use super::*;
use ndarray::Array2;

/// Every kernel set this CPU runs against ndarray's product; the x86 sets (all fused
/// multiply-adds in k order) against each other bit for bit, at every thread split.
fn check_gemm<T: Float>(m: usize, k: usize, n: usize, init: u8) {
    for format in [WeightFormat::Full, WeightFormat::Bf16, WeightFormat::F16] {
        check_gemm_as::<T>(m, k, n, init, format);
    }
}

/// As [`check_gemm`] with the weights stored in `format`: against ndarray's product of
/// the rounded weights.
fn check_gemm_as<T: Float>(m: usize, k: usize, n: usize, init: u8, format: WeightFormat) {
    let a = Array2::from_shape_fn((m, k), |(i, j)| {
        T::from_f32(((i * 7 + j * 3) % 11) as f32 * 0.1 - 0.5)
    });
    let b = Array2::from_shape_fn((k, n), |(i, j)| {
        T::from_f32(((i * 5 + j * 13) % 17) as f32 * 0.0517 - 0.4)
    });
    let bias = Array2::from_shape_fn((m, n), |(i, j)| T::from_f32((i + 2 * j) as f32 * 0.01));
    let packed = Packed::pack_as(b.view(), format);
    let rounded = packed.unpack();
    if format == WeightFormat::Full {
        assert_eq!(rounded, b);
    } else {
        assert!(rounded != b || k * n == 0, "{format:?} rounds nothing");
        let bound = T::from_f32(if format == WeightFormat::Bf16 {
            1.0 / 256.0
        } else {
            1.0 / 2048.0
        });
        for (r, x) in rounded.iter().zip(&b) {
            assert!(
                (*r - *x).abs() <= x.abs() * bound,
                "{format:?} {x:?} -> {r:?}"
            );
        }
    }
    let b = rounded;
    let mut want = Array2::zeros((m, n));
    matmul(a.view(), b.view(), want.view_mut());
    match init {
        1 => want.zip_mut_with(&bias.row(0), |w, &b| *w = *w + b),
        2 => want.zip_mut_with(&bias, |w, &b| *w = *w + b),
        _ => {}
    }
    let init = match init {
        1 => Init::Row(bias.row(0).to_slice().unwrap()),
        2 => Init::Rows(bias.as_slice().unwrap(), n),
        _ => Init::Zero,
    };
    let mut fused: Option<(Isa, Array2<T>)> = None;
    for isa in Isa::available() {
        let mut got = Array2::from_elem((m, n), T::nan());
        gemm_packed_on(
            isa,
            m,
            a.as_slice().unwrap(),
            k,
            &packed,
            got.as_slice_mut().unwrap(),
            n,
            init,
        );
        for (g, w) in got.iter().zip(want.iter()) {
            assert!(
                (*g - *w).abs() <= T::from_f32(1e-4),
                "{isa:?} {format:?} m {m} k {k} n {n}: {g:?} vs {w:?}"
            );
        }
        if isa == Isa::Portable {
            continue;
        }
        match &fused {
            None => fused = Some((isa, got)),
            Some((first, bits)) => assert!(
                bits.iter()
                    .zip(got.iter())
                    .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())),
                "{isa:?} and {first:?} differ, {format:?} m {m} k {k} n {n}"
            ),
        }
    }
    // The selected set with the columns split among threads: the same bits as unsplit.
    let mut one = Array2::from_elem((m, n), T::nan());
    gemm_packed(
        m,
        a.as_slice().unwrap(),
        k,
        &packed,
        one.as_slice_mut().unwrap(),
        n,
        init,
    );
    for parts in [2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(parts)
            .build()
            .unwrap();
        let mut many = Array2::from_elem((m, n), T::nan());
        pool.install(|| {
            gemm_packed_par(
                parts,
                m,
                a.as_slice().unwrap(),
                k,
                &packed,
                many.as_slice_mut().unwrap(),
                n,
                init,
            )
        });
        assert!(
            one.iter().zip(many.iter()).all(|(x, y)| x == y),
            "{parts} parts, m {m} k {k} n {n}"
        );
    }
}

#[test]
fn packed_products_match_matmul() {
    eprintln!("kernel sets run here: {:?}", Isa::available());
    for &(m, k, n) in &[
        (1, 5, 3),
        (1, 16, 64),
        (1, 33, 100),
        (1, 64, 256),
        // One row over 8 + 4 + 3 + 2 + 1 panels and a partial one; over 8 panels twice.
        (1, 40, 16 * 18 + 5),
        (1, 300, 256),
        (2, 7, 17),
        (4, 20, 48),
        (7, 9, 33),
        (9, 24, 16 * 5 + 3),
        (16, 32, 96),
        (16, 64, 16 * 7 + 9),
        (13, 0, 5),
        // Several row blocks (128 KiB of A each), the last one with a partial tile.
        (130, 512, 40),
        (61, 1024, 20),
        (200, 160, 16 * 4 + 1),
    ] {
        for init in 0..3 {
            check_gemm::<f32>(m, k, n, init);
            check_gemm::<f64>(m, k, n, init);
        }
    }
}

#[test]
fn sixteen_bit_roundings() {
    // bfloat16: nearest, ties to even; NaN stays NaN; infinities and zeros kept.
    assert_eq!(f32_to_bf16(1.0), 0x3f80);
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, to even
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, to even
    assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
    assert_eq!(f32_to_bf16(f32::MAX), 0x7f80); // rounds past the largest: infinity
    assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
    assert_eq!(f32_to_bf16(-0.0), 0x8000);
    assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
    assert_eq!(bf16_to_f32(f32_to_bf16(-2.5)), -2.5);
    assert_eq!(f16_to_f32(f32_to_f16(0.1)), 0.099975586);
    assert_eq!(f16_to_f32(f32_to_f16(1e5)), f32::INFINITY);
    for i in 0..100_000 {
        let x = (i as f32 - 50_000.0) * 1.37e-3;
        let r = bf16_to_f32(f32_to_bf16(x));
        assert!((r - x).abs() <= x.abs() / 256.0, "{x} -> {r}");
        let r = f16_to_f32(f32_to_f16(x));
        assert!((r - x).abs() <= x.abs() / 2048.0, "{x} -> {r}");
    }
}

#[test]
fn every_kernel_set_gives_the_same_activations() {
    let xs: Vec<f32> = (0..4099)
        .map(|i| (i as f32 - 2049.0) * 0.0173)
        .chain([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1e-30,
            200.0,
        ])
        .collect();
    let (mut s0, mut t0) = (xs.clone(), xs.clone());
    sigmoid_slice_f32(&mut s0);
    tanh_slice_f32(&mut t0);
    for isa in Isa::available() {
        let (mut s, mut t) = (xs.clone(), xs.clone());
        sigmoid_slice_f32_on(isa, &mut s);
        tanh_slice_f32_on(isa, &mut t);
        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same(&s, &s0) && same(&t, &t0), "{isa:?}");
    }
}

#[test]
fn fast_f32_functions_are_within_a_few_ulp() {
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    let mut x = -30.0f32;
    while x < 30.0 {
        let want_s = 1.0 / (1.0 + (-(x as f64)).exp());
        let want_t = (x as f64).tanh();
        let want_e = (x as f64).exp();
        let rel = |got: f32, want: f64| {
            if want == 0.0 {
                got.abs() as f64
            } else {
                ((got as f64 - want) / want).abs()
            }
        };
        worst.0 = worst.0.max(rel(sigmoid_f32(x), want_s));
        worst.1 = worst.1.max(rel(tanh_f32(x), want_t));
        if x > -80.0 {
            worst.2 = worst.2.max(rel(exp_f32(x), want_e));
        }
        x += 0.000_37;
    }
    let ulp = f32::EPSILON as f64;
    assert!(
        worst.0 < 4.0 * ulp && worst.1 < 4.0 * ulp && worst.2 < 2.0 * ulp,
        "relative errors {worst:?}"
    );
    assert!(tanh_f32(f32::NAN).is_nan() && sigmoid_f32(f32::NAN).is_nan());
    assert!(sigmoid_f32(-200.0).max(0.0) < 1e-37);
    assert_eq!(sigmoid_f32(200.0), 1.0);
    assert_eq!(tanh_f32(20.0), 1.0);
    assert_eq!(tanh_f32(-20.0), -1.0);
    assert_eq!(tanh_f32(0.0), 0.0);
}

/// The fused LSTM row on every kernel set against the cell's general formula written out
/// here (same operations, same order): the same bits, for unit counts below, at and past a
/// chunk, with and without peepholes and `input_forget`.
#[test]
fn fused_lstm_row_gives_the_general_paths_bits() {
    let val = |i: usize| ((i * 7919 % 1000) as f32 / 125.0 - 4.0) * 1.3;
    for n in [1usize, 15, 16, 25, 33] {
        let hp = n.div_ceil(16) * 16;
        let gates: Vec<f32> = (0..4 * hp).map(val).collect();
        let c_prev: Vec<f32> = (0..n).map(|i| val(i + 5000) * 0.5).collect();
        let peeps: Vec<f32> = (0..3 * n).map(|i| val(i + 9000) * 0.2).collect();
        for (peep, input_forget) in [(false, false), (true, false), (true, true), (false, true)] {
            let mut want_c = vec![0.0f32; n];
            let mut want_h = vec![0.0f32; n];
            for j in 0..n {
                let p = |k: usize| if peep { peeps[k * n + j] } else { 0.0 };
                let with = |g: f32, k: usize, c: f32| if peep { g + p(k) * c } else { g };
                let i = sigmoid_f32(with(gates[j], 0, c_prev[j]));
                let cand = tanh_f32(gates[3 * hp + j]);
                want_c[j] = if input_forget {
                    (1.0 - i) * c_prev[j] + i * cand
                } else {
                    sigmoid_f32(with(gates[2 * hp + j], 2, c_prev[j])) * c_prev[j] + i * cand
                };
                let o = sigmoid_f32(with(gates[hp + j], 1, want_c[j]));
                want_h[j] = o * tanh_f32(want_c[j]);
            }
            for isa in Isa::available() {
                let (mut c, mut h) = (vec![f32::NAN; n + 1], vec![f32::NAN; n + 1]);
                let pp = |k: usize| {
                    if peep {
                        peeps[k * n..].as_ptr()
                    } else {
                        std::ptr::null()
                    }
                };
                let row = LstmRow {
                    gates: gates.as_ptr(),
                    hp,
                    c_prev: c_prev.as_ptr(),
                    peep: [pp(0), pp(1), pp(2)],
                    c_next: c.as_mut_ptr(),
                    h_next: h.as_mut_ptr(),
                    n,
                    input_forget,
                };
                // SAFETY: the CPU runs `isa`; the buffers hold what LstmRow says.
                unsafe { lstm_row_f32_on(isa, &row) };
                let same =
                    |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same(&c[..n], &want_c) && same(&h[..n], &want_h),
                    "{isa:?} n {n} peep {peep} input_forget {input_forget}"
                );
                assert!(c[n].is_nan() && h[n].is_nan(), "wrote past n");
            }
        }
    }
}
