//! The AVX2+FMA kernels: pixel tiles of 4 channels × 2 vectors of 8, channel tiles of 8, row
//! tiles of 4 channels × 2 rows × 8 positions (pooled), and the packing of 16-wide
//! panels.

use crate::conv::kernels::packing::{Panel, Patches};
use crate::conv::kernels::{RowTile, Tile};
use std::arch::x86_64::*;

/// [`super::avx512::chan512`] with 8 channels in a vector, stored channel by channel.
#[target_feature(enable = "avx2,fma")]
pub(in crate::conv::kernels) unsafe fn chan256<const NP: usize>(t: &Tile) {
    let mut acc = [_mm256_loadu_ps(t.bias); NP];
    let mut w = t.w;
    let mut x = t.x;
    for _ in 0..t.k {
        let wv = _mm256_loadu_ps(w);
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_fmadd_ps(wv, _mm256_broadcast_ss(&*x.add(j)), *acc);
        }
        w = w.add(t.ldw);
        x = x.add(t.ldx);
    }
    clamp_tile!(t.clamp, _mm256_set1_ps, _mm256_max_ps, _mm256_min_ps; acc);
    for (j, acc) in acc.iter().enumerate() {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), *acc);
        for (r, &v) in lanes.iter().enumerate().take(t.rows) {
            *t.c.add(r * t.ldc + j) = v;
        }
    }
}

/// [`super::avx512::pack512`] for AVX2 panels of 16: masked loads at stride 1, masked gathers otherwise.
///
/// # Safety
/// AVX2 is available; `panel` was made by `patches.pack` with `nr` = 16.
#[target_feature(enable = "avx2,fma")]
pub(in crate::conv::kernels) unsafe fn pack256(patches: &Patches, panel: &Panel, dst: &mut [f32]) {
    let g = &patches.geo;
    let plane = g.h * g.w;
    let taps = g.kh * g.kw;
    let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    assert!(dst.len() >= g.k() * 16 && patches.input.len() >= g.c * plane);
    let input = patches.input.as_ptr();
    let step = taps * 16;
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let tap = ky * g.kw + kx;
            let mask = panel.rows[ky] & panel.cols[kx];
            let off = patches.offsets[tap];
            for h in 0..2 {
                let m = (mask >> (8 * h)) & 0xff;
                let mut out = dst.as_mut_ptr().add(tap * 16 + 8 * h);
                let mv =
                    _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(m as i32), bits), bits);
                if m == 0 {
                    for _ in 0..g.c {
                        _mm256_storeu_ps(out, _mm256_setzero_ps());
                        out = out.add(step);
                    }
                } else if panel.linear[h] && g.sw == 1 {
                    let mut image = input.wrapping_offset(panel.base[8 * h] as isize + off);
                    for _ in 0..g.c {
                        _mm256_storeu_ps(out, _mm256_maskload_ps(image, mv));
                        out = out.add(step);
                        image = image.wrapping_add(plane);
                    }
                } else {
                    let base = _mm256_loadu_si256(panel.base.as_ptr().add(8 * h) as *const _);
                    let idx = _mm256_add_epi32(base, _mm256_set1_epi32(off as i32));
                    let mut image = input;
                    let zero = _mm256_setzero_ps();
                    let mvf = _mm256_castsi256_ps(mv);
                    for _ in 0..g.c {
                        let v = _mm256_mask_i32gather_ps::<4>(zero, image, idx, mvf);
                        _mm256_storeu_ps(out, v);
                        out = out.add(step);
                        image = image.add(plane);
                    }
                }
            }
        }
    }
}

