//! The AVX2 panel sums of the quantized product: `vpmaddwd` on pairs of 16-bit values, the
//! 8-bit weights widened in registers, up to six rows by sixteen columns (or three by
//! thirty-two) per pass so that every accumulator stays in one of the sixteen registers.
//!
//! The activations come pre-centered ([`super::centered_pairs`]): each pair
//! `a[r, 2p] − a_zp`, `a[r, 2p + 1] − a_zp` packed into one int32, so a pair is one broadcast
//! from memory rather than a dozen scalar instructions.

use std::arch::x86_64::*;

use super::{MR, NC};

/// A pair panel's element: how sixteen of them (eight columns' pairs) become sixteen int16.
trait Weights: Copy {
    /// # Safety
    /// AVX2; sixteen values readable at `p`.
    unsafe fn load16(p: *const Self) -> __m256i;
}

impl Weights for i8 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load16(p: *const i8) -> __m256i {
        _mm256_cvtepi8_epi16(_mm_loadu_si128(p as *const __m128i))
    }
}

impl Weights for i16 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn load16(p: *const i16) -> __m256i {
        _mm256_loadu_si256(p as *const __m256i)
    }
}

/// `R` rows against `V` vectors of eight columns of one panel, starting at vector `v0`: the
/// sums go to `sums[r][8·v0..8·(v0 + V)]`.
///
/// # Safety
/// AVX2; `rows` holds `R` rows of `pairs` int32 `rstride` apart; `w` the panel's
/// `pairs·NC·2` values; `v0 + V ≤ NC / 8`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn rows_by<T: Weights, const R: usize, const V: usize>(
    rows: *const i32,
    rstride: usize,
    w: *const T,
    pairs: usize,
    v0: usize,
    sums: &mut [[i32; NC]; MR],
) {
    let mut acc = [[_mm256_setzero_si256(); V]; R];
    let mut w = w.add(v0 * 16);
    for p in 0..pairs {
        let mut ws = [_mm256_setzero_si256(); V];
        for (v, x) in ws.iter_mut().enumerate() {
            *x = T::load16(w.add(16 * v));
        }
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let pair = _mm256_set1_epi32(rows.add(r * rstride + p).read());
            for (a, x) in acc_row.iter_mut().zip(&ws) {
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(pair, *x));
            }
        }
        w = w.add(NC * 2);
    }
    for (row, acc_row) in sums.iter_mut().zip(&acc) {
        for (v, x) in acc_row.iter().enumerate() {
            _mm256_storeu_si256(row.as_mut_ptr().add(8 * (v0 + v)) as *mut __m256i, *x);
        }
    }
}

/// Rows `0..block` of `rows` (pairs of centered activations, `rstride` int32 apart) against
/// one panel of packed weights.
///
/// # Safety
/// AVX2; `packed` holds the whole panel; `rows` holds `block ≤ MR` rows of `pairs` values.
#[target_feature(enable = "avx2")]
#[allow(private_bounds)]
pub(in crate::qlstm::int_gemm) unsafe fn panel_sums<T: Weights>(
    rows: &[i32],
    rstride: usize,
    block: usize,
    packed: &[T],
    panel: usize,
    pairs: usize,
    sums: &mut [[i32; NC]; MR],
) {
    assert!(block <= MR && rows.len() >= (block - 1) * rstride + pairs);
    let w = packed[panel * pairs * NC * 2..(panel + 1) * pairs * NC * 2].as_ptr();
    let a = rows.as_ptr();
    // Up to three rows take the panel's four vectors at once (twelve accumulators); more
    // rows take it in two halves of two vectors (up to twelve again).
    match block {
        1 => rows_by::<T, 1, 4>(a, rstride, w, pairs, 0, sums),
        2 => rows_by::<T, 2, 4>(a, rstride, w, pairs, 0, sums),
        3 => rows_by::<T, 3, 4>(a, rstride, w, pairs, 0, sums),
        4 => {
            rows_by::<T, 4, 2>(a, rstride, w, pairs, 0, sums);
            rows_by::<T, 4, 2>(a, rstride, w, pairs, 2, sums);
        }
        5 => {
            rows_by::<T, 5, 2>(a, rstride, w, pairs, 0, sums);
            rows_by::<T, 5, 2>(a, rstride, w, pairs, 2, sums);
        }
        _ => {
            rows_by::<T, 6, 2>(a, rstride, w, pairs, 0, sums);
            rows_by::<T, 6, 2>(a, rstride, w, pairs, 2, sums);
        }
    }
}

