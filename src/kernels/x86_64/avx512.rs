//! The AVX-512 kernels: the packed product for f32 and f64 (a panel row is one vector; tiles
//! of rows × panels) and the f32 activations compiled 16 wide.

use super::avx2::widen8_ps;
use super::{format_code, BF16, F16, FULL};
use crate::kernels::activations;
use crate::kernels::RawGemm;

/// Sixteen 16-bit weights as f32.
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
unsafe fn widen16_ps<const F: u8>(p: *const u16) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let h = _mm256_loadu_si256(p as *const __m256i);
    if F == BF16 {
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
    } else {
        _mm512_cvtph_ps(h)
    }
}

/// Eight 16-bit weights as f64.
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
unsafe fn widen8_pd<const F: u8>(p: *const u16) -> std::arch::x86_64::__m512d {
    std::arch::x86_64::_mm512_cvtps_pd(widen8_ps::<F>(p))
}

/// One AVX-512 kernel per element type: a panel row (16 f32 or 8 f64) is one vector.
macro_rules! avx512_gemm {
    ($modname:ident, $t:ty, $v:ty, $mask:ty, $lanes:expr, $load:ident, $maskz_load:ident, $store:ident, $mask_store:ident, $set1:ident, $fma:ident, $zero:ident, $widen:ident) => {
        pub(in crate::kernels) mod $modname {
            use super::{format_code, RawGemm, BF16, F16, FULL};
            use std::arch::x86_64::*;

            /// Columns per panel: one vector.
            const NR: usize = $lanes;
            /// Rows × panels per tile: 8 × 3 accumulators, 3 weight vectors and a
            /// broadcast take 28 of the 32 registers, and each k step's 24 FMAs need
            /// 11 loads.
            const MR: usize = 8;
            const NP: usize = 3;
            /// Panels per pass of the one-row product (batch 1): eight independent
            /// chains cover the FMA latency, eight weight streams at once.
            const NP1: usize = 8;

            #[inline]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
            unsafe fn load(p: *const $t, w: usize) -> $v {
                if w >= NR {
                    $load(p)
                } else {
                    $maskz_load(((1u32 << w) - 1) as $mask, p)
                }
            }

            #[inline]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
            unsafe fn store(p: *mut $t, w: usize, v: $v) {
                if w >= NR {
                    $store(p, v)
                } else {
                    $mask_store(p, ((1u32 << w) - 1) as $mask, v)
                }
            }

            /// One panel row (element `i` of the panels) as a vector.
            #[inline(always)]
            unsafe fn load_b<const F: u8>(b: *const $t, i: usize) -> $v {
                if F == FULL {
                    $load(b.add(i))
                } else {
                    super::$widen::<F>((b as *const u16).add(i))
                }
            }

            /// `R` rows × `P` panels from `panel` (the last of them possibly partial).
            #[inline]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
            unsafe fn tile<const R: usize, const P: usize, const F: u8>(
                g: &RawGemm<$t>,
                r0: usize,
                panel: usize,
            ) {
                let col = panel * NR;
                let width = |p: usize| g.n - (col + p * NR);
                let mut acc = [[$zero(); P]; R];
                if !g.init.is_null() {
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let ip = g.init.add((r0 + r) * g.ldi + col);
                        for (p, acc) in acc.iter_mut().enumerate() {
                            *acc = load(ip.add(p * NR), width(p));
                        }
                    }
                }
                let stride = g.k * NR;
                let base = panel * stride;
                // One pointer per row of a and per panel, each indexed by k, so the loop
                // adds nothing but k to the addresses (integer work would take the FMA
                // ports' slots).
                let a: [*const $t; R] = std::array::from_fn(|r| g.a.add((r0 + r) * g.lda));
                let bp: [*const $t; P] = std::array::from_fn(|p| {
                    if F == FULL {
                        g.b.add(base + p * stride)
                    } else {
                        (g.b as *const u16).add(base + p * stride) as *const $t
                    }
                });
                // One k step: every row's value times every panel's row of weights.
                let step = |acc: &mut [[$v; P]; R], kk: usize| {
                    let mut bv = [$zero(); P];
                    for (bv, &bp) in bv.iter_mut().zip(&bp) {
                        *bv = load_b::<F>(bp, kk * NR);
                    }
                    for (acc, &a) in acc.iter_mut().zip(&a) {
                        let x = $set1(*a.add(kk));
                        for (acc, &bv) in acc.iter_mut().zip(&bv) {
                            *acc = $fma(x, bv, *acc);
                        }
                    }
                };
                // Four steps per pass (in order): the loop's own work is spread over
                // more FMAs (measured: 158 → 174 GFLOP/s for an 8 × 3 tile at k = 256).
                let mut kk = 0;
                while kk + 4 <= g.k {
                    step(&mut acc, kk);
                    step(&mut acc, kk + 1);
                    step(&mut acc, kk + 2);
                    step(&mut acc, kk + 3);
                    kk += 4;
                }
                while kk < g.k {
                    step(&mut acc, kk);
                    kk += 1;
                }
                for (r, acc) in acc.iter().enumerate() {
                    let cp = g.c.add((r0 + r) * g.ldc + col);
                    for (p, &acc) in acc.iter().enumerate() {
                        store(cp.add(p * NR), width(p), acc);
                    }
                }
            }

            /// One tile of `rows` rows × `np` panels.
            #[inline]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
            unsafe fn tile_of<const F: u8>(
                g: &RawGemm<$t>,
                r0: usize,
                panel: usize,
                rows: usize,
                np: usize,
            ) {
                macro_rules! by_rows {
                    ($p:literal) => {
                        match rows {
                            12 => tile::<12, $p, F>(g, r0, panel),
                            11 => tile::<11, $p, F>(g, r0, panel),
                            10 => tile::<10, $p, F>(g, r0, panel),
                            9 => tile::<9, $p, F>(g, r0, panel),
                            8 => tile::<8, $p, F>(g, r0, panel),
                            7 => tile::<7, $p, F>(g, r0, panel),
                            6 => tile::<6, $p, F>(g, r0, panel),
                            5 => tile::<5, $p, F>(g, r0, panel),
                            4 => tile::<4, $p, F>(g, r0, panel),
                            3 => tile::<3, $p, F>(g, r0, panel),
                            2 => tile::<2, $p, F>(g, r0, panel),
                            _ => tile::<1, $p, F>(g, r0, panel),
                        }
                    };
                }
                match np {
                    4 => by_rows!(4),
                    3 => by_rows!(3),
                    2 => by_rows!(2),
                    _ => by_rows!(1),
                }
            }

            #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
            pub(in crate::kernels) unsafe fn gemm(g: RawGemm<$t>) {
                match format_code(g.format) {
                    FULL => gemm_as::<FULL>(g),
                    BF16 => gemm_as::<BF16>(g),
                    _ => gemm_as::<F16>(g),
                }
            }

            #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
            unsafe fn gemm_as<const F: u8>(g: RawGemm<$t>) {
                let panels = g.n.div_ceil(NR);
                if g.m == 1 {
                    // Groups of NP1 panels, then one of 4, then one of up to 3;
                    // `reverse` walks the same groups backwards.
                    let full = panels / NP1;
                    let mut tail = [(0, 0); 2];
                    let mut tails = 0;
                    let mut p = full * NP1;
                    if p + 4 <= panels {
                        tail[tails] = (p, 4);
                        tails += 1;
                        p += 4;
                    }
                    if p < panels {
                        tail[tails] = (p, panels - p);
                        tails += 1;
                    }
                    let groups = full + tails;
                    for i in 0..groups {
                        let i = if g.reverse { groups - 1 - i } else { i };
                        if i < full {
                            tile::<1, NP1, F>(&g, 0, i * NP1);
                        } else {
                            match tail[i - full] {
                                (p, 4) => tile::<1, 4, F>(&g, 0, p),
                                (p, np) => tile_of::<F>(&g, 0, p, 1, np),
                            }
                        }
                    }
                    return;
                }
                // Blocks of rows small enough to stay in L2 while every panel passes
                // over them (the input projection has T·batch rows).
                let block =
                    (((128 * 1024) / (g.k.max(1) * std::mem::size_of::<$t>())) / MR * MR).max(MR);
                let groups = panels.div_ceil(NP);
                let mut r0 = 0;
                while r0 < g.m {
                    let end = (r0 + block).min(g.m);
                    for i in 0..groups {
                        let i = if g.reverse { groups - 1 - i } else { i };
                        let panel = i * NP;
                        let np = NP.min(panels - panel);
                        let mut r = r0;
                        while r < end {
                            let rows = MR.min(end - r);
                            tile_of::<F>(&g, r, panel, rows, np);
                            r += rows;
                        }
                    }
                    r0 = end;
                }
            }
        }
    };
}

avx512_gemm!(
    f32z,
    f32,
    __m512,
    __mmask16,
    16,
    _mm512_loadu_ps,
    _mm512_maskz_loadu_ps,
    _mm512_storeu_ps,
    _mm512_mask_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_setzero_ps,
    widen16_ps
);
avx512_gemm!(
    f64z,
    f64,
    __m512d,
    __mmask8,
    8,
    _mm512_loadu_pd,
    _mm512_maskz_loadu_pd,
    _mm512_storeu_pd,
    _mm512_mask_storeu_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_setzero_pd,
    widen8_pd
);

/// The portable loops compiled with AVX-512 enabled (see the AVX2 ones).
#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
pub(in crate::kernels) unsafe fn sigmoid_slice_f32(xs: &mut [f32]) {
    activations::sigmoid_slice_f32(xs)
}

#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
pub(in crate::kernels) unsafe fn tanh_slice_f32(xs: &mut [f32]) {
    activations::tanh_slice_f32(xs)
}

/// The fused LSTM row ([`activations::lstm_row_f32`]) compiled for this set.
#[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
pub(in crate::kernels) unsafe fn lstm_row_f32(r: &activations::LstmRow) {
    activations::lstm_row_f32(r)
}