#[target_feature(enable = "avx2,fma")]
pub(in crate::conv::kernels) unsafe fn tile256<const R: usize>(t: &Tile) {
    let mut acc0 = [_mm256_setzero_ps(); R];
    let mut acc1 = [_mm256_setzero_ps(); R];
    for r in 0..R {
        let b = _mm256_set1_ps(*t.bias.add(r));
        acc0[r] = b;
        acc1[r] = b;
    }
    let mut w = t.w;
    let mut x = t.x;
    for _ in 0..t.k {
        let x0 = _mm256_loadu_ps(x);
        let x1 = _mm256_loadu_ps(x.add(8));
        for r in 0..R {
            let wr = _mm256_broadcast_ss(&*w.add(r));
            acc0[r] = _mm256_fmadd_ps(wr, x0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(wr, x1, acc1[r]);
        }
        w = w.add(t.ldw);
        x = x.add(t.ldx);
    }
    clamp_tile!(t.clamp, _mm256_set1_ps, _mm256_max_ps, _mm256_min_ps; acc0, acc1);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(t.cols.min(8) as i32), lanes);
    let m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(t.cols.saturating_sub(8) as i32), lanes);
    for r in 0..R {
        let c = t.c.add(r * t.ldc);
        if t.cols == 16 {
            _mm256_storeu_ps(c, acc0[r]);
            _mm256_storeu_ps(c.add(8), acc1[r]);
        } else {
            _mm256_maskstore_ps(c, m0, acc0[r]);
            _mm256_maskstore_ps(c.add(8), m1, acc1[r]);
        }
    }
}

/// [`super::avx512::rows512`] with vectors of 8 (masked loads by a lane mask of `t.masks`).
#[target_feature(enable = "avx2,fma")]
pub(in crate::conv::kernels) unsafe fn rows256<const R: usize>(t: &RowTile) {
    let mut acc = [[_mm256_setzero_ps(); R]; 2];
    for acc in acc.iter_mut() {
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_set1_ps(*t.bias.add(r));
        }
    }
    let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let mut masks = [_mm256_setzero_si256(); crate::conv::kernels::ROW_TILE_KH];
    for (v, &m) in masks.iter_mut().zip(&t.masks[..t.kw]) {
        *v = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(m as i32), bits), bits);
    }
    let taps = t.kh * t.kw;
    for ci in 0..t.c {
        let image = t.x.wrapping_add(ci * t.plane).wrapping_offset(t.col);
        let w = t.w.add(ci * taps * t.ldw);
        for (iy, row) in t.input_rows[..t.kh + 1].iter().enumerate() {
            for (kx, (&m, &mv)) in t.masks[..t.kw].iter().zip(&masks).enumerate() {
                let x = match *row {
                    Some(off) => {
                        let p = image.wrapping_offset(off + kx as isize);
                        if m & 0xff == 0xff {
                            _mm256_loadu_ps(p)
                        } else {
                            _mm256_maskload_ps(p, mv)
                        }
                    }
                    None => _mm256_setzero_ps(),
                };
                for (p, acc) in acc.iter_mut().enumerate() {
                    // Input row iy is kernel row iy - p of output row p.
                    if iy < p || iy - p >= t.kh {
                        continue;
                    }
                    let w = w.add(((iy - p) * t.kw + kx) * t.ldw);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*w.add(r)), x, *acc);
                    }
                }
            }
        }
    }
    clamp_tile!(t.clamp, _mm256_set1_ps, _mm256_max_ps, _mm256_min_ps; acc[0], acc[1]);
    // The pairs' maxima in the even lanes, then those packed into the low 4.
    let even = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
    let lanes = _mm_setr_epi32(0, 1, 2, 3);
    let m = _mm_cmplt_epi32(lanes, _mm_set1_epi32((t.cols / 2) as i32));
    for (r, (&top, &bottom)) in acc[0].iter().zip(&acc[1]).enumerate().take(t.rows) {
        let v = _mm256_max_ps(top, bottom);
        let v = _mm256_max_ps(v, _mm256_permute_ps::<0b10_11_00_01>(v));
        let v = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(v, even));
        _mm_maskstore_ps(t.out.add(r * t.ldc), m, v);
    }
}
