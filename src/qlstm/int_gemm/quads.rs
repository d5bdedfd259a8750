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

use super::QuantRows;

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

    /// [`int_product`](super::int_product) over this layout.
    pub fn product(&self, a: &QuantRows, mult: &[f32], out: &mut [f32], accumulate: bool) {
        assert_eq!(a.stride, self.quads * 4);
        assert_eq!(a.k, self.k);
        assert_eq!(out.len(), a.rows * self.n);
        assert!(mult.len() == 1 || mult.len() == self.n);
        let panel_len = self.quads * NCQ * 4;
        for panel in 0..self.n.div_ceil(NCQ) {
            let c0 = panel * NCQ;
            let w = &self.packed[panel * panel_len..(panel + 1) * panel_len];
            for r0 in (0..a.rows).step_by(MRQ) {
                let block = MRQ.min(a.rows - r0);
                let mut row_offsets = [0i32; MRQ];
                for (o, &sum) in row_offsets.iter_mut().zip(&a.row_sums[r0..r0 + block]) {
                    *o = self.offset.wrapping_mul(sum);
                }
                let end = NCQ.min(self.n - c0);
                let epilogue = Epilogue {
                    cols: end,
                    col_sums: &self.col_sums[c0..c0 + end],
                    d: a.d,
                    row_offsets,
                    mult: if mult.len() == 1 {
                        mult
                    } else {
                        &mult[c0..c0 + end]
                    },
                    accumulate,
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
    /// `offset · Σ_k s` per row.
    pub row_offsets: [i32; MRQ],
    /// One multiplier for every column, or one per column of the panel.
    pub mult: &'a [f32],
    pub accumulate: bool,
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
    assert!(epilogue.mult.len() == 1 || epilogue.mult.len() == epilogue.cols);
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: a QuadMatrix exists only on the AVX-512 VNNI path, which the CPU runs
        // (Path::runs_here); the lengths are asserted above.
        unsafe { super::avx512_vnni::panel_product(s, stride, block, w, quads, epilogue, out, ldo) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the quad layout is x86-only ({s:?}, {stride}, {w:?}, {quads}, {out:?}, {ldo})")
}
