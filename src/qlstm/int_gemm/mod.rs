//! The quantized LSTM's products: `Σ_k a[r, k]·w[k, c]` exact in int32 (wrapping, as MLAS
//! sums), then scaled into float32.
//!
//! `a` holds quantized activations minus their zero point (−255 to 255) and `w` weights minus
//! theirs. The weights are packed once into panels of [`NC`] columns, each panel holding, for
//! every pair of rows k, k+1 of `w`, the two values of each column side by side: the layout of
//! x86's `vpmaddwd`, which multiplies 16-bit pairs and adds each pair into one int32 lane,
//! exactly (a pair's sum stays under 2¹⁸). Weights that fit in 8 bits (int8 weights with zero
//! point 0, the usual quantization) are stored in 8 bits and widened in registers, so a
//! time step reads half the bytes. Every path gives the same integers; the float scaling is
//! the same expression on every path.
//!
//! The files: the packing and the product (here), the portable panel sums (`generic`) and the
//! AVX2 ones (`avx2`), chosen per call by what the CPU has.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod generic;

use generic::portable_panel_sums;

/// Columns per panel: four vectors of eight int32 sums.
pub(super) const NC: usize = 32;

/// Rows of `a` per pass over a panel.
const MR: usize = 4;

/// `w` (`k × n`, minus its zero point) packed for [`int_product`].
#[derive(Debug, Clone)]
pub(super) struct IntMatrix {
    pub k: usize,
    pub n: usize,
    packed: Packed,
}

#[derive(Debug, Clone)]
enum Packed {
    I8(Vec<i8>),
    I16(Vec<i16>),
}

impl IntMatrix {
    /// Packs the row-major `k × n` values of `data`.
    pub fn new(k: usize, n: usize, data: &[i16]) -> IntMatrix {
        assert_eq!(data.len(), k * n);
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
        IntMatrix { k, n, packed }
    }

    fn index(pairs: usize, kk: usize, c: usize) -> usize {
        ((c / NC * pairs + kk / 2) * NC + c % NC) * 2 + kk % 2
    }

    /// Whether the weights are stored in 8 bits.
    #[cfg(test)]
    fn narrow(&self) -> bool {
        matches!(self.packed, Packed::I8(_))
    }
}

/// `out[r, c] (+)= (Σ_k a[r, k]·w[k, c]) as f32 · mult[c]` for `rows` rows (`mult` of length
/// 1 applies to every column); `a` is `rows × w.k`, `out` `rows × w.n`.
pub(super) fn int_product(
    a: &[i16],
    rows: usize,
    w: &IntMatrix,
    mult: &[f32],
    out: &mut [f32],
    accumulate: bool,
) {
    assert_eq!(a.len(), rows * w.k);
    assert_eq!(out.len(), rows * w.n);
    assert!(mult.len() == 1 || mult.len() == w.n);
    let pairs = w.k.div_ceil(2);
    let mut sums = [[0i32; NC]; MR];
    for panel in 0..w.n.div_ceil(NC) {
        let cols = NC.min(w.n - panel * NC);
        for r0 in (0..rows).step_by(MR) {
            let block = MR.min(rows - r0);
            let a_rows = &a[r0 * w.k..(r0 + block) * w.k];
            panel_sums(a_rows, block, w, panel, pairs, &mut sums);
            for (i, row_sums) in sums.iter().take(block).enumerate() {
                let c0 = panel * NC;
                let o = &mut out[(r0 + i) * w.n + c0..(r0 + i) * w.n + c0 + cols];
                for (j, (o, &s)) in o.iter_mut().zip(row_sums).enumerate() {
                    let m = if mult.len() == 1 {
                        mult[0]
                    } else {
                        mult[c0 + j]
                    };
                    let v = s as f32 * m;
                    if accumulate {
                        *o += v;
                    } else {
                        *o = v;
                    }
                }
            }
        }
    }
}

/// The int32 sums of `block` rows of `a` against one panel.
fn panel_sums(
    a: &[i16],
    block: usize,
    w: &IntMatrix,
    panel: usize,
    pairs: usize,
    sums: &mut [[i32; NC]; MR],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked above); the panel's pairs·NC·2 values exist by
        // construction of the packing, `a` holds block·k values (asserted by the caller).
        unsafe {
            match &w.packed {
                Packed::I8(p) => avx2::panel_sums_i8(a, block, w.k, p, panel, pairs, sums),
                Packed::I16(p) => avx2::panel_sums_i16(a, block, w.k, p, panel, pairs, sums),
            }
        }
        return;
    }
    match &w.packed {
        Packed::I8(p) => portable_panel_sums(a, block, w.k, p, panel, pairs, sums),
        Packed::I16(p) => portable_panel_sums(a, block, w.k, p, panel, pairs, sums),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[i16], rows: usize, k: usize, n: usize, w: &[i16]) -> Vec<i32> {
        let mut out = vec![0i32; rows * n];
        for r in 0..rows {
            for c in 0..n {
                for kk in 0..k {
                    out[r * n + c] =
                        out[r * n + c].wrapping_add(a[r * k + kk] as i32 * w[kk * n + c] as i32);
                }
            }
        }
        out
    }

    /// Every shape class (k odd and even, n on and off panel edges, rows on and off the row
    /// block) in both storages, against the plain triple loop; the AVX2 path where the CPU has
    /// it, so the portable one is compared too.
    #[test]
    fn products_are_exact_in_both_storages_and_paths() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |range: i32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % (2 * range as u64 + 1)) as i32 - range
        };
        for (rows, k, n) in [
            (1, 1, 1),
            (3, 7, 33),
            (4, 64, 64),
            (6, 255, 97),
            (9, 512, 128),
        ] {
            for w_range in [127, 255] {
                let a: Vec<i16> = (0..rows * k).map(|_| next(255) as i16).collect();
                let mut w: Vec<i16> = (0..k * n).map(|_| next(w_range) as i16).collect();
                // uint8 weights minus their zero point reach ±255: 16-bit storage.
                w[0] = w_range as i16;
                let m = IntMatrix::new(k, n, &w);
                assert_eq!(m.narrow(), w_range == 127);
                let want = naive(&a, rows, k, n, &w);
                for accumulate in [false, true] {
                    let mut out = vec![1.0f32; rows * n];
                    int_product(&a, rows, &m, &[0.5], &mut out, accumulate);
                    for (o, &s) in out.iter().zip(&want) {
                        let expect = s as f32 * 0.5 + if accumulate { 1.0 } else { 0.0 };
                        assert_eq!(*o, expect, "rows {rows} k {k} n {n}");
                    }
                }
                let pairs = k.div_ceil(2);
                let mut sums = [[0i32; NC]; MR];
                for panel in 0..n.div_ceil(NC) {
                    let block = MR.min(rows);
                    match &m.packed {
                        Packed::I8(p) => {
                            portable_panel_sums(&a, block, k, p, panel, pairs, &mut sums)
                        }
                        Packed::I16(p) => {
                            portable_panel_sums(&a, block, k, p, panel, pairs, &mut sums)
                        }
                    }
                    for (i, row) in sums.iter().take(block).enumerate() {
                        for (j, &s) in row.iter().enumerate().take(NC.min(n - panel * NC)) {
                            assert_eq!(s, want[i * n + panel * NC + j]);
                        }
                    }
                }
            }
        }
    }
}
