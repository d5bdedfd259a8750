//! The AVX-512 kernels: pixel tiles of 8 channels × 2 vectors of 16 (from packed panels or
//! straight from the input), channel tiles of 16, row tiles of 8 channels × 2 rows × 16
//! positions (pooled), and the packing of 32-wide panels.

use crate::conv::kernels::packing::{spread_even, Direct, Panel, Patches};
use crate::conv::kernels::{RowTile, Tile};
use std::arch::x86_64::*;

/// A channel tile: 16 channels in a vector, `NP` positions, written with a scatter
/// (channel `r` of position `j` to `c + r·ldc + j`).
#[target_feature(enable = "avx512f")]
pub(in crate::conv::kernels) unsafe fn chan512<const NP: usize>(t: &Tile) {
    let mut acc = [_mm512_loadu_ps(t.bias); NP];
    let mut w = t.w;
    let mut x = t.x;
    for _ in 0..t.k {
        let wv = _mm512_loadu_ps(w);
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = _mm512_fmadd_ps(wv, _mm512_set1_ps(*x.add(j)), *acc);
        }
        w = w.add(t.ldw);
        x = x.add(t.ldx);
    }
    clamp_tile!(t.clamp, _mm512_set1_ps, _mm512_max_ps, _mm512_min_ps; acc);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let index = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(t.ldc as i32));
    let mask = if t.rows >= 16 {
        0xffff
    } else {
        ((1u32 << t.rows) - 1) as __mmask16
    };
    for (j, acc) in acc.iter().enumerate() {
        _mm512_mask_i32scatter_ps::<4>(t.c.add(j), mask, index, *acc);
    }
}

#[target_feature(enable = "avx512f")]
pub(in crate::conv::kernels) unsafe fn tile512<const R: usize>(t: &Tile) {
    let (mut acc0, mut acc1) = bias512::<R>(t);
    let mut w = t.w;
    let mut x = t.x;
    for _ in 0..t.k {
        let x0 = _mm512_loadu_ps(x);
        let x1 = _mm512_loadu_ps(x.add(16));
        fma512::<R>(w, x0, x1, &mut acc0, &mut acc1);
        w = w.add(t.ldw);
        x = x.add(t.ldx);
    }
    store512::<R>(t, acc0, acc1);
}

/// [`tile512`] reading the input itself instead of a packed panel: each half of the
/// panel lies in one output row, so a row of patches is one masked load at stride 1, or
/// the even lanes of two at stride 2 (`SW`). `FULL` (stride 1, every mask whole) loads
/// without masks: a masked load costs Zen 4 more than a plain one.
#[target_feature(enable = "avx512f")]
pub(in crate::conv::kernels) unsafe fn direct512<
    const R: usize,
    const SW: usize,
    const FULL: bool,
>(
    t: &Tile,
    d: &Direct,
) {
    let (mut acc0, mut acc1) = bias512::<R>(t);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let mut w = t.w;
    let taps = &d.taps[..d.tap_count];
    for ci in 0..d.channels {
        let image = d.image.wrapping_add(ci * d.plane);
        for tap in taps {
            let p0 = image.wrapping_offset(d.base[0] + tap.offset);
            let p1 = image.wrapping_offset(d.base[1] + tap.offset);
            let (x0, x1) = if FULL {
                (_mm512_loadu_ps(p0), _mm512_loadu_ps(p1))
            } else if SW == 1 {
                (
                    _mm512_maskz_loadu_ps(tap.masks[0], p0),
                    _mm512_maskz_loadu_ps(tap.masks[1], p1),
                )
            } else {
                let a = _mm512_maskz_loadu_ps(tap.masks[0], p0);
                let b = _mm512_maskz_loadu_ps(tap.masks[1], p0.wrapping_add(16));
                let c = _mm512_maskz_loadu_ps(tap.masks[2], p1);
                let e = _mm512_maskz_loadu_ps(tap.masks[3], p1.wrapping_add(16));
                (
                    _mm512_permutex2var_ps(a, even, b),
                    _mm512_permutex2var_ps(c, even, e),
                )
            };
            fma512::<R>(w, x0, x1, &mut acc0, &mut acc1);
            w = w.add(t.ldw);
        }
    }
    store512::<R>(t, acc0, acc1);
}

