//! The AVX-512 VNNI panel sums of the quantized product: `vpdpbusd` on quads of unsigned
//! weight bytes and signed activation bytes, sixty-four columns by up to six rows per pass.

use std::arch::x86_64::*;

use super::quads::{Epilogue, NCQ};

/// One quad `q` of rows: four vectors of weights, each row's four bytes broadcast.
macro_rules! quad_step {
    ($acc:expr, $rows:expr, $s:expr, $stride:expr, $w:expr, $q:expr) => {{
        let wq = $w.add($q * NCQ * 4);
        let ws = [
            _mm512_loadu_si512(wq as *const _),
            _mm512_loadu_si512(wq.add(64) as *const _),
            _mm512_loadu_si512(wq.add(128) as *const _),
            _mm512_loadu_si512(wq.add(192) as *const _),
        ];
        for r in 0..$rows {
            let quad = ($s.add(r * $stride + 4 * $q) as *const i32).read_unaligned();
            let a = _mm512_set1_epi32(quad);
            for j in 0..4 {
                $acc[r][j] = _mm512_dpbusd_epi32($acc[r][j], ws[j], a);
            }
        }
    }};
}

/// # Safety
/// AVX-512 F/BW/VNNI; `s` holds `block ≤ MRQ` rows of `stride = 4·quads` bytes, `w` one
/// panel of `quads·NCQ·4` bytes, `out` `block` rows `ldo` apart of `epilogue.cols` values.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn panel_product(
    s: &[i8],
    stride: usize,
    block: usize,
    w: &[u8],
    quads: usize,
    epilogue: &Epilogue,
    out: &mut [f32],
    ldo: usize,
) {
    let (s, w, out) = (s.as_ptr(), w.as_ptr(), out.as_mut_ptr());
    match block {
        1 => rows::<1>(s, stride, w, quads, epilogue, out, ldo),
        2 => rows::<2>(s, stride, w, quads, epilogue, out, ldo),
        3 => rows::<3>(s, stride, w, quads, epilogue, out, ldo),
        4 => rows::<4>(s, stride, w, quads, epilogue, out, ldo),
        5 => rows::<5>(s, stride, w, quads, epilogue, out, ldo),
        _ => rows::<6>(s, stride, w, quads, epilogue, out, ldo),
    }
}

/// `R` rows; with one or two rows, even and odd quads go to separate accumulators so that
/// eight chains of `vpdpbusd` are in flight rather than four.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn rows<const R: usize>(
    s: *const i8,
    stride: usize,
    w: *const u8,
    quads: usize,
    epilogue: &Epilogue,
    out: *mut f32,
    ldo: usize,
) {
    let zero = _mm512_setzero_si512();
    let mut even = [[zero; 4]; R];
    let mut odd = [[zero; 4]; R];
    let mut q = 0;
    if R <= 2 {
        while q + 2 <= quads {
            quad_step!(even, R, s, stride, w, q);
            quad_step!(odd, R, s, stride, w, q + 1);
            q += 2;
        }
    }
    while q < quads {
        quad_step!(even, R, s, stride, w, q);
        q += 1;
    }
    // The epilogue, per vector of sixteen columns: the offsets in wrapping int32, then the
    // conversion, the multiplier and the accumulation as the scalar `scale_into`.
    let d = _mm512_set1_epi32(epilogue.d);
    let cols = epilogue.cols;
    for j in 0..4 {
        if 16 * j >= cols {
            break;
        }
        let mask: __mmask16 = if cols - 16 * j >= 16 {
            0xFFFF
        } else {
            (1u16 << (cols - 16 * j)) - 1
        };
        let col = _mm512_maskz_loadu_epi32(mask, epilogue.col_sums.as_ptr().add(16 * j));
        let col = _mm512_mullo_epi32(d, col);
        if epilogue.int_out {
            for r in 0..R {
                let acc = if R <= 2 {
                    _mm512_add_epi32(even[r][j], odd[r][j])
                } else {
                    even[r][j]
                };
                let row = _mm512_set1_epi32(epilogue.row_offsets[r]);
                let sum = _mm512_add_epi32(_mm512_add_epi32(acc, row), col);
                _mm512_mask_storeu_epi32(out.add(r * ldo + 16 * j) as *mut i32, mask, sum);
            }
            continue;
        }
        let mult = if epilogue.mult.len() == 1 {
            _mm512_set1_ps(epilogue.mult[0])
        } else {
            _mm512_maskz_loadu_ps(mask, epilogue.mult.as_ptr().add(16 * j))
        };
        for r in 0..R {
            let acc = if R <= 2 {
                _mm512_add_epi32(even[r][j], odd[r][j])
            } else {
                even[r][j]
            };
            let row = _mm512_set1_epi32(epilogue.row_offsets[r]);
            let sum = _mm512_add_epi32(_mm512_add_epi32(acc, row), col);
            let v = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), mult);
            let o = out.add(r * ldo + 16 * j);
            let v = if epilogue.accumulate {
                _mm512_add_ps(_mm512_maskz_loadu_ps(mask, o), v)
            } else {
                v
            };
            _mm512_mask_storeu_ps(o, mask, v);
        }
    }
}

