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
