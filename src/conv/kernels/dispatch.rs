//! The choice of tile kernel: by instruction set, and by tile size (each kernel is compiled
//! per row or column count).

use super::generic::{chan_portable, tile_portable};
#[cfg(target_arch = "x86_64")]
use super::x86_64::{avx2, avx512};
use super::{Direct, Isa, RowTile, Tile, CHANNEL_TILE_COLS, ROW_TILE_KH};

/// Computes a pixel tile of `t.rows` (1 ..= `isa.mr()`) channels × up to `isa.nr()` positions.
///
/// # Safety
/// `isa` is available; every pointer of `t` is valid for what [`Tile`] says is read or written.
pub(crate) unsafe fn pixel_tile(isa: Isa, t: &Tile) {
    debug_assert!(t.rows >= 1 && t.rows <= isa.mr() && t.cols <= isa.nr());
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => match t.rows {
            8 => avx512::tile512::<8>(t),
            7 => avx512::tile512::<7>(t),
            6 => avx512::tile512::<6>(t),
            5 => avx512::tile512::<5>(t),
            4 => avx512::tile512::<4>(t),
            3 => avx512::tile512::<3>(t),
            2 => avx512::tile512::<2>(t),
            _ => avx512::tile512::<1>(t),
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => match t.rows {
            4 => avx2::tile256::<4>(t),
            3 => avx2::tile256::<3>(t),
            2 => avx2::tile256::<2>(t),
            _ => avx2::tile256::<1>(t),
        },
        _ => match t.rows {
            4 => tile_portable::<4>(t),
            3 => tile_portable::<3>(t),
            2 => tile_portable::<2>(t),
            _ => tile_portable::<1>(t),
        },
    }
}

/// Computes a channel tile: one block of `t.rows` (1 ..= `isa.wb()`) channels × `t.cols`
/// (1 ..= [`CHANNEL_TILE_COLS`]) positions.
///
/// # Safety
/// As [`pixel_tile`]; besides, `t.ldc · isa.wb()` fits an `i32`.
pub(crate) unsafe fn channel_tile(isa: Isa, t: &Tile) {
    debug_assert!(t.rows >= 1 && t.rows <= isa.wb());
    debug_assert!(t.cols >= 1 && t.cols <= CHANNEL_TILE_COLS);
    macro_rules! by_cols {
        ($($f:ident)::+) => {
            match t.cols {
                8 => $($f)::+::<8>(t),
                7 => $($f)::+::<7>(t),
                6 => $($f)::+::<6>(t),
                5 => $($f)::+::<5>(t),
                4 => $($f)::+::<4>(t),
                3 => $($f)::+::<3>(t),
                2 => $($f)::+::<2>(t),
                _ => $($f)::+::<1>(t),
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => by_cols!(avx512::chan512),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => by_cols!(avx2::chan256),
        _ => by_cols!(chan_portable),
    }
}

/// [`pixel_tile`] on a [`Direct`] panel (AVX-512 only).
///
/// # Safety
/// AVX-512F is available; `t` is valid as for [`pixel_tile`] except `x`, unused; `d` was made
/// by [`super::Patches::direct`] from an image that outlives the call.
pub(crate) unsafe fn direct_tile(t: &Tile, d: &Direct) {
    debug_assert!(t.rows >= 1 && t.rows <= Isa::Avx512.mr() && t.cols <= 32);
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! by_rows {
            ($sw:literal, $full:literal) => {
                match t.rows {
                    8 => avx512::direct512::<8, $sw, $full>(t, d),
                    7 => avx512::direct512::<7, $sw, $full>(t, d),
                    6 => avx512::direct512::<6, $sw, $full>(t, d),
                    5 => avx512::direct512::<5, $sw, $full>(t, d),
                    4 => avx512::direct512::<4, $sw, $full>(t, d),
                    3 => avx512::direct512::<3, $sw, $full>(t, d),
                    2 => avx512::direct512::<2, $sw, $full>(t, d),
                    _ => avx512::direct512::<1, $sw, $full>(t, d),
                }
            };
        }
        // A panel away from the image's edges reads every lane of every load.
        let full = || {
            d.taps[..d.tap_count]
                .iter()
                .all(|tap| tap.masks[0] == u16::MAX && tap.masks[1] == u16::MAX)
        };
        if d.stride == 1 && full() {
            by_rows!(1, true)
        } else if d.stride == 1 {
            by_rows!(1, false)
        } else {
            by_rows!(2, false)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("Direct panels are made for AVX-512 only ({t:?}, {d:?})")
}

/// One half (16 positions) of a stride-2 [`Direct`] panel × a whole block of up to 16
/// channels (AVX-512 only): the half's patches are shuffled out of the input once per row of
/// the patch matrix for all the block's channels, where [`direct_tile`] would redo it per
/// 8 channels.
///
/// # Safety
/// As [`direct_tile`], with `t.rows` <= 16 channels of a block, `t.cols` <= 16 positions
/// from the start of half `h` (`t.c` pointing at that half's first position).
pub(crate) unsafe fn direct_block_tile(t: &Tile, d: &Direct, h: usize) {
    debug_assert!(t.rows >= 1 && t.rows <= 16 && t.cols <= 16 && h < 2 && d.stride == 2);
    #[cfg(target_arch = "x86_64")]
    match t.rows {
        16 => avx512::block512::<16>(t, d, h),
        15 => avx512::block512::<15>(t, d, h),
        14 => avx512::block512::<14>(t, d, h),
        13 => avx512::block512::<13>(t, d, h),
        12 => avx512::block512::<12>(t, d, h),
        11 => avx512::block512::<11>(t, d, h),
        10 => avx512::block512::<10>(t, d, h),
        9 => avx512::block512::<9>(t, d, h),
        8 => avx512::block512::<8>(t, d, h),
        7 => avx512::block512::<7>(t, d, h),
        6 => avx512::block512::<6>(t, d, h),
        5 => avx512::block512::<5>(t, d, h),
        4 => avx512::block512::<4>(t, d, h),
        3 => avx512::block512::<3>(t, d, h),
        2 => avx512::block512::<2>(t, d, h),
        _ => avx512::block512::<1>(t, d, h),
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("Direct panels are made for AVX-512 only ({t:?}, {d:?}, {h})")
}

/// Computes a [`RowTile`] (AVX-512: 8 channels × 16 positions; AVX2: 4 × 8).
///
/// # Safety
/// `isa` is AVX-512 or AVX2 and available; `t.w` holds `t.c · t.kh · t.kw` rows of
/// `isa.row_channels()` weights at stride `t.ldw`, `t.bias` that many values; every
/// input row offset plus `t.col` plus the kernel column of each lane in its mask is inside
/// the image's plane; `t.out` holds `t.rows` rows of `t.ldc` with room for what is written.
pub(crate) unsafe fn row_tile(isa: Isa, t: &RowTile) {
    debug_assert!(t.kh <= ROW_TILE_KH && t.kw <= ROW_TILE_KH);
    debug_assert!(t.rows >= 1 && t.rows <= isa.row_channels() && t.cols.is_multiple_of(2));
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::rows512::<8>(t),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::rows256::<4>(t),
        _ => unreachable!("no row tile for {isa:?}"),
    }
}
