//! The quad layout of the quantized product's weights (AVX-512 VNNI's `vpdpbusd`) and the
//! product over it, with the offsets that turn unsigned-by-signed byte sums back into the
//! exact `Σ (a_q − a_zp)·w`.
//!
//! With `s = a_q − 128` (signed bytes, [`QuantRows`]), `d = 128 − a_zp`, `u = w − o` for the
//! matrix's minimum `o` (unsigned bytes: the weights of one zero point span at most 255):
//!
//! `Σ_k (a_q − a_zp)·w = Σ_k (s + d)·(u + o) = Σ_k s·u + o·Σ_k s + d·Σ_k w`
//!
//! an identity in wrapping int32 arithmetic, so the sum is the one every other path gives.
//! `Σ_k s` is the row's sum (kept with the rows), `Σ_k w` the column's (kept here).

use super::{QuantRows, Sink};

/// Columns per quad panel: four vectors of sixteen int32 sums.
pub(super) const NCQ: usize = 64;

/// Rows of `a` per pass over a quad panel.
pub(super) const MRQ: usize = 6;

/// `w` (`k × n`) as unsigned quads, with its offset and column sums.
#[derive(Debug, Clone)]
pub(super) struct QuadMatrix {
    k: usize,
    n: usize,
    quads: usize,
    /// Per panel, per quad of rows, per column: four bytes `w − offset`.
    packed: Vec<u8>,
    offset: i32,
    col_sums: Vec<i32>,
}

impl QuadMatrix {
    /// `None` when the values span more than 255 (they do not fit unsigned bytes).
    pub fn new(k: usize, n: usize, data: &[i16]) -> Option<QuadMatrix> {
        let lo = data.iter().copied().min().unwrap_or(0);
        let hi = data.iter().copied().max().unwrap_or(0);
        if hi as i32 - lo as i32 > 255 {
            return None;
        }
        let quads = k.div_ceil(4);
        let panels = n.div_ceil(NCQ);
        let mut packed = vec![0u8; panels * quads * NCQ * 4];
        let mut col_sums = vec![0i32; n];
        for kk in 0..k {
            for c in 0..n {
                let v = data[kk * n + c];
                let at = ((c / NCQ * quads + kk / 4) * NCQ + c % NCQ) * 4 + kk % 4;
                packed[at] = (v - lo) as u8;
                col_sums[c] = col_sums[c].wrapping_add(v as i32);
            }
        }
        Some(QuadMatrix {
            k,
            n,
            quads,
            packed,
            offset: lo as i32,
            col_sums,
        })
    }

    /// The row-major `k × n` uint8 values of `data` minus `zp`: the bytes as they are, with
    /// offset `−zp` (a zero point spans 255 by construction).
    pub fn from_u8(k: usize, n: usize, data: &[u8], zp: u8) -> QuadMatrix {
        assert_eq!(data.len(), k * n);
        let quads = k.div_ceil(4);
        let panels = n.div_ceil(NCQ);
        let mut packed = vec![0u8; panels * quads * NCQ * 4];
        for panel in 0..panels {
            let c0 = panel * NCQ;
            let cols = NCQ.min(n - c0);
            for q in 0..quads {
                let dst = &mut packed[(panel * quads + q) * NCQ * 4..][..NCQ * 4];
                let row = |j: usize| {
                    let kk = 4 * q + j;
                    (kk < k).then(|| &data[kk * n + c0..kk * n + c0 + cols])
                };
                interleave4([row(0), row(1), row(2), row(3)], cols, dst);
            }
        }
        let mut col_sums = vec![0i32; n];
        for row in data.chunks_exact(n.max(1)) {
            for (s, &v) in col_sums.iter_mut().zip(row) {
                *s += v as i32;
            }
        }
        let zero = (k as i32).wrapping_mul(zp as i32);
        col_sums.iter_mut().for_each(|s| *s = s.wrapping_sub(zero));
        QuadMatrix {
            k,
            n,
            quads,
            packed,
            offset: -(zp as i32),
            col_sums,
        }
    }

