//! The AVX2+FMA depthwise kernel (CPUs without AVX-512, such as Zen 3): `avx512_depthwise`
//! on 8 channels in a ymm vector, so every tap is one FMA by a vector of the 8 channels'
//! weights at any stride. The NCHW input rows a block of output rows reads are transposed
//! into channel-interleaved rows (8 × 8 in registers) in a small ring that stays in L1, with
//! the zero padding around them, and 8 output positions' sums (8 accumulators: enough FMAs
//! in flight for two FMA pipes of 4 cycles) are transposed back and stored into the NCHW
//! output, bias first and the fused clamp last: the same sums in the same order as the
//! AVX-512 kernel, so the same bits.

use super::depthwise::{DwBlock, DwRows};
use std::arch::x86_64::*;

/// Channels per block: one vector.
const LANES: usize = 8;

/// Transposes 8 vectors: lane `j` of `r[i]` goes to lane `i` of `r[j]`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn transpose8(r: &mut [__m256; 8]) {
    // t[2i], t[2i + 1]: rows 2i and 2i + 1 interleaved, columns {0, 1 | 4, 5} and {2, 3 | 6, 7}.
    let mut t = [_mm256_setzero_ps(); 8];
    for i in 0..4 {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4g + m]: rows 4g .. 4g + 4 at column m in the low 128 bits, m + 4 in the high ones.
    let mut u = [_mm256_setzero_ps(); 8];
    for g in 0..2 {
        let (t0, t1, t2, t3) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = _mm256_shuffle_ps::<0x44>(t0, t2);
        u[4 * g + 1] = _mm256_shuffle_ps::<0xee>(t0, t2);
        u[4 * g + 2] = _mm256_shuffle_ps::<0x44>(t1, t3);
        u[4 * g + 3] = _mm256_shuffle_ps::<0xee>(t1, t3);
    }
    for m in 0..4 {
        r[m] = _mm256_permute2f128_ps::<0x20>(u[m], u[4 + m]);
        r[4 + m] = _mm256_permute2f128_ps::<0x31>(u[m], u[4 + m]);
    }
}

/// Lanes `0 .. n` set (the sign bit `maskload`/`maskstore` read).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn mask(n: usize) -> __m256i {
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(LANES) as i32), lanes)
}

/// Transposes input row `iy` of the block into `dst` (`wp` positions × 8), from column
/// `pl`; the columns outside the image are left as they are (zero).
#[target_feature(enable = "avx2,fma")]
unsafe fn fill_row(b: &DwBlock, iy: usize, dst: *mut f32) {
    let g = &b.geo;
    let plane = g.h * g.w;
    let src = b.x.add(iy * g.w);
    for x0 in (0..g.w).step_by(LANES) {
        let n = LANES.min(g.w - x0);
        let m = mask(n);
        let mut r = [_mm256_setzero_ps(); 8];
        for (c, r) in r.iter_mut().enumerate().take(b.channels) {
            let p = src.add(c * plane + x0);
            *r = if n == LANES {
                _mm256_loadu_ps(p)
            } else {
                _mm256_maskload_ps(p, m)
            };
        }
        transpose8(&mut r);
        for (j, r) in r.iter().enumerate().take(n) {
            _mm256_storeu_ps(dst.add((g.pl + x0 + j) * LANES), *r);
        }
    }
}

/// The block's whole output.
///
/// # Safety
/// The CPU runs AVX2 and FMA; `b` describes readable input planes and writable output planes
/// of its geometry, `rows` was made for that geometry and 8 lanes; `1 <= channels <= 8`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn depthwise_block(b: &DwBlock, rows: &mut DwRows) {
    let g = &b.geo;
    let (taps, oplane) = (g.kh * g.kw, g.oh * g.ow);
    rows.held.iter_mut().for_each(|h| *h = usize::MAX);
    let bias = _mm256_loadu_ps(b.bias);
    let mut row_ptr = vec![std::ptr::null::<f32>(); g.kh];
    for oy in 0..g.oh {
        for (ky, p) in row_ptr.iter_mut().enumerate() {
            let iy = (oy * g.sh + ky * g.dh).wrapping_sub(g.pt);
            // SAFETY: `rows` holds rows of `wp · 8` floats, what `fill_row` writes.
            *p = rows.row(iy, g.h, |dst| unsafe { fill_row(b, iy, dst) });
        }
        for ox0 in (0..g.ow).step_by(LANES) {
            let mut acc = [bias; 8];
            for t in 0..taps {
                let (ky, kx) = (t / g.kw, t % g.kw);
                let wv = _mm256_loadu_ps(b.w.add(t * LANES));
                let x = row_ptr[ky].add((ox0 * g.sw + kx * g.dw) * LANES);
                for (j, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(j * g.sw * LANES)), wv, *acc);
                }
            }
            clamp_tile!(b.clamp, _mm256_set1_ps, _mm256_max_ps, _mm256_min_ps; acc);
            transpose8(&mut acc);
            let n = g.ow - ox0;
            let out = b.out.add(oy * g.ow + ox0);
            if n >= LANES {
                for (c, acc) in acc.iter().enumerate().take(b.channels) {
                    _mm256_storeu_ps(out.add(c * oplane), *acc);
                }
            } else {
                let m = mask(n);
                for (c, acc) in acc.iter().enumerate().take(b.channels) {
                    _mm256_maskstore_ps(out.add(c * oplane), m, *acc);
                }
            }
        }
    }
}