/// [`crate::conv::kernels::direct_block_tile`]: `R` channels × the 16 positions of half `h`, stride 2.
#[target_feature(enable = "avx512f")]
pub(in crate::conv::kernels) unsafe fn block512<const R: usize>(t: &Tile, d: &Direct, h: usize) {
    let (mut acc, _) = bias512::<R>(t);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let mut w = t.w;
    let taps = &d.taps[..d.tap_count];
    let base = d.base[h];
    for ci in 0..d.channels {
        let image = d.image.wrapping_add(ci * d.plane);
        for tap in taps {
            let p = image.wrapping_offset(base + tap.offset);
            let a = _mm512_maskz_loadu_ps(tap.masks[2 * h], p);
            let b = _mm512_maskz_loadu_ps(tap.masks[2 * h + 1], p.wrapping_add(16));
            let x = _mm512_permutex2var_ps(a, even, b);
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_fmadd_ps(_mm512_set1_ps(*w.add(r)), x, *acc);
            }
            w = w.add(t.ldw);
        }
    }
    clamp_tile!(t.clamp, _mm512_set1_ps, _mm512_max_ps, _mm512_min_ps; acc);
    let m = lanes16(t.cols);
    for (r, acc) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(t.c.add(r * t.ldc), m, *acc);
    }
}

