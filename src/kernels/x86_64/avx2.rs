//! The AVX2+FMA kernels: the packed product for f32 and f64 (6-row tiles of two-vector
//! panels) and the f32 activations compiled 8 wide.

use super::{format_code, BF16, F16, FULL};
use crate::kernels::activations;
use crate::kernels::RawGemm;

/// One AVX2+FMA kernel per element type: `$lanes` elements per vector, panels of two.
/// `$widen` turns `$lanes` 16-bit weights into a vector of `$t`.
macro_rules! avx2_gemm {
    ($modname:ident, $t:ty, $v:ty, $lanes:expr, $load:ident, $store:ident, $bcast:ident, $fma:ident, $zero:ident, $widen:ident) => {
        pub(in crate::kernels) mod $modname {
            use super::{format_code, RawGemm, BF16, F16, FULL};
            use std::arch::x86_64::*;

            const L: usize = $lanes;
            const NR: usize = 2 * L;
            /// Rows per tile: 6 × 2 accumulators, 2 weight vectors and a broadcast fit
            /// the 16 vector registers.
            const MR: usize = 6;

            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn load_part(p: *const $t, w: usize) -> [$v; 2] {
                if w == NR {
                    [$load(p), $load(p.add(L))]
                } else {
                    let mut tmp = [0 as $t; NR];
                    std::ptr::copy_nonoverlapping(p, tmp.as_mut_ptr(), w);
                    [$load(tmp.as_ptr()), $load(tmp.as_ptr().add(L))]
                }
            }

            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn store_part(p: *mut $t, w: usize, v: [$v; 2]) {
                if w == NR {
                    $store(p, v[0]);
                    $store(p.add(L), v[1]);
                } else {
                    let mut tmp = [0 as $t; NR];
                    $store(tmp.as_mut_ptr(), v[0]);
                    $store(tmp.as_mut_ptr().add(L), v[1]);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), p, w);
                }
            }

            /// One panel row (element `i` of the panels) as two vectors.
            #[inline(always)]
            unsafe fn load_b<const F: u8>(b: *const $t, i: usize) -> [$v; 2] {
                if F == FULL {
                    [$load(b.add(i)), $load(b.add(i + L))]
                } else {
                    let h = b as *const u16;
                    [
                        super::$widen::<F>(h.add(i)),
                        super::$widen::<F>(h.add(i + L)),
                    ]
                }
            }

            /// `R` rows × one panel (`w` valid columns).
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn tile<const R: usize, const F: u8>(g: &RawGemm<$t>, r0: usize, panel: usize) {
                let col = panel * NR;
                let w = NR.min(g.n - col);
                let mut acc = [[$zero(); 2]; R];
                if !g.init.is_null() {
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc = load_part(g.init.add((r0 + r) * g.ldi + col), w);
                    }
                }
                let a = g.a.add(r0 * g.lda);
                let base = panel * g.k * NR;
                for kk in 0..g.k {
                    let [b0, b1] = load_b::<F>(g.b, base + kk * NR);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let x = $bcast(&*a.add(r * g.lda + kk));
                        acc[0] = $fma(x, b0, acc[0]);
                        acc[1] = $fma(x, b1, acc[1]);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    store_part(g.c.add((r0 + r) * g.ldc + col), w, *acc);
                }
            }

            /// One row × four full panels: eight independent accumulator chains, for the
            /// batch-1 recurrent product.
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn row_x4<const F: u8>(g: &RawGemm<$t>, panel: usize) {
                let col = panel * NR;
                let mut acc = [[$zero(); 2]; 4];
                if !g.init.is_null() {
                    for (q, acc) in acc.iter_mut().enumerate() {
                        *acc = load_part(g.init.add(col + q * NR), NR);
                    }
                }
                let stride = g.k * NR;
                let base = panel * stride;
                for kk in 0..g.k {
                    let x = $bcast(&*g.a.add(kk));
                    for (q, acc) in acc.iter_mut().enumerate() {
                        let [b0, b1] = load_b::<F>(g.b, base + q * stride + kk * NR);
                        acc[0] = $fma(x, b0, acc[0]);
                        acc[1] = $fma(x, b1, acc[1]);
                    }
                }
                for (q, acc) in acc.iter().enumerate() {
                    store_part(g.c.add(col + q * NR), NR, *acc);
                }
            }

            #[target_feature(enable = "avx2,fma,f16c")]
            pub(in crate::kernels) unsafe fn gemm(g: RawGemm<$t>) {
                match format_code(g.format) {
                    FULL => gemm_as::<FULL>(g),
                    BF16 => gemm_as::<BF16>(g),
                    _ => gemm_as::<F16>(g),
                }
            }

            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn gemm_as<const F: u8>(g: RawGemm<$t>) {
                let panels = g.n.div_ceil(NR);
                if g.m == 1 {
                    // Groups of four full panels, then single panels; `reverse` walks
                    // the same groups backwards.
                    let quads = g.n / NR / 4;
                    let one = |i: usize| {
                        if i < quads {
                            row_x4::<F>(&g, 4 * i)
                        } else {
                            tile::<1, F>(&g, 0, 4 * quads + (i - quads))
                        }
                    };
                    let groups = quads + (panels - 4 * quads);
                    for i in 0..groups {
                        one(if g.reverse { groups - 1 - i } else { i });
                    }
                    return;
                }
                // Blocks of rows small enough to stay in L2 while every panel passes
                // over them (the input projection has T·batch rows); a panel stays in
                // L1 while the block's tiles use it.
                let block =
                    (((128 * 1024) / (g.k.max(1) * std::mem::size_of::<$t>())) / MR * MR).max(MR);
                let mut r0 = 0;
                while r0 < g.m {
                    let end = (r0 + block).min(g.m);
                    for i in 0..panels {
                        let panel = if g.reverse { panels - 1 - i } else { i };
                        let mut r = r0;
                        while r < end {
                            let rows = MR.min(end - r);
                            match rows {
                                6 => tile::<6, F>(&g, r, panel),
                                5 => tile::<5, F>(&g, r, panel),
                                4 => tile::<4, F>(&g, r, panel),
                                3 => tile::<3, F>(&g, r, panel),
                                2 => tile::<2, F>(&g, r, panel),
                                _ => tile::<1, F>(&g, r, panel),
                            }
                            r += rows;
                        }
                    }
                    r0 = end;
                }
            }
        }
    };
}

