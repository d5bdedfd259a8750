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
//! The files: the tile interface (here); `dispatch` the choice of kernel per set and tile
//! size; `generic` the portable kernels; `x86_64` the AVX2 and AVX-512 ones (an `aarch64`
//! NEON set would sit beside it; `x86_64/avx512_depthwise` the depthwise kernel of
//! [`super::DepthwiseConv`]); `packing` the geometry and the patch panels.

mod dispatch;
mod generic;
mod packing;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub(crate) use dispatch::{channel_tile, direct_block_tile, direct_tile, pixel_tile};
pub(crate) use packing::{Direct, Geo, Patches};
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_64::avx512_depthwise::{depthwise_block, DwBlock, DwRows};

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
    /// The widest instruction set this CPU has.
    pub(crate) fn best() -> Isa {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
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
