//! The quantized LSTM's products: `Σ_k (a_q[r, k] − a_zp)·w[k, c]` exact in int32 (wrapping,
//! as MLAS sums), then scaled into float32.
//!
//! `a_q` holds uint8 activations quantized with one zero point `a_zp` ([`QuantRows`]), `w` the
//! weights minus theirs (−255 to 255). Two weight layouts, chosen once per process by what the
//! CPU has ([`Path::selected`]):
//!
//! - **pairs** (portable and AVX2): panels of [`NC`] columns, each holding, for every pair of
//!   rows k, k+1 of `w`, the two values of each column side by side: the layout of x86's
//!   `vpmaddwd`, which multiplies 16-bit pairs and adds each pair into one int32 lane exactly.
//!   Weights that fit in 8 bits are stored in 8 bits and widened in registers.
//! - **quads** (AVX-512 VNNI): panels of [`quads::NCQ`] columns holding, for every four rows
//!   of `w`, the four values of each column side by side as *unsigned* bytes `w − min(w)`: the
//!   layout of `vpdpbusd`, which multiplies unsigned by signed bytes and adds each quad into one
//!   int32 lane, without saturation. The activations enter as signed bytes `a_q − 128`, and the
//!   two offsets come back as a per-row and a per-column correction (see [`quads`]).
//!
//! Every path gives the same integers (identities in wrapping int32 arithmetic); the float
//! scaling is the same expression on every path.
//!
//! The files: the activations, the pair packing and the product (here), the quad packing
//! (`quads`), the portable panel sums (`generic`), the AVX2 ones (`avx2`) and the AVX-512
//! VNNI ones (`avx512_vnni`).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512_vnni;
mod generic;
mod quads;

use generic::{interleave2, portable_panel_sums};
use quads::QuadMatrix;

use super::kernels::quantize;

/// Columns per pair panel: four vectors of eight int32 sums.
pub(super) const NC: usize = 32;

/// Rows of `a` per pass over a pair panel.
const MR: usize = 6;

/// The kernels a product runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Portable,
    Avx2,
    Avx512Vnni,
}

impl Path {
    /// Every path this CPU runs, portable first.
    pub fn available() -> Vec<Path> {
        [Path::Portable, Path::Avx2, Path::Avx512Vnni]
            .into_iter()
            .filter(|p| p.runs_here())
            .collect()
    }

