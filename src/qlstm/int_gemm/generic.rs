//! The portable panel sums of the quantized product: plain wrapping int32 arithmetic.

use super::{QuantRows, MR, NC};

/// The pair `a[r, 2p] − a_zp`, `a[r, 2p + 1] − a_zp` (0 past the end of the row).
#[inline(always)]
pub(super) fn a_pair(a: &QuantRows, r: usize, p: usize) -> (i16, i16) {
    (a.centered(r, 2 * p), a.centered(r, 2 * p + 1))
}

pub(super) fn portable_panel_sums<W: Copy + Into<i32>>(
    a: &QuantRows,
    r0: usize,
    block: usize,
    packed: &[W],
    panel: usize,
    pairs: usize,
    sums: &mut [[i32; NC]; MR],
) {
    for row in sums.iter_mut().take(block) {
        row.fill(0);
    }
    for p in 0..pairs {
        let w = &packed[(panel * pairs + p) * NC * 2..(panel * pairs + p + 1) * NC * 2];
        for (i, row) in sums.iter_mut().take(block).enumerate() {
            let (a0, a1) = a_pair(a, r0 + i, p);
            for (c, s) in row.iter_mut().enumerate() {
                let pair = a0 as i32 * w[2 * c].into() + a1 as i32 * w[2 * c + 1].into();
                *s = s.wrapping_add(pair);
            }
        }
    }
}

/// `dst[2c] = first[c] − zp`, `dst[2c + 1] = second[c] − zp` for the first `cols` columns
/// (0 for a missing row: the padding of an odd k), sixteen columns at a time on x86.
pub(super) fn interleave2(
    first: Option<&[u8]>,
    second: Option<&[u8]>,
    cols: usize,
    zp: u8,
    dst: &mut [i16],
) {
    assert!(dst.len() >= 2 * cols);
    let mut c = 0;
    #[cfg(target_arch = "x86_64")]
    if let (Some(r0), Some(r1)) = (first, second) {
        use std::arch::x86_64::*;
        assert!(r0.len() >= cols && r1.len() >= cols);
        while c + 16 <= cols {
            // SAFETY: SSE2 is part of x86_64; 16 bytes read from each row at c + 16 ≤ cols,
            // 32 values written at 2c + 32 ≤ 2·cols ≤ dst.len().
            unsafe {
                let z = _mm_setzero_si128();
                let zps = _mm_set1_epi16(zp as i16);
                let a = _mm_loadu_si128(r0.as_ptr().add(c) as *const __m128i);
                let b = _mm_loadu_si128(r1.as_ptr().add(c) as *const __m128i);
                let (a_lo, a_hi) = (_mm_unpacklo_epi8(a, z), _mm_unpackhi_epi8(a, z));
                let (b_lo, b_hi) = (_mm_unpacklo_epi8(b, z), _mm_unpackhi_epi8(b, z));
                let (a_lo, a_hi) = (_mm_sub_epi16(a_lo, zps), _mm_sub_epi16(a_hi, zps));
                let (b_lo, b_hi) = (_mm_sub_epi16(b_lo, zps), _mm_sub_epi16(b_hi, zps));
                let out = dst.as_mut_ptr().add(2 * c) as *mut __m128i;
                _mm_storeu_si128(out, _mm_unpacklo_epi16(a_lo, b_lo));
                _mm_storeu_si128(out.add(1), _mm_unpackhi_epi16(a_lo, b_lo));
                _mm_storeu_si128(out.add(2), _mm_unpacklo_epi16(a_hi, b_hi));
                _mm_storeu_si128(out.add(3), _mm_unpackhi_epi16(a_hi, b_hi));
            }
            c += 16;
        }
    }
    for c in c..cols {
        for (j, row) in [first, second].iter().enumerate() {
            dst[2 * c + j] = row.map_or(0, |r| r[c] as i16 - zp as i16);
        }
    }
}