    /// [`int_product_to`](super::int_product_to) over this layout.
    pub fn product(&self, a: &QuantRows, row_bias: &[i32], sink: Sink) {
        assert_eq!(a.stride, self.quads * 4);
        assert_eq!(a.k, self.k);
        let (out, mult, accumulate, int_out) = match sink {
            Sink::F32 {
                out,
                mult,
                accumulate,
            } => (out, mult, accumulate, false),
            // The kernel stores the int32 sums' bits where floats would go: same size and
            // alignment, and every bit pattern is some f32.
            // SAFETY: the slice is reborrowed whole for the same lifetime.
            Sink::I32(out) => (
                unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut f32, out.len()) },
                &[][..],
                false,
                true,
            ),
        };
        assert_eq!(out.len(), a.rows * self.n);
        assert!(int_out || mult.len() == 1 || mult.len() == self.n);
        let panel_len = self.quads * NCQ * 4;
        for panel in 0..self.n.div_ceil(NCQ) {
            let c0 = panel * NCQ;
            let w = &self.packed[panel * panel_len..(panel + 1) * panel_len];
            for r0 in (0..a.rows).step_by(MRQ) {
                let block = MRQ.min(a.rows - r0);
                let mut row_offsets = [0i32; MRQ];
                for (i, o) in row_offsets.iter_mut().enumerate().take(block) {
                    let bias = row_bias.get(r0 + i).copied().unwrap_or(0);
                    *o = self
                        .offset
                        .wrapping_mul(a.row_sums[r0 + i])
                        .wrapping_add(bias);
                }
                let end = NCQ.min(self.n - c0);
                let epilogue = Epilogue {
                    cols: end,
                    col_sums: &self.col_sums[c0..c0 + end],
                    d: a.d,
                    row_offsets,
                    mult: if mult.len() <= 1 {
                        mult
                    } else {
                        &mult[c0..c0 + end]
                    },
                    accumulate,
                    int_out,
                };
                let rows = &a.s[r0 * a.stride..(r0 + block) * a.stride];
                let out = &mut out[r0 * self.n + c0..];
                panel_product(rows, a.stride, block, w, self.quads, &epilogue, out, self.n);
            }
        }
    }
}

/// What turns one panel's `Σ s·u` into floats: for row `r` and column `c` of the panel,
/// `out[r, c] (+)= (Σ s·u + row_offsets[r] + d·col_sums[c]) as f32 · mult[c]` (the same
/// wrapping integers and float operations as [`int_product`](super::int_product)'s other paths).
pub(super) struct Epilogue<'a> {
    /// Columns of the panel that exist (1 to NCQ).
    pub cols: usize,
    pub col_sums: &'a [i32],
    pub d: i32,
    /// `offset · Σ_k s` per row, plus the row's bias.
    pub row_offsets: [i32; MRQ],
    /// One multiplier for every column, or one per column of the panel (none for int32).
    pub mult: &'a [f32],
    pub accumulate: bool,
    /// Whether `out` receives the int32 sums' bits rather than floats.
    pub int_out: bool,
}

/// `block` rows against one panel, written into `out` (rows `ldo` apart).
#[allow(clippy::too_many_arguments)]
fn panel_product(
    s: &[i8],
    stride: usize,
    block: usize,
    w: &[u8],
    quads: usize,
    epilogue: &Epilogue,
    out: &mut [f32],
    ldo: usize,
) {
    assert!(block <= MRQ && s.len() == block * stride && w.len() == quads * NCQ * 4);
    assert!(out.len() >= (block - 1) * ldo + epilogue.cols);
    assert!(epilogue.col_sums.len() == epilogue.cols);
    assert!(epilogue.int_out || epilogue.mult.len() == 1 || epilogue.mult.len() == epilogue.cols);
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: a QuadMatrix exists only on the AVX-512 VNNI path, which the CPU runs
        // (Path::runs_here); the lengths are asserted above.
        unsafe { super::avx512_vnni::panel_product(s, stride, block, w, quads, epilogue, out, ldo) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the quad layout is x86-only ({s:?}, {stride}, {w:?}, {quads}, {out:?}, {ldo})")
}

/// `dst[4c + j] = rows[j][c]` for the first `cols` columns (0 for a missing row).
fn interleave4(rows: [Option<&[u8]>; 4], cols: usize, dst: &mut [u8]) {
    let mut c = 0;
    #[cfg(target_arch = "x86_64")]
    if let [Some(r0), Some(r1), Some(r2), Some(r3)] = rows {
        use std::arch::x86_64::*;
        while c + 16 <= cols {
            // SAFETY: SSE2 is part of x86_64; 16 bytes read from each row at c + 16 ≤ cols,
            // 64 written at 4c + 64 ≤ 4·cols ≤ dst.len().
            unsafe {
                let load = |r: &[u8]| _mm_loadu_si128(r.as_ptr().add(c) as *const __m128i);
                let (a, b) = (load(r0), load(r1));
                let (e, f) = (load(r2), load(r3));
                let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
                let (ef_lo, ef_hi) = (_mm_unpacklo_epi8(e, f), _mm_unpackhi_epi8(e, f));
                let out = dst.as_mut_ptr().add(4 * c) as *mut __m128i;
                _mm_storeu_si128(out, _mm_unpacklo_epi16(ab_lo, ef_lo));
                _mm_storeu_si128(out.add(1), _mm_unpackhi_epi16(ab_lo, ef_lo));
                _mm_storeu_si128(out.add(2), _mm_unpacklo_epi16(ab_hi, ef_hi));
                _mm_storeu_si128(out.add(3), _mm_unpackhi_epi16(ab_hi, ef_hi));
            }
            c += 16;
        }
    }
    for c in c..cols {
        for (j, row) in rows.iter().enumerate() {
            dst[4 * c + j] = row.map_or(0, |r| r[c]);
        }
    }
}