/// Eight bfloat16 ([`BF16`]) or IEEE half weights as f32: bfloat16 is f32's top half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn widen8_ps<const F: u8>(p: *const u16) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let h = _mm_loadu_si128(p as *const __m128i);
    if F == BF16 {
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
    } else {
        _mm256_cvtph_ps(h)
    }
}

/// Four 16-bit weights as f64 (through f32, exactly).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn widen4_pd<const F: u8>(p: *const u16) -> std::arch::x86_64::__m256d {
    use std::arch::x86_64::*;
    let h = _mm_loadl_epi64(p as *const __m128i);
    let f = if F == BF16 {
        _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(h), 16))
    } else {
        _mm_cvtph_ps(h)
    };
    _mm256_cvtps_pd(f)
}

avx2_gemm!(
    f32k,
    f32,
    __m256,
    8,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_broadcast_ss,
    _mm256_fmadd_ps,
    _mm256_setzero_ps,
    widen8_ps
);
avx2_gemm!(
    f64k,
    f64,
    __m256d,
    4,
    _mm256_loadu_pd,
    _mm256_storeu_pd,
    _mm256_broadcast_sd,
    _mm256_fmadd_pd,
    _mm256_setzero_pd,
    widen4_pd
);

/// The portable loops, compiled with AVX2 (or AVX-512) enabled so they vectorize 8 (or
/// 16) wide. No FMA contraction happens (Rust does not fuse `a * b + c`), so the results
/// are the same bits as the portable build's.
#[target_feature(enable = "avx2,fma")]
pub(in crate::kernels) unsafe fn sigmoid_slice_f32(xs: &mut [f32]) {
    activations::sigmoid_slice_f32(xs)
}

#[target_feature(enable = "avx2,fma")]
pub(in crate::kernels) unsafe fn tanh_slice_f32(xs: &mut [f32]) {
    activations::tanh_slice_f32(xs)
}

/// The fused LSTM row ([`activations::lstm_row_f32`]) compiled for this set.
#[target_feature(enable = "avx2,fma")]
pub(in crate::kernels) unsafe fn lstm_row_f32(r: &activations::LstmRow) {
    activations::lstm_row_f32(r)
}
