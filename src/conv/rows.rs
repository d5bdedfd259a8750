//! The row tiles' walk over an image: convolutions of few input channels at stride 1 with a
//! 2×2 max pooling fused after a ReLU-like clamp (a conv stack's first layer: one channel, 9
//! taps), where the pixel tiles spend as much on each panel's set-up, bias, clamp and stores
//! as on its few FMAs per output, and write the full-size output for the pooling to read.
//!
//! Each tile is a vector of positions along two output rows × a few channels, its taps'
//! input vectors loaded straight from the input rows (masks only at the rows' ends, zeros for
//! rows in the padding); it stores the 2×2 maxima. Without a pooling the row tiles measured
//! slower than the pixel tiles (16 channels × 16 positions: 0.095 ms against 0.067 for the
//! captcha model's first layer), so they take only pooled convolutions.

use super::kernels::{self, Geo, RowTile, ROW_TILE_KH};
use super::PackedConv;

/// The longest reduction (input channels × kernel positions) row tiles take: beyond it the
/// pixel tiles' two vectors per weight pay.
const ROW_TILE_K: usize = 27;

impl PackedConv {
    /// Whether row tiles compute images of `geo`.
    pub(super) fn by_rows(&self, geo: &Geo) -> bool {
        self.pool
            && self.pools_in_registers()
            && self.isa.row_cols() > 0
            && geo.sh == 1
            && geo.sw == 1
            && geo.dh == 1
            && geo.dw == 1
            && geo.kh <= ROW_TILE_KH
            && geo.kw <= ROW_TILE_KH
            && geo.k() <= ROW_TILE_K
    }

    /// Whether the clamp leaves values the 2×2 maxima may take in any order: its low bound
    /// is +0 or more, so none is NaN or −0 (`max` with the bound turns both into it), and
    /// a high bound keeps that (the minimum of such a value and a bound not NaN).
    fn pools_in_registers(&self) -> bool {
        self.clamp
            .lo
            .is_some_and(|lo| lo >= 0.0 && lo.is_sign_positive())
    }

    /// One image of group `gg` (`x`, `[c, h, w]`) into `out` (`[channels of the group,
    /// oh / 2, ow / 2]` of the pooled output).
    pub(super) fn run_rows(&self, geo: Geo, gg: usize, x: &[f32], out: &mut [f32]) {
        let isa = self.isa;
        let cog = self.pool_spec.output_channels / self.group;
        let (wb, rc, v) = (isa.wb(), isa.row_channels(), isa.row_cols());
        let (k, blocks) = (geo.k(), cog.div_ceil(wb));
        // The rows and columns the pooling reads (a last odd one is dropped).
        let (oh, ow) = (geo.oh / 2 * 2, geo.ow / 2 * 2);
        let pp = oh / 2 * (ow / 2);
        assert!(x.len() >= geo.c * geo.h * geo.w && out.len() >= cog * pp);
        assert!(rc > 0 && wb.is_multiple_of(rc) && v.is_multiple_of(2));
        for y in (0..oh).step_by(2) {
            let mut input_rows = [None; ROW_TILE_KH + 1];
            for (i, row) in input_rows[..geo.kh + 1].iter_mut().enumerate() {
                let iy = (y + i) as isize - geo.pt as isize;
                if iy >= 0 && (iy as usize) < geo.h {
                    *row = Some(iy * geo.w as isize);
                }
            }
            for x0 in (0..ow).step_by(v) {
                let cols = v.min(ow - x0);
                let col = x0 as isize - geo.pl as isize;
                let mut masks = [0u16; ROW_TILE_KH];
                for (kx, m) in masks[..geo.kw].iter_mut().enumerate() {
                    // Lanes j < cols with 0 <= col + kx + j < w.
                    let first = col + kx as isize;
                    let lo = (-first).clamp(0, cols as isize) as u32;
                    let hi = (geo.w as isize - first).clamp(0, cols as isize) as u32;
                    if hi > lo {
                        *m = ((u32::MAX >> (32 - (hi - lo))) << lo) as u16;
                    }
                }
                let at = y / 2 * (ow / 2) + x0 / 2;
                for b in 0..blocks {
                    let block = gg * blocks + b;
                    let channels = wb.min(cog - b * wb);
                    for r0 in (0..channels).step_by(rc) {
                        let t = RowTile {
                            x: x.as_ptr(),
                            plane: geo.h * geo.w,
                            c: geo.c,
                            kh: geo.kh,
                            kw: geo.kw,
                            input_rows,
                            col,
                            masks,
                            w: self.weights[block * k * wb + r0..].as_ptr(),
                            ldw: wb,
                            bias: self.bias[block * wb + r0..].as_ptr(),
                            out: out[(b * wb + r0) * pp + at..].as_mut_ptr(),
                            ldc: pp,
                            rows: rc.min(channels - r0),
                            cols,
                            clamp: self.clamp,
                        };
                        // SAFETY: the op's isa is available and has row tiles; the block's
                        // weights are k rows of wb >= r0 + rc values, its bias wb; the input
                        // rows are inside the image and each mask's lanes read inside their
                        // row (`col + kx + j` in 0..w); `out` holds the group's channels,
                        // pp apart, and the tile writes cols / 2 values of its channels from
                        // `at`, inside a pooled row; the clamp's low bound is +0 or more.
                        unsafe { kernels::row_tile(isa, &t) };
                    }
                }
            }
        }
    }
}
