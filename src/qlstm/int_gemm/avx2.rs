//! The AVX2 panel sums of the quantized product: `vpmaddwd` on pairs of 16-bit values, the
//! 8-bit weights widened in registers.

use std::arch::x86_64::*;

use super::generic::a_pair;
use super::{QuantRows, MR, NC};

/// Eight columns' pairs of 8-bit weights, widened to 16 bits.
macro_rules! load_i8 {
    ($p:expr) => {
        _mm256_cvtepi8_epi16(_mm_loadu_si128($p as *const __m128i))
    };
}

/// Eight columns' pairs of 16-bit weights.
macro_rules! load_i16 {
    ($p:expr) => {
        _mm256_loadu_si256($p as *const __m256i)
    };
}

macro_rules! panel_kernel {
    ($name:ident, $elem:ty, $load:ident) => {
        /// # Safety
        /// AVX2; `packed` holds the whole panel; `a` holds rows `r0..r0 + block`.
        #[target_feature(enable = "avx2")]
        pub(in crate::qlstm::int_gemm) unsafe fn $name(
            a: &QuantRows,
            r0: usize,
            block: usize,
            packed: &[$elem],
            panel: usize,
            pairs: usize,
            sums: &mut [[i32; NC]; MR],
        ) {
            let mut acc = [[_mm256_setzero_si256(); NC / 8]; MR];
            let base = packed[panel * pairs * NC * 2..(panel + 1) * pairs * NC * 2].as_ptr();
            for p in 0..pairs {
                let w = base.add(p * NC * 2);
                let ws = [
                    $load!(w),
                    $load!(w.add(16)),
                    $load!(w.add(32)),
                    $load!(w.add(48)),
                ];
                for (i, acc_row) in acc.iter_mut().enumerate().take(block) {
                    let (a0, a1) = a_pair(a, r0 + i, p);
                    let pair = ((a1 as u16 as u32) << 16 | a0 as u16 as u32) as i32;
                    let pair = _mm256_set1_epi32(pair);
                    for (v, w) in acc_row.iter_mut().zip(&ws) {
                        *v = _mm256_add_epi32(*v, _mm256_madd_epi16(pair, *w));
                    }
                }
            }
            for (row, acc_row) in sums.iter_mut().zip(&acc).take(block) {
                for (chunk, v) in row.chunks_exact_mut(8).zip(acc_row) {
                    _mm256_storeu_si256(chunk.as_mut_ptr() as *mut __m256i, *v);
                }
            }
        }
    };
}

panel_kernel!(panel_sums_i8, i8, load_i8);
panel_kernel!(panel_sums_i16, i16, load_i16);