    fn runs_here(self) -> bool {
        match self {
            Path::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => std::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512Vnni => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best path this CPU runs, capped by the float kernels' set
    /// ([`Isa::selected`](crate::kernels::Isa::selected), so `RNN_RUN_ISA=avx2` or
    /// `portable` also picks the lower integer kernels). Decided once per process.
    pub fn selected() -> Path {
        use crate::kernels::Isa;
        static SELECTED: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
        *SELECTED.get_or_init(|| {
            let cap = match Isa::selected() {
                Isa::Portable => Path::Portable,
                Isa::Avx2 => Path::Avx2,
                Isa::Avx512 => Path::Avx512Vnni,
            };
            Path::available()
                .into_iter()
                .rfind(|p| (*p as u8) <= (cap as u8))
                .unwrap_or(Path::Portable)
        })
    }
}

/// Rows of uint8 activations quantized with one zero point, stored as the kernels read them:
/// signed bytes `a_q − 128` (the zero point becomes `d = 128 − a_zp`), each row padded with
/// zeros to a multiple of four, with its sum. The buffer is kept between calls.
#[derive(Debug, Clone)]
pub(crate) struct QuantRows {
    k: usize,
    stride: usize,
    rows: usize,
    d: i32,
    s: Vec<i8>,
    row_sums: Vec<i32>,
}

impl QuantRows {
    /// An empty buffer for rows of `k` values.
    pub fn new(k: usize) -> QuantRows {
        QuantRows {
            k,
            stride: k.div_ceil(4) * 4,
            rows: 0,
            d: 0,
            s: Vec::new(),
            row_sums: Vec::new(),
        }
    }

    /// Starts `rows` rows quantized with zero point `zp`; fill each with [`Self::set_row`].
    pub fn reset(&mut self, rows: usize, zp: u8) {
        self.rows = rows;
        self.d = 128 - zp as i32;
        // New rows are zero, padding included; `set_row` never writes the padding.
        self.s.resize(rows * self.stride, 0);
        self.row_sums.resize(rows, 0);
    }

    /// Row `r` from its `k` uint8 values.
    pub fn set_row(&mut self, r: usize, values: impl IntoIterator<Item = u8>) {
        let row = &mut self.s[r * self.stride..r * self.stride + self.k];
        let mut sum = 0i32;
        let mut n = 0;
        for (s, q) in row.iter_mut().zip(values) {
            *s = (q ^ 0x80) as i8;
            sum += *s as i32;
            n += 1;
        }
        assert_eq!(n, self.k, "a row of quantized activations");
        self.row_sums[r] = sum;
    }

    /// Starts `rows` rows of int8 values with zero point `zp`; fill each with
    /// [`Self::set_row_i8`]. (Stored as they are: `s = q`, `d = −zp`.)
    pub fn reset_i8(&mut self, rows: usize, zp: i8) {
        self.rows = rows;
        self.d = -(zp as i32);
        self.s.resize(rows * self.stride, 0);
        self.row_sums.resize(rows, 0);
    }

    /// Row `r` from its `k` int8 values (after [`Self::reset_i8`]).
    pub fn set_row_i8(&mut self, r: usize, values: impl IntoIterator<Item = i8>) {
        let row = &mut self.s[r * self.stride..r * self.stride + self.k];
        let mut sum = 0i32;
        let mut n = 0;
        for (s, q) in row.iter_mut().zip(values) {
            *s = q;
            sum += q as i32;
            n += 1;
        }
        assert_eq!(n, self.k, "a row of int8 values");
        self.row_sums[r] = sum;
    }

    /// Row `r` quantized from its `k` float values with `scale` and the zero point given to
    /// [`Self::reset`] (`zp`, again): `kernels::quantize` of each value, vectorized where the
    /// CPU allows.
    pub fn quantize_row(&mut self, r: usize, values: &[f32], scale: f32, zp: u8) {
        assert_eq!(values.len(), self.k, "a row of activations");
        assert_eq!(self.d, 128 - zp as i32, "the zero point given to reset");
        #[cfg(target_arch = "x86_64")]
        if Path::selected() == Path::Avx512Vnni {
            let row = &mut self.s[r * self.stride..r * self.stride + self.k];
            // SAFETY: the CPU runs AVX-512 F (part of the selected path); lengths asserted.
            self.row_sums[r] = unsafe { avx512_vnni::quantize_row(values, scale, zp, row) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if Path::selected() == Path::Avx2 {
            let row = &mut self.s[r * self.stride..r * self.stride + self.k];
            // SAFETY: the CPU runs AVX2 (the selected path); lengths asserted.
            self.row_sums[r] = unsafe { avx2::quantize_row(values, scale, zp, row) };
            return;
        }
        self.set_row(r, values.iter().map(|&v| quantize(v, scale, zp)));
    }

    /// `a_q − a_zp` at row `r`, column `c` (0 past the row's end).
    #[inline(always)]
    fn centered(&self, r: usize, c: usize) -> i16 {
        if c < self.k {
            self.s[r * self.stride + c] as i16 + self.d as i16
        } else {
            0
        }
    }
}

/// `out[i] = kernels::quantize(values[i], scale, zp)` with AVX-512 or AVX2 on their paths;
/// `false` (and nothing written) on the portable one.
pub(crate) fn quantize_u8_wide(values: &[f32], scale: f32, zp: u8, out: &mut [u8]) -> bool {
    assert_eq!(values.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    match Path::selected() {
        // SAFETY: the CPU runs AVX-512 F (part of the selected path); lengths asserted.
        Path::Avx512Vnni => unsafe { avx512_vnni::quantize_u8(values, scale, zp, out) },
        // SAFETY: the CPU runs AVX2 (the selected path); lengths asserted.
        Path::Avx2 => unsafe { avx2::quantize_u8(values, scale, zp, out) },
        Path::Portable => return false,
    }
    #[cfg(target_arch = "x86_64")]
    return true;
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `(min, max)` of 0 and `values`, NaN skipped (the range `kernels::quantization_params`
/// takes), vectorized on the AVX-512 and AVX2 paths.
pub(super) fn range(values: &[f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    match Path::selected() {
        // SAFETY: the CPU runs AVX-512 F (part of the selected path).
        Path::Avx512Vnni => return unsafe { avx512_vnni::range(values) },
        // SAFETY: the CPU runs AVX2 (the selected path).
        Path::Avx2 => return unsafe { avx2::range(values) },
        Path::Portable => {}
    }
    values
        .iter()
        .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// `w` (`k × n`, minus its zero point) packed for [`int_product`] on one path.
#[derive(Debug, Clone)]
pub(crate) struct IntMatrix {
    pub k: usize,
    pub n: usize,
    packed: Packed,
    /// Whether pairs go through the AVX2 sums (else the portable ones).
    avx2: bool,
}

#[derive(Debug, Clone)]
enum Packed {
    I8(Vec<i8>),
    I16(Vec<i16>),
    Quads(QuadMatrix),
}

impl IntMatrix {
    /// Packs the row-major `k × n` values of `data` for the selected path.
    pub fn new(k: usize, n: usize, data: &[i16]) -> IntMatrix {
        IntMatrix::for_path(k, n, data, Path::selected())
    }

    /// Packs for `path` (one the CPU runs); quads need a range of at most 255, which the
    /// weights of one zero point always have, else pairs.
    pub fn for_path(k: usize, n: usize, data: &[i16], path: Path) -> IntMatrix {
        assert_eq!(data.len(), k * n);
        if path == Path::Avx512Vnni {
            if let Some(q) = QuadMatrix::new(k, n, data) {
                return IntMatrix {
                    k,
                    n,
                    packed: Packed::Quads(q),
                    avx2: true,
                };
            }
        }
        let pairs = k.div_ceil(2);
        let panels = n.div_ceil(NC);
        let mut packed = vec![0i16; panels * pairs * NC * 2];
        for kk in 0..k {
            for c in 0..n {
                packed[Self::index(pairs, kk, c)] = data[kk * n + c];
            }
        }
        let packed = if packed.iter().all(|&v| i8::try_from(v).is_ok()) {
            Packed::I8(packed.iter().map(|&v| v as i8).collect())
        } else {
            Packed::I16(packed)
        };
        IntMatrix {
            k,
            n,
            packed,
            avx2: path != Path::Portable,
        }
    }

    /// Packs, for `path`, the row-major `k × n` uint8 values of `data` minus their zero point
    /// `zp` (the run-time operand of a quantized convolution: its patches).
    pub fn from_u8(k: usize, n: usize, data: &[u8], zp: u8, path: Path) -> IntMatrix {
        assert_eq!(data.len(), k * n);
        if path == Path::Avx512Vnni {
            return IntMatrix {
                k,
                n,
                packed: Packed::Quads(QuadMatrix::from_u8(k, n, data, zp)),
                avx2: true,
            };
        }
        let pairs = k.div_ceil(2);
        let panels = n.div_ceil(NC);
        let mut packed = vec![0i16; panels * pairs * NC * 2];
        for panel in 0..panels {
            let (c0, cols) = (panel * NC, NC.min(n - panel * NC));
            for p in 0..pairs {
                let dst = &mut packed[(panel * pairs + p) * NC * 2..][..NC * 2];
                let row = |kk: usize| (kk < k).then(|| &data[kk * n + c0..kk * n + c0 + cols]);
                interleave2(row(2 * p), row(2 * p + 1), cols, zp, dst);
            }
        }
        IntMatrix {
            k,
            n,
            packed: Packed::I16(packed),
            avx2: path != Path::Portable,
        }
    }

    fn index(pairs: usize, kk: usize, c: usize) -> usize {
        ((c / NC * pairs + kk / 2) * NC + c % NC) * 2 + kk % 2
    }

    /// Whether the weights are stored in 8-bit pairs.
    #[cfg(test)]
    fn narrow(&self) -> bool {
        matches!(self.packed, Packed::I8(_))
    }
}

/// `out[r, c] (+)= (Σ_k (a_q[r, k] − a_zp)·w[k, c]) as f32 · mult[c]` for every row of `a`
/// (`mult` of length 1 applies to every column); `out` is `a.rows × w.n`.
pub(super) fn int_product(
    a: &QuantRows,
    w: &IntMatrix,
    mult: &[f32],
    out: &mut [f32],
    accumulate: bool,
) {
    int_product_to(
        a,
        w,
        &[],
        Sink::F32 {
            out,
            mult,
            accumulate,
        },
    )
}

/// Where the sums of a product go, row `r` first given `row_bias[r]` (wrapping; none when
/// `row_bias` is empty): the quantized convolution's int32 bias, added before any scaling as
/// ONNX's `Add` after a `ConvInteger` adds it.
pub(crate) enum Sink<'a> {
    /// `out[r, c] (+)= (sum + bias) as f32 · mult[c]` (`mult` of length 1: every column).
    F32 {
        out: &'a mut [f32],
        mult: &'a [f32],
        accumulate: bool,
    },
    /// `out[r, c] = sum + bias`, the exact int32.
    I32(&'a mut [i32]),
}

impl Sink<'_> {
    fn len(&self) -> usize {
        match self {
            Sink::F32 { out, .. } => out.len(),
            Sink::I32(out) => out.len(),
        }
    }
}

/// [`int_product`] with a bias per row, into floats or int32 ([`Sink`]).
pub(crate) fn int_product_to(a: &QuantRows, w: &IntMatrix, row_bias: &[i32], sink: Sink) {
    assert_eq!(a.k, w.k);
    assert_eq!(sink.len(), a.rows * w.n);
    assert!(row_bias.is_empty() || row_bias.len() == a.rows);
    if let Sink::F32 { mult, .. } = &sink {
        assert!(mult.len() == 1 || mult.len() == w.n);
    }
    if let Packed::Quads(q) = &w.packed {
        return q.product(a, row_bias, sink);
    }
    let mut sink = sink;
    let pairs = w.k.div_ceil(2);
    let wide = if w.avx2 {
        centered_pairs(a)
    } else {
        Vec::new()
    };
    let mut sums = [[0i32; NC]; MR];
    for panel in 0..w.n.div_ceil(NC) {
        let c0 = panel * NC;
        let cols = NC.min(w.n - c0);
        for r0 in (0..a.rows).step_by(MR) {
            let block = MR.min(a.rows - r0);
            panel_sums(a, &wide, r0, block, w, panel, pairs, &mut sums);
            for (i, row_sums) in sums.iter_mut().take(block).enumerate() {
                let row_sums = &mut row_sums[..cols];
                if let Some(&b) = row_bias.get(r0 + i) {
                    row_sums.iter_mut().for_each(|s| *s = s.wrapping_add(b));
                }
                let at = (r0 + i) * w.n + c0;
                match &mut sink {
                    Sink::F32 {
                        out,
                        mult,
                        accumulate,
                    } => {
                        let m = if mult.len() == 1 {
                            &mult[..]
                        } else {
                            &mult[c0..c0 + cols]
                        };
                        scale_into(&mut out[at..at + cols], row_sums, m, *accumulate)
                    }
                    Sink::I32(out) => out[at..at + cols].copy_from_slice(row_sums),
                }
            }
        }
    }
}

/// `o[j] (+)= sums[j] as f32 · mult[j]` (`mult` of length 1: every column): the one float
/// expression every path ends with, one loop per case so that each vectorizes.
#[inline(always)]
fn scale_into(o: &mut [f32], sums: &[i32], mult: &[f32], accumulate: bool) {
    match (mult, accumulate) {
        (&[m], false) => o.iter_mut().zip(sums).for_each(|(o, &s)| *o = s as f32 * m),
        (&[m], true) => o
            .iter_mut()
            .zip(sums)
            .for_each(|(o, &s)| *o += s as f32 * m),
        (_, false) => {
            for ((o, &s), &m) in o.iter_mut().zip(sums).zip(mult) {
                *o = s as f32 * m;
            }
        }
        (_, true) => {
            for ((o, &s), &m) in o.iter_mut().zip(sums).zip(mult) {
                *o += s as f32 * m;
            }
        }
    }
}

/// Every row of `a` as its pairs `a[r, 2p] − a_zp`, `a[r, 2p + 1] − a_zp` (0 past the end of
/// the row), each pair one int32 holding the two int16 (the first in the low half): what
/// `vpmaddwd` multiplies against a pair of weights, broadcast from memory.
fn centered_pairs(a: &QuantRows) -> Vec<i32> {
    let pairs = a.k.div_ceil(2);
    let mut wide = vec![0i32; a.rows * pairs];
    let d = a.d as i16;
    for (r, out) in wide.chunks_exact_mut(pairs.max(1)).enumerate().take(a.rows) {
        let row = &a.s[r * a.stride..r * a.stride + 2 * pairs];
        for (o, two) in out.iter_mut().zip(row.chunks_exact(2)) {
            let lo = (two[0] as i16 + d) as u16 as u32;
            let hi = (two[1] as i16 + d) as u16 as u32;
            *o = (hi << 16 | lo) as i32;
        }
        if a.k % 2 == 1 {
            // The padding byte is 0, which centered would be d; the packed weights there are
            // 0 as well, so this only keeps the pair what the row is (a − a_zp, then 0).
            out[pairs - 1] &= 0xFFFF;
        }
    }
    wide
}

/// The int32 sums of rows `r0..r0 + block` of `a` (`wide`: its [`centered_pairs`] on the
/// AVX2 path) against one pair panel.
#[allow(clippy::too_many_arguments)]
fn panel_sums(
    a: &QuantRows,
    wide: &[i32],
    r0: usize,
    block: usize,
    w: &IntMatrix,
    panel: usize,
    pairs: usize,
    sums: &mut [[i32; NC]; MR],
) {
    #[cfg(target_arch = "x86_64")]
    if w.avx2 {
        let rows = &wide[r0 * pairs..(r0 + block) * pairs];
        // SAFETY: the CPU has AVX2 (the path was one it runs); the panel's pairs·NC·2 values
        // exist by construction of the packing, `rows` holds `block` rows of `pairs`.
        unsafe {
            match &w.packed {
                Packed::I8(p) => avx2::panel_sums(rows, pairs, block, p, panel, pairs, sums),
                Packed::I16(p) => avx2::panel_sums(rows, pairs, block, p, panel, pairs, sums),
                Packed::Quads(_) => unreachable!("quads take their own product"),
            }
        }
        return;
    }
    let _ = wide;
    match &w.packed {
        Packed::I8(p) => portable_panel_sums(a, r0, block, p, panel, pairs, sums),
        Packed::I16(p) => portable_panel_sums(a, r0, block, p, panel, pairs, sums),
        Packed::Quads(_) => unreachable!("quads take their own product"),
    }
}

#[cfg(test)]
pub(super) mod tests;
