//! The depthwise kernels' interface: one image's block of channels (16 a vector with
//! AVX-512, 8 with AVX2+FMA), the ring of channel-interleaved input rows it reads, and the
//! choice of kernel by instruction set. Both kernels compute the same sums in the same order
//! (bias, then one FMA per tap in kernel order, then the clamp), so they give the same bits.

use super::{avx2_depthwise, avx512_depthwise};
use crate::conv::kernels::{Clamp, Geo, Isa};

/// One image's block of up to `lanes` channels (the kernel's vector width).
pub(crate) struct DwBlock {
    pub(crate) geo: Geo,
    /// Channel `c`'s `[h, w]` plane at `x + c·h·w`, for `c < channels`.
    pub(crate) x: *const f32,
    pub(crate) channels: usize,
    /// `[kh · kw][lanes]`, zero past `channels`.
    pub(crate) w: *const f32,
    /// `[lanes]`.
    pub(crate) bias: *const f32,
    /// Channel `c`'s `[oh, ow]` plane at `out + c·oh·ow`.
    pub(crate) out: *mut f32,
    pub(crate) clamp: Clamp,
}

/// The transposed input rows: a ring of `span` rows of `wp` positions × `lanes` channels
/// with the padding columns zero, and one zero row for the padding rows.
pub(crate) struct DwRows {
    pub(super) lanes: usize,
    pub(super) span: usize,
    pub(super) wp: usize,
    pub(super) rows: Vec<f32>,
    pub(super) zero: Vec<f32>,
    /// The input row each ring slot holds (`usize::MAX`: none).
    pub(super) held: Vec<usize>,
}

impl DwRows {
    /// The rows for blocks of geometry `g` on `lanes` channels a vector.
    pub(crate) fn new(g: &Geo, lanes: usize) -> DwRows {
        let span = (g.kh - 1) * g.dh + 1;
        // Every column a group of `lanes` output columns reads, the last group's unused
        // lanes included, so the sums never test bounds.
        let ow = g.ow.div_ceil(lanes) * lanes;
        let wp = (g.pl + g.w).max((ow.max(1) - 1) * g.sw + (g.kw - 1) * g.dw + 1);
        DwRows {
            lanes,
            span,
            wp,
            rows: vec![0.0; span * wp * lanes],
            zero: vec![0.0; wp * lanes],
            held: vec![usize::MAX; span],
        }
    }

    /// The ring slot holding input row `iy` (filled by `fill` if it holds another), or the
    /// zero row for a row outside the image.
    ///
    /// # Safety
    /// `fill` writes `wp · lanes` floats at the pointer it is given.
    pub(super) unsafe fn row(
        &mut self,
        iy: usize,
        h: usize,
        fill: impl FnOnce(*mut f32),
    ) -> *const f32 {
        if iy >= h {
            return self.zero.as_ptr();
        }
        let slot = iy % self.span;
        let dst = self.rows.as_mut_ptr().add(slot * self.wp * self.lanes);
        if self.held[slot] != iy {
            fill(dst);
            self.held[slot] = iy;
        }
        dst
    }
}

/// The block's whole output on `isa`'s kernel.
///
/// # Safety
/// `isa` is AVX-512 or AVX2 and the CPU runs it; `b` describes readable input planes and
/// writable output planes of its geometry, its weights and bias are blocks of `isa.wb()`
/// channels; `rows` was made for that geometry and width; `1 <= channels <= isa.wb()`.
pub(crate) unsafe fn depthwise_block(isa: Isa, b: &DwBlock, rows: &mut DwRows) {
    debug_assert!(rows.lanes == isa.wb() && (1..=rows.lanes).contains(&b.channels));
    match isa {
        Isa::Avx512 => avx512_depthwise::depthwise_block(b, rows),
        Isa::Avx2 => avx2_depthwise::depthwise_block(b, rows),
        Isa::Portable => unreachable!("no portable depthwise kernel"),
    }
}
