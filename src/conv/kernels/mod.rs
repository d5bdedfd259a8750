//! The arithmetic of [`super::PackedConv`]: a product of packed weights (`[cout, k]`) by
//! panels of the input's patches (`[k, nr]`, packed here without a padded copy of the input),
//! written straight into the NCHW output, bias first and the fused clamp last.
//!
//! Two tile shapes: a *pixel* tile holds a few output channels × a panel of output positions,
//! a vector over positions each (what a long row of outputs wants); a *channel* tile holds a
//! block of output channels, a vector over channels, × a few positions (what a short one
//! wants: a convolution down to 4 frequencies, or a frame of a stream). Each comes in AVX-512,
//! AVX2+FMA and portable (plain multiply-add) kernels computing the same sums; which set runs
//! is chosen once, when the op is built ([`Isa::best`]), since the weights are packed for it.
//! The AVX-512 pixel tile also reads the input itself ([`direct_tile`]) where a panel's
//! patches are a masked load (or two and a shuffle) per row of the patch matrix.
//!
//! A *row* tile ([`row_tile`], AVX-512 and AVX2) serves few input channels at stride 1 with
//! a 2×2 max pooling fused (a conv stack's first layer: one channel, 9 taps): a vector of
//! positions along two output rows × a few channels, each tap's input vector loaded once
//! for them, the pooling done in registers.
//!
//! The files: the tile interface (here); `dispatch` the choice of kernel per set and tile
//! size; `generic` the portable kernels; `x86_64` the AVX2 and AVX-512 ones (an `aarch64`
//! NEON set would sit beside it; `x86_64/avx512_depthwise` and `x86_64/avx2_depthwise` the
//! depthwise kernels of [`super::DepthwiseConv`], `x86_64/depthwise` their interface);
//! `packing` the geometry and the patch panels.

mod dispatch;
mod generic;
mod packing;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub(crate) use dispatch::{channel_tile, direct_block_tile, direct_tile, pixel_tile, row_tile};
pub(crate) use packing::{Direct, Geo, Patches};
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_64::depthwise::{depthwise_block, DwBlock, DwRows};

/// The instruction set a [`super::PackedConv`] was packed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Isa {
    /// Plain Rust: pixel tiles of 4 channels × 8 positions, channel blocks of 4.
    Portable,
    /// AVX2 and FMA: pixel tiles of 4 × 2 vectors of 8, channel blocks of 8.
    Avx2,
    /// AVX-512F: pixel tiles of 8 × 2 vectors of 16, channel blocks of 16.
    Avx512,
}

impl Isa {
    /// The widest instruction set this CPU has, no wider than the one the products and
    /// activations use ([`crate::kernels::Isa::selected`]: `RNN_RUN_ISA=avx2` or `portable`
    /// picks a lower set for the convolutions too, so a whole model runs as on that CPU).
    pub(crate) fn best() -> Isa {
        use crate::kernels::Isa as Selected;
        let allowed: &[Isa] = match Selected::selected() {
            Selected::Avx512 => &[Isa::Avx512, Isa::Avx2],
            Selected::Avx2 => &[Isa::Avx2],
            Selected::Portable => &[],
        };
        allowed
            .iter()
            .copied()
            .find(|isa| isa.available())
            .unwrap_or(Isa::Portable)
    }

    /// Whether this CPU runs it.
    pub(crate) fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Output channels per pixel tile (a divisor of [`Isa::wb`]).
    pub(crate) fn mr(self) -> usize {
        match self {
            Isa::Portable => 4,
            Isa::Avx2 => 4,
            Isa::Avx512 => 8,
        }
    }

    /// Output channels per block of packed weights (`[k][wb]`, zero-padded), one vector.
    pub(crate) fn wb(self) -> usize {
        match self {
            Isa::Portable => 4,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }

    /// Output channels per row tile (a divisor of [`Isa::wb`]; 0 without row tiles).
    pub(crate) fn row_channels(self) -> usize {
        match self {
            Isa::Avx512 => 8,
            Isa::Avx2 => 4,
            Isa::Portable => 0,
        }
    }

    /// Output positions per row tile (0 without row tiles).
    pub(crate) fn row_cols(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
            Isa::Portable => 0,
        }
    }

    /// Output positions per pixel tile: the width of a packed panel.
    pub(crate) fn nr(self) -> usize {
        match self {
            Isa::Portable => 8,
            Isa::Avx2 => 16,
            Isa::Avx512 => 32,
        }
    }
}

/// The most output positions a channel tile holds.
pub(crate) const CHANNEL_TILE_COLS: usize = 8;

/// What is applied to the sums before they are stored: `max(x, lo)` then `min(x, hi)`, as
/// tract's `Max` and `Min` with a scalar (a NaN sum becomes the bound, as `f32::max` does).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Clamp {
    pub(crate) lo: Option<f32>,
    pub(crate) hi: Option<f32>,
}

/// One tile: `rows` output channels × `cols` output positions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tile {
    /// The reduction length (input channels × kernel positions).
    pub(crate) k: usize,
    /// Packed weights: row `kk` at `w + kk * ldw`; a pixel tile reads `rows` values of each,
    /// a channel tile `isa.wb()`.
    pub(crate) w: *const f32,
    pub(crate) ldw: usize,
    /// The patches: row `kk` at `x + kk * ldx`; a pixel tile reads `nr` values of each
    /// (all readable), a channel tile `cols`.
    pub(crate) x: *const f32,
    pub(crate) ldx: usize,
    /// The bias: as many values as weights are read per row.
    pub(crate) bias: *const f32,
    /// The output: channel `r` at `c + r * ldc`, `cols` values written for `rows` channels.
    pub(crate) c: *mut f32,
    pub(crate) ldc: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) clamp: Clamp,
}

/// The most kernel rows a [`RowTile`] takes, and the input rows it reads (one more, pooled).
pub(crate) const ROW_TILE_KH: usize = 5;

/// One row tile: `rows` output channels (of a block of packed weights) × `cols` (even)
/// positions along two output rows, whose 2×2 maxima are stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowTile {
    /// Channel 0 of the input image, its planes `plane` apart.
    pub(crate) x: *const f32,
    pub(crate) plane: usize,
    pub(crate) c: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    /// Per input row the tile reads (`kh + 1`), its offset in a plane, or
    /// `None` in the padding (zeros).
    pub(crate) input_rows: [Option<isize>; ROW_TILE_KH + 1],
    /// The offset along an input row of the first position's kernel column 0.
    pub(crate) col: isize,
    /// Per kernel column, which lanes read inside the row (the others read zeros).
    pub(crate) masks: [u16; ROW_TILE_KH],
    /// Packed weights (`[k][ldw]`, `isa.row_channels()` readable per row) and bias.
    pub(crate) w: *const f32,
    pub(crate) ldw: usize,
    pub(crate) bias: *const f32,
    /// The output: channel `r` at `out + r * ldc`, `cols / 2` values written.
    pub(crate) out: *mut f32,
    pub(crate) ldc: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// With a low bound of +0 or more, so that the maxima of the clamped values (never NaN,
    /// never −0) are the same whatever order they are taken in.
    pub(crate) clamp: Clamp,
}
