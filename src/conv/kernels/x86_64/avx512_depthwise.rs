//! The AVX-512 depthwise kernel: 16 channels in a vector, so every tap is one FMA by a vector
//! of the 16 channels' weights, at any stride (tract's kernel vectorizes along output columns
//! and walks a strided row one value at a time). The NCHW input rows a block of output rows
//! reads are transposed into channel-interleaved rows (16 × 16 in registers) in a small ring
//! that stays in L1, with the zero padding around them, and 16 output positions' sums are
//! transposed back and stored into the NCHW output, bias first and the fused clamp last.
//! (`avx2_depthwise` is the same on 8 channels; the interface is in `depthwise`.)

use super::depthwise::{DwBlock, DwRows};
use std::arch::x86_64::*;

/// Channels per block: one vector.
const LANES: usize = 16;

/// Transposes 16 vectors: lane `j` of `r[i]` goes to lane `i` of `r[j]`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn transpose16(r: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // Per group of 4 rows, u[4g + m] holds, in its 128-bit lane k, the group's 4 rows at
    // column 4k + m.
    let mut u = [_mm512_setzero_ps(); 16];
    let pd = _mm512_castps_pd;
    let ps = _mm512_castpd_ps;
    for g in 0..4 {
        let (t0, t1, t2, t3) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = ps(_mm512_unpacklo_pd(pd(t0), pd(t2)));
        u[4 * g + 1] = ps(_mm512_unpackhi_pd(pd(t0), pd(t2)));
        u[4 * g + 2] = ps(_mm512_unpacklo_pd(pd(t1), pd(t3)));
        u[4 * g + 3] = ps(_mm512_unpackhi_pd(pd(t1), pd(t3)));
    }
    for m in 0..4 {
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[m], u[4 + m]);
        let v1 = _mm512_shuffle_f32x4::<0xdd>(u[m], u[4 + m]);
        let w0 = _mm512_shuffle_f32x4::<0x88>(u[8 + m], u[12 + m]);
        let w1 = _mm512_shuffle_f32x4::<0xdd>(u[8 + m], u[12 + m]);
        r[m] = _mm512_shuffle_f32x4::<0x88>(v0, w0);
        r[4 + m] = _mm512_shuffle_f32x4::<0x88>(v1, w1);
        r[8 + m] = _mm512_shuffle_f32x4::<0xdd>(v0, w0);
        r[12 + m] = _mm512_shuffle_f32x4::<0xdd>(v1, w1);
    }
}

fn mask(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Transposes input row `iy` of the block into `dst` (`wp` positions × 16), from column
/// `pl`; the columns outside the image are left as they are (zero).
#[target_feature(enable = "avx512f")]
unsafe fn fill_row(b: &DwBlock, iy: usize, dst: *mut f32) {
    let g = &b.geo;
    let plane = g.h * g.w;
    let src = b.x.add(iy * g.w);
    for x0 in (0..g.w).step_by(LANES) {
        let n = LANES.min(g.w - x0);
        let m = mask(n);
        let mut r = [_mm512_setzero_ps(); 16];
        for (c, r) in r.iter_mut().enumerate().take(b.channels) {
            *r = _mm512_maskz_loadu_ps(m, src.add(c * plane + x0));
        }
        transpose16(&mut r);
        for (j, r) in r.iter().enumerate().take(n) {
            _mm512_storeu_ps(dst.add((g.pl + x0 + j) * LANES), *r);
        }
    }
}

/// The block's whole output.
///
/// # Safety
/// The CPU runs AVX-512F; `b` describes readable input planes and writable output planes of
/// its geometry, `rows` was made for that geometry and 16 lanes; `1 <= channels <= 16`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn depthwise_block(b: &DwBlock, rows: &mut DwRows) {
    let g = &b.geo;
    let (taps, oplane) = (g.kh * g.kw, g.oh * g.ow);
    rows.held.iter_mut().for_each(|h| *h = usize::MAX);
    let bias = _mm512_loadu_ps(b.bias);
    let mut row_ptr = vec![std::ptr::null::<f32>(); g.kh];
    for oy in 0..g.oh {
        for (ky, p) in row_ptr.iter_mut().enumerate() {
            let iy = (oy * g.sh + ky * g.dh).wrapping_sub(g.pt);
            // SAFETY: `rows` holds rows of `wp · 16` floats, what `fill_row` writes.
            *p = rows.row(iy, g.h, |dst| unsafe { fill_row(b, iy, dst) });
        }
        for ox0 in (0..g.ow).step_by(LANES) {
            let mut acc = [bias; 16];
            for t in 0..taps {
                let (ky, kx) = (t / g.kw, t % g.kw);
                let wv = _mm512_loadu_ps(b.w.add(t * LANES));
                let x = row_ptr[ky].add((ox0 * g.sw + kx * g.dw) * LANES);
                for (j, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(_mm512_loadu_ps(x.add(j * g.sw * LANES)), wv, *acc);
                }
            }
            clamp_tile!(b.clamp, _mm512_set1_ps, _mm512_max_ps, _mm512_min_ps; acc);
            transpose16(&mut acc);
            let m = mask(g.ow - ox0);
            let out = b.out.add(oy * g.ow + ox0);
            for (c, acc) in acc.iter().enumerate().take(b.channels) {
                _mm512_mask_storeu_ps(out.add(c * oplane), m, *acc);
            }
        }
    }
}