/// `out[i] = quantize(values[i], scale, zp) − 128` as `kernels::quantize` computes it (a true
/// division, round half to even, `+ zp`, clamp to 0..255: NaN lands on 0 as with `as u8`),
/// sixteen at a time; returns `Σ out`.
///
/// # Safety
/// AVX-512 F; `out` is as long as `values`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn quantize_row(values: &[f32], scale: f32, zp: u8, out: &mut [i8]) -> i32 {
    debug_assert_eq!(values.len(), out.len());
    let scale = _mm512_set1_ps(scale);
    let zp = _mm512_set1_ps(zp as f32);
    let (lo, hi) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
    let half = _mm512_set1_epi32(128);
    let mut sum = _mm512_setzero_si512();
    for i in (0..values.len()).step_by(16) {
        let mask: __mmask16 = if values.len() - i >= 16 {
            0xFFFF
        } else {
            (1u16 << (values.len() - i)) - 1
        };
        let v = _mm512_maskz_loadu_ps(mask, values.as_ptr().add(i));
        let q = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_div_ps(v, scale),
        );
        // max first: a NaN operand yields the second one, 0.
        let q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(q, zp), lo), hi);
        let s = _mm512_sub_epi32(_mm512_cvttps_epi32(q), half);
        sum = _mm512_mask_add_epi32(sum, mask, sum, s);
        _mm512_mask_cvtepi32_storeu_epi8(out.as_mut_ptr().add(i) as *mut _, mask, s);
    }
    _mm512_reduce_add_epi32(sum)
}

/// `out[i] = quantize(values[i], scale, zp)` as `kernels::quantize` computes it, sixteen at a
/// time (the same steps as [`quantize_row`], stored as unsigned bytes).
///
/// # Safety
/// AVX-512 F; `out` is as long as `values`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn quantize_u8(values: &[f32], scale: f32, zp: u8, out: &mut [u8]) {
    debug_assert_eq!(values.len(), out.len());
    let scale = _mm512_set1_ps(scale);
    let zp = _mm512_set1_ps(zp as f32);
    let (lo, hi) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
    for i in (0..values.len()).step_by(16) {
        let mask: __mmask16 = if values.len() - i >= 16 {
            0xFFFF
        } else {
            (1u16 << (values.len() - i)) - 1
        };
        let v = _mm512_maskz_loadu_ps(mask, values.as_ptr().add(i));
        let q = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_div_ps(v, scale),
        );
        // max first: a NaN operand yields the second one, 0.
        let q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(q, zp), lo), hi);
        _mm512_mask_cvtepi32_storeu_epi8(
            out.as_mut_ptr().add(i) as *mut _,
            mask,
            _mm512_cvttps_epi32(q),
        );
    }
}

/// `(min, max)` of 0 and `values`, NaN skipped, as `kernels::quantization_params` folds them
/// (a zero's sign may differ, which changes neither the scale nor the zero point).
///
/// # Safety
/// AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn range(values: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for i in (0..values.len()).step_by(16) {
        let mask: __mmask16 = if values.len() - i >= 16 {
            0xFFFF
        } else {
            (1u16 << (values.len() - i)) - 1
        };
        // Lanes past the end read 0, inside the range already; with a NaN in the first
        // operand, min and max return the second.
        let v = _mm512_maskz_loadu_ps(mask, values.as_ptr().add(i));
        lo = _mm512_min_ps(v, lo);
        hi = _mm512_max_ps(v, hi);
    }
    (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi))
}