/// [`crate::conv::kernels::row_tile`]: `R` channels × 16 positions of two output rows, their
/// 2×2 maxima stored. Each tap's input vector is loaded once (unmasked inside the row) for
/// the `R` channels of both rows; each sum takes its taps in the order of the packed weights,
/// as the pixel tiles do, so the values are theirs bit for bit.
#[target_feature(enable = "avx512f")]
pub(in crate::conv::kernels) unsafe fn rows512<const R: usize>(t: &RowTile) {
    let mut acc = [[_mm512_setzero_ps(); R]; 2];
    for acc in acc.iter_mut() {
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = _mm512_set1_ps(*t.bias.add(r));
        }
    }
    let taps = t.kh * t.kw;
    for ci in 0..t.c {
        let image = t.x.wrapping_add(ci * t.plane).wrapping_offset(t.col);
        let w = t.w.add(ci * taps * t.ldw);
        for (iy, row) in t.input_rows[..t.kh + 1].iter().enumerate() {
            for kx in 0..t.kw {
                let x = match *row {
                    Some(off) => {
                        let p = image.wrapping_offset(off + kx as isize);
                        let m = t.masks[kx];
                        if m == u16::MAX {
                            _mm512_loadu_ps(p)
                        } else {
                            _mm512_maskz_loadu_ps(m, p)
                        }
                    }
                    None => _mm512_setzero_ps(),
                };
                for (p, acc) in acc.iter_mut().enumerate() {
                    // Input row iy is kernel row iy - p of output row p.
                    if iy < p || iy - p >= t.kh {
                        continue;
                    }
                    let w = w.add(((iy - p) * t.kw + kx) * t.ldw);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_fmadd_ps(_mm512_set1_ps(*w.add(r)), x, *acc);
                    }
                }
            }
        }
    }
    clamp_tile!(t.clamp, _mm512_set1_ps, _mm512_max_ps, _mm512_min_ps; acc[0], acc[1]);
    // The pairs' maxima in the even lanes, then those packed into the low 8.
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    let m = lanes16(t.cols / 2);
    for (r, (&top, &bottom)) in acc[0].iter().zip(&acc[1]).enumerate().take(t.rows) {
        let v = _mm512_max_ps(top, bottom);
        let v = _mm512_max_ps(v, _mm512_permute_ps::<0b10_11_00_01>(v));
        let v = _mm512_permutexvar_ps(even, v);
        _mm512_mask_storeu_ps(t.out.add(r * t.ldc), m, v);
    }
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn bias512<const R: usize>(t: &Tile) -> ([__m512; R], [__m512; R]) {
    let mut acc = [_mm512_setzero_ps(); R];
    for (r, acc) in acc.iter_mut().enumerate() {
        *acc = _mm512_set1_ps(*t.bias.add(r));
    }
    (acc, acc)
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn fma512<const R: usize>(
    w: *const f32,
    x0: __m512,
    x1: __m512,
    acc0: &mut [__m512; R],
    acc1: &mut [__m512; R],
) {
    for r in 0..R {
        let wr = _mm512_set1_ps(*w.add(r));
        acc0[r] = _mm512_fmadd_ps(wr, x0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(wr, x1, acc1[r]);
    }
}

/// Clamps and stores a pixel tile's accumulators (`t.cols` positions of `R` rows).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store512<const R: usize>(t: &Tile, mut acc0: [__m512; R], mut acc1: [__m512; R]) {
    clamp_tile!(t.clamp, _mm512_set1_ps, _mm512_max_ps, _mm512_min_ps; acc0, acc1);
    let m0 = lanes16(t.cols);
    let m1 = lanes16(t.cols.saturating_sub(16));
    for r in 0..R {
        let c = t.c.add(r * t.ldc);
        _mm512_mask_storeu_ps(c, m0, acc0[r]);
        _mm512_mask_storeu_ps(c.add(16), m1, acc1[r]);
    }
}

/// The mask of the first `n` (at most 16) lanes.
fn lanes16(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Packs a panel of 32 columns: per half of 16, masked loads when it lies in one
/// output row at stride 1 or 2 (the even lanes of two loads), a masked gather otherwise.
/// Masked-off lanes read nothing, so the padding costs no copy. What to do is decided
/// per kernel position and half, then done for every input channel.
///
/// # Safety
/// AVX-512F is available; `panel` was made by `patches.pack` with `nr` = 32.
#[target_feature(enable = "avx512f")]
pub(in crate::conv::kernels) unsafe fn pack512(patches: &Patches, panel: &Panel, dst: &mut [f32]) {
    let g = &patches.geo;
    let plane = g.h * g.w;
    let taps = g.kh * g.kw;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    assert!(dst.len() >= g.k() * 32 && patches.input.len() >= g.c * plane);
    let input = patches.input.as_ptr();
    let step = taps * 32;
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let tap = ky * g.kw + kx;
            let mask = panel.rows[ky] & panel.cols[kx];
            let off = patches.offsets[tap];
            for h in 0..2 {
                let m = (mask >> (16 * h)) as u16;
                let mut out = dst.as_mut_ptr().add(tap * 32 + 16 * h);
                let mut image = input.wrapping_offset(panel.base[16 * h] as isize + off);
                if m == 0 {
                    for _ in 0..g.c {
                        _mm512_storeu_ps(out, _mm512_setzero_ps());
                        out = out.add(step);
                    }
                } else if panel.linear[h] && g.sw == 1 {
                    for _ in 0..g.c {
                        _mm512_storeu_ps(out, _mm512_maskz_loadu_ps(m, image));
                        out = out.add(step);
                        image = image.wrapping_add(plane);
                    }
                } else if panel.linear[h] && g.sw == 2 {
                    let m2 = spread_even(m);
                    let (m_lo, m_hi) = (m2 as u16, (m2 >> 16) as u16);
                    for _ in 0..g.c {
                        let lo = _mm512_maskz_loadu_ps(m_lo, image);
                        let hi = _mm512_maskz_loadu_ps(m_hi, image.wrapping_add(16));
                        _mm512_storeu_ps(out, _mm512_permutex2var_ps(lo, even, hi));
                        out = out.add(step);
                        image = image.wrapping_add(plane);
                    }
                } else {
                    let base = _mm512_loadu_si512(panel.base.as_ptr().add(16 * h) as *const _);
                    let idx = _mm512_add_epi32(base, _mm512_set1_epi32(off as i32));
                    let mut image = input;
                    let zero = _mm512_setzero_ps();
                    for _ in 0..g.c {
                        let v = _mm512_mask_i32gather_ps::<4>(zero, m, idx, image);
                        _mm512_storeu_ps(out, v);
                        out = out.add(step);
                        image = image.add(plane);
                    }
                }
            }
        }
    }
}