/// Thirty-two floats quantized as `kernels::quantize` does (a true division, round half to
/// even, `+ zp`, clamp to 0..255: NaN lands on 0 as with `as u8`), as bytes in order.
///
/// # Safety
/// AVX2; thirty-two values readable at `v`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn quantize32(v: *const f32, scale: __m256, zp: __m256) -> __m256i {
    let (lo, hi) = (_mm256_setzero_ps(), _mm256_set1_ps(255.0));
    let q = |i: usize| {
        let x = _mm256_div_ps(_mm256_loadu_ps(v.add(8 * i)), scale);
        let x = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
        // max first: a NaN operand yields the second one, 0.
        _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_add_ps(x, zp), lo), hi))
    };
    // The packs interleave the four vectors by 128-bit lane in groups of four values; the
    // permutation puts the groups back in order.
    let ab = _mm256_packs_epi32(q(0), q(1));
    let cd = _mm256_packs_epi32(q(2), q(3));
    let bytes = _mm256_packus_epi16(ab, cd);
    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// `out[i] = quantize(values[i], scale, zp)`, thirty-two at a time.
///
/// # Safety
/// AVX2; `out` is as long as `values`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_u8(values: &[f32], scale: f32, zp: u8, out: &mut [u8]) {
    debug_assert_eq!(values.len(), out.len());
    let (s, z) = (_mm256_set1_ps(scale), _mm256_set1_ps(zp as f32));
    let main = values.len() / 32 * 32;
    for i in (0..main).step_by(32) {
        let q = quantize32(values.as_ptr().add(i), s, z);
        _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut __m256i, q);
    }
    for (o, &v) in out[main..].iter_mut().zip(&values[main..]) {
        *o = crate::qlstm::kernels::quantize(v, scale, zp);
    }
}

/// `out[i] = quantize(values[i], scale, zp) − 128` (signed bytes), thirty-two at a time;
/// returns `Σ out`.
///
/// # Safety
/// AVX2; `out` is as long as `values`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_row(values: &[f32], scale: f32, zp: u8, out: &mut [i8]) -> i32 {
    debug_assert_eq!(values.len(), out.len());
    let (s, z) = (_mm256_set1_ps(scale), _mm256_set1_ps(zp as f32));
    let main = values.len() / 32 * 32;
    let mut total = _mm256_setzero_si256();
    for i in (0..main).step_by(32) {
        let q = quantize32(values.as_ptr().add(i), s, z);
        // Σ q in four 64-bit lanes (sums of absolute differences from 0).
        total = _mm256_add_epi64(total, _mm256_sad_epu8(q, _mm256_setzero_si256()));
        let signed = _mm256_xor_si256(q, _mm256_set1_epi8(-128));
        _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut __m256i, signed);
    }
    let mut lanes = [0i64; 4];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, total);
    let mut sum = (lanes.iter().sum::<i64>() - 128 * main as i64) as i32;
    for (o, &v) in out[main..].iter_mut().zip(&values[main..]) {
        *o = (crate::qlstm::kernels::quantize(v, scale, zp) ^ 0x80) as i8;
        sum += *o as i32;
    }
    sum
}

/// `(min, max)` of 0 and `values`, NaN skipped, as `kernels::quantization_params` folds them
/// (a zero's sign may differ, which changes neither the scale nor the zero point).
///
/// # Safety
/// AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn range(values: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let main = values.len() / 8 * 8;
    for i in (0..main).step_by(8) {
        // With a NaN in the first operand, min and max return the second.
        let v = _mm256_loadu_ps(values.as_ptr().add(i));
        lo = _mm256_min_ps(v, lo);
        hi = _mm256_max_ps(v, hi);
    }
    let (mut l, mut h) = ([0f32; 8], [0f32; 8]);
    _mm256_storeu_ps(l.as_mut_ptr(), lo);
    _mm256_storeu_ps(h.as_mut_ptr(), hi);
    l.into_iter()
        .chain(values[main..].iter().copied())
        .zip(h.into_iter().chain(values[main..].iter().copied()))
        .fold((0f32, 0f32), |(a, b), (x, y)| (a.min(x), b.max(y)))
}
