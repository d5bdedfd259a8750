//! The integer products on every path the CPU runs, against a plain triple loop.

use super::*;

fn naive(q: &[u8], zp: u8, rows: usize, k: usize, n: usize, w: &[i16]) -> Vec<i32> {
    let mut out = vec![0i32; rows * n];
    for r in 0..rows {
        for c in 0..n {
            for kk in 0..k {
                let a = q[r * k + kk] as i32 - zp as i32;
                out[r * n + c] = out[r * n + c].wrapping_add(a * w[kk * n + c] as i32);
            }
        }
    }
    out
}

/// A seeded xorshift generator of integers in `lo..=hi`.
pub(crate) struct Ints(u64);

impl Ints {
    pub(crate) fn new(seed: u64) -> Ints {
        Ints(seed | 1)
    }
    pub(crate) fn next(&mut self, lo: i32, hi: i32) -> i32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % (hi - lo + 1) as u64) as i32 + lo
    }
}

fn rows_of(q: &[u8], zp: u8, rows: usize, k: usize) -> QuantRows {
    let mut a = QuantRows::new(k);
    a.reset(rows, zp);
    for r in 0..rows {
        a.set_row(r, q[r * k..(r + 1) * k].iter().copied());
    }
    a
}

/// Every shape class (k on and off multiples of 2 and 4, n on and off the 32- and
/// 64-column panels, rows on and off the row blocks), int8-like and uint8-like weights
/// (±255 after their zero point), activation zero points 0, 128 and 255, on every path
/// this CPU runs: the same integers as the triple loop, hence the same floats.
#[test]
fn products_are_exact_on_every_path() {
    let mut rng = Ints::new(0x9E37_79B9_7F4A_7C15);
    let paths = Path::available();
    for (rows, k, n) in [
        (1, 1, 1),
        (3, 7, 33),
        (4, 64, 64),
        (6, 255, 97),
        (7, 100, 100),
        (9, 512, 128),
        (16, 25, 100),
        (2, 130, 260),
    ] {
        for (w_lo, w_hi) in [(-128, 127), (-200, 55), (-255, 0), (-255, 255)] {
            for zp in [0u8, 128, 255] {
                let q: Vec<u8> = (0..rows * k).map(|_| rng.next(0, 255) as u8).collect();
                let mut w: Vec<i16> = (0..k * n).map(|_| rng.next(w_lo, w_hi) as i16).collect();
                w[0] = w_lo as i16;
                let a = rows_of(&q, zp, rows, k);
                let want = naive(&q, zp, rows, k, n, &w);
                for &path in &paths {
                    let m = IntMatrix::for_path(k, n, &w, path);
                    if path != Path::Avx512Vnni {
                        assert_eq!(m.narrow(), w_lo >= -128 && w_hi <= 127);
                    }
                    for accumulate in [false, true] {
                        let mut out = vec![1.0f32; rows * n];
                        let mult: Vec<f32> = (0..n).map(|c| 0.5 + c as f32 / 8.0).collect();
                        int_product(&a, &m, &mult, &mut out, accumulate);
                        for (i, (o, &s)) in out.iter().zip(&want).enumerate() {
                            let expect =
                                s as f32 * mult[i % n] + if accumulate { 1.0 } else { 0.0 };
                            assert_eq!(
                                *o, expect,
                                "{path:?} rows {rows} k {k} n {n} w {w_lo}..{w_hi} zp {zp}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The quad layout needs weights spanning at most 255; wider ones fall back to pairs.
#[test]
fn weights_wider_than_a_byte_fall_back_to_pairs() {
    if !Path::available().contains(&Path::Avx512Vnni) {
        return;
    }
    let w = [-255i16, 255, 0, 1];
    let m = IntMatrix::for_path(2, 2, &w, Path::Avx512Vnni);
    assert!(!matches!(m.packed, Packed::Quads(_)));
    let a = rows_of(&[0, 255], 128, 1, 2);
    let want = naive(&[0, 255], 128, 1, 2, 2, &w);
    let mut out = [0.0f32; 2];
    int_product(&a, &m, &[1.0], &mut out, false);
    assert_eq!(out, [want[0] as f32, want[1] as f32]);
}

/// A buffer reused for fewer, then more rows keeps its padding zero.
#[test]
fn reused_rows_give_the_same_products() {
    let k = 7;
    let w: Vec<i16> = (0..k * 5).map(|i| (i as i16 * 37) % 255 - 127).collect();
    let mut a = QuantRows::new(k);
    for &path in &Path::available() {
        let m = IntMatrix::for_path(k, 5, &w, path);
        for rows in [3, 1, 4] {
            let q: Vec<u8> = (0..rows * k).map(|i| (i * 91 % 256) as u8).collect();
            a.reset(rows, 17);
            for r in 0..rows {
                a.set_row(r, q[r * k..(r + 1) * k].iter().copied());
            }
            let mut out = vec![0.0f32; rows * 5];
            int_product(&a, &m, &[1.0], &mut out, false);
            let want: Vec<f32> = naive(&q, 17, rows, k, 5, &w)
                .into_iter()
                .map(|s| s as f32)
                .collect();
            assert_eq!(out, want, "{path:?} rows {rows}");
        }
    }
}

/// The vectorized quantization gives `kernels::quantize` of every value: halves (ties to
/// even), values past the range, infinities and NaN, rows on and off sixteen lanes.
#[test]
fn quantized_rows_follow_the_scalar_quantization() {
    let mut rng = Ints::new(77);
    for k in [1, 15, 16, 17, 40, 100] {
        let mut values: Vec<f32> = (0..k)
            .map(|_| rng.next(-4000, 4000) as f32 / 500.0)
            .collect();
        let specials = [
            0.5,
            -0.5,
            1.5,
            2.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e30,
        ];
        for (v, s) in values.iter_mut().zip(specials) {
            *v = s;
        }
        for (scale, zp) in [(1.0f32, 0u8), (0.031, 128), (8.0 / 255.0, 255), (0.5, 3)] {
            let mut a = QuantRows::new(k);
            a.reset(2, zp);
            a.quantize_row(1, &values, scale, zp);
            let want: Vec<u8> = values.iter().map(|&v| quantize(v, scale, zp)).collect();
            let mut b = QuantRows::new(k);
            b.reset(2, zp);
            b.set_row(1, want.iter().copied());
            assert_eq!(a.s, b.s, "k {k} scale {scale} zp {zp}");
            assert_eq!(a.row_sums, b.row_sums, "k {k} scale {scale} zp {zp}");
        }
    }
}

/// The vectorized range gives the scalar fold's quantization parameters, NaN and infinities
/// included.
#[test]
fn ranges_give_the_scalar_parameters() {
    use crate::qlstm::quantization_params;
    let mut rng = Ints::new(5);
    for k in [0, 1, 16, 17, 33] {
        for special in [
            None,
            Some(f32::NAN),
            Some(f32::INFINITY),
            Some(-0.0),
            Some(-7.5),
        ] {
            let mut values: Vec<f32> = (0..k).map(|_| rng.next(1, 3000) as f32 / 7.0).collect();
            if let (Some(v), Some(x)) = (values.last_mut(), special) {
                *v = x;
            }
            let (lo, hi) = range(&values);
            let want = quantization_params(values.iter().copied());
            let (scale, zp) = quantization_params([lo, hi]);
            assert_eq!(
                (scale.to_bits(), zp),
                (want.0.to_bits(), want.1),
                "k {k} {special:?}"
            );
        }
    }
}

/// The AVX2 quantization and range (the path a CPU without AVX-512 takes; called directly,
/// as the selected path here may be another): `kernels::quantize` of every value and the
/// scalar fold's parameters, on lengths on and off the 32- and 8-value steps, with ties,
/// infinities, NaN and the clamp at both ends.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_quantization_follows_the_scalar_one() {
    use crate::qlstm::quantization_params;
    if !std::is_x86_feature_detected!("avx2") {
        return;
    }
    let mut rng = Ints::new(31);
    for k in [0, 1, 7, 8, 31, 32, 33, 64, 100] {
        let mut values: Vec<f32> = (0..k)
            .map(|_| rng.next(-4000, 4000) as f32 / 500.0)
            .collect();
        let specials = [2.5, f32::NAN, -0.5, f32::INFINITY, 1e30, f32::NEG_INFINITY];
        for (v, s) in values.iter_mut().rev().step_by(5).zip(specials) {
            *v = s;
        }
        for (scale, zp) in [(1.0f32, 0u8), (0.031, 128), (8.0 / 255.0, 255), (0.5, 3)] {
            let want: Vec<u8> = values.iter().map(|&v| quantize(v, scale, zp)).collect();
            let mut got = vec![7u8; k];
            // SAFETY: AVX2 checked above; equal lengths.
            unsafe { avx2::quantize_u8(&values, scale, zp, &mut got) };
            assert_eq!(got, want, "k {k} scale {scale} zp {zp}");
            let mut signed = vec![7i8; k];
            // SAFETY: as above.
            let sum = unsafe { avx2::quantize_row(&values, scale, zp, &mut signed) };
            let want_signed: Vec<i8> = want.iter().map(|&q| (q ^ 0x80) as i8).collect();
            assert_eq!(signed, want_signed, "k {k} scale {scale} zp {zp}");
            assert_eq!(sum, want_signed.iter().map(|&s| s as i32).sum::<i32>());
        }
        // SAFETY: AVX2 checked above.
        let (lo, hi) = unsafe { avx2::range(&values) };
        let clean: Vec<f32> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        let want = quantization_params(values.iter().copied());
        assert_eq!(quantization_params([lo, hi]), want, "k {k}");
        let lo_want = clean.iter().fold(0f32, |a, &v| a.min(v));
        let hi_want = clean.iter().fold(0f32, |a, &v| a.max(v));
        assert_eq!((lo, hi), (lo_want, hi_want), "k {k}");
    }
}

/// The AVX2 blocks (one to six rows, three by thirty-two and six by sixteen) at the extremes
/// of int16 pair products: activations 0 and 255 with zero points 0 and 255 (centered
/// values ±255), weights at −255/255 (16-bit) and −128/127 (8-bit), odd k (the last pair's
/// padding) and n off the panel and off the sixteen-column packing steps, for packed
/// weights and for a uint8 operand packed at run time, against the triple loop.
#[test]
fn extreme_values_are_exact_on_every_path() {
    let mut rng = Ints::new(0xA5A5);
    for rows in 1..=7 {
        for (k, n) in [(1, 1), (3, 17), (33, 40), (129, 31)] {
            for (w_lo, w_hi) in [(-128, 127), (-255, 255)] {
                for zp in [0u8, 255] {
                    let q: Vec<u8> = (0..rows * k)
                        .map(|_| if rng.next(0, 1) == 0 { 0 } else { 255 })
                        .collect();
                    let w: Vec<i16> = (0..k * n)
                        .map(|_| if rng.next(0, 1) == 0 { w_lo } else { w_hi } as i16)
                        .collect();
                    let a = rows_of(&q, zp, rows, k);
                    let want = naive(&q, zp, rows, k, n, &w);
                    // The same extremes as a run-time uint8 operand (a convolution's patches):
                    // bytes 0 and 255 minus zero points 255 and 0.
                    let wu8: Vec<u8> = (0..k * n).map(|_| rng.next(0, 1) as u8 * 255).collect();
                    let w_zp = 255 - zp;
                    let wc: Vec<i16> = wu8.iter().map(|&v| v as i16 - w_zp as i16).collect();
                    let want_u8 = naive(&q, zp, rows, k, n, &wc);
                    for &path in &Path::available() {
                        let m = IntMatrix::for_path(k, n, &w, path);
                        let mut out = vec![0i32; rows * n];
                        int_product_to(&a, &m, &[], Sink::I32(&mut out));
                        assert_eq!(out, want, "{path:?} rows {rows} k {k} n {n} zp {zp}");
                        let m = IntMatrix::from_u8(k, n, &wu8, w_zp, path);
                        int_product_to(&a, &m, &[], Sink::I32(&mut out));
                        assert_eq!(out, want_u8, "{path:?} u8 rows {rows} k {k} n {n} zp {zp}");
                    }
                }
            }
        }
    }
}
