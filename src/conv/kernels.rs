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

/// Computes a pixel tile of `t.rows` (1 ..= `isa.mr()`) channels × up to `isa.nr()` positions.
///
/// # Safety
/// `isa` is available; every pointer of `t` is valid for what [`Tile`] says is read or written.
pub(crate) unsafe fn pixel_tile(isa: Isa, t: &Tile) {
    debug_assert!(t.rows >= 1 && t.rows <= isa.mr() && t.cols <= isa.nr());
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => match t.rows {
            8 => x86::tile512::<8>(t),
            7 => x86::tile512::<7>(t),
            6 => x86::tile512::<6>(t),
            5 => x86::tile512::<5>(t),
            4 => x86::tile512::<4>(t),
            3 => x86::tile512::<3>(t),
            2 => x86::tile512::<2>(t),
            _ => x86::tile512::<1>(t),
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => match t.rows {
            4 => x86::tile256::<4>(t),
            3 => x86::tile256::<3>(t),
            2 => x86::tile256::<2>(t),
            _ => x86::tile256::<1>(t),
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
        Isa::Avx512 => by_cols!(x86::chan512),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => by_cols!(x86::chan256),
        _ => by_cols!(chan_portable),
    }
}

/// Spreads the 16 bits of `m` to the even bits of a 32-bit mask (a stride-2 load's lanes).
fn spread_even(m: u16) -> u32 {
    let mut x = m as u32;
    x = (x | x << 8) & 0x00ff_00ff;
    x = (x | x << 4) & 0x0f0f_0f0f;
    x = (x | x << 2) & 0x3333_3333;
    (x | x << 1) & 0x5555_5555
}

/// The most kernel positions a [`Direct`] panel takes (5 × 5).
const MAX_TAPS: usize = 25;

/// One kernel position of a [`Direct`] panel: its offset from a column's input position and
/// the load masks of the two halves (stride 1: one each; stride 2: two each).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DirectTap {
    offset: isize,
    masks: [u16; 4],
}

/// A panel the AVX-512 pixel tile reads straight from the input (see [`Patches::direct`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Direct {
    /// Channel 0 of the group's image.
    image: *const f32,
    plane: usize,
    channels: usize,
    /// Each half's first column's input position.
    base: [isize; 2],
    stride: usize,
    taps: [DirectTap; MAX_TAPS],
    tap_count: usize,
}

/// [`pixel_tile`] on a [`Direct`] panel (AVX-512 only).
///
/// # Safety
/// AVX-512F is available; `t` is valid as for [`pixel_tile`] except `x`, unused; `d` was made
/// by [`Patches::direct`] from an image that outlives the call.
pub(crate) unsafe fn direct_tile(t: &Tile, d: &Direct) {
    debug_assert!(t.rows >= 1 && t.rows <= Isa::Avx512.mr() && t.cols <= 32);
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! by_rows {
            ($sw:literal) => {
                match t.rows {
                    8 => x86::direct512::<8, $sw>(t, d),
                    7 => x86::direct512::<7, $sw>(t, d),
                    6 => x86::direct512::<6, $sw>(t, d),
                    5 => x86::direct512::<5, $sw>(t, d),
                    4 => x86::direct512::<4, $sw>(t, d),
                    3 => x86::direct512::<3, $sw>(t, d),
                    2 => x86::direct512::<2, $sw>(t, d),
                    _ => x86::direct512::<1, $sw>(t, d),
                }
            };
        }
        if d.stride == 1 {
            by_rows!(1)
        } else {
            by_rows!(2)
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
        16 => x86::block512::<16>(t, d, h),
        15 => x86::block512::<15>(t, d, h),
        14 => x86::block512::<14>(t, d, h),
        13 => x86::block512::<13>(t, d, h),
        12 => x86::block512::<12>(t, d, h),
        11 => x86::block512::<11>(t, d, h),
        10 => x86::block512::<10>(t, d, h),
        9 => x86::block512::<9>(t, d, h),
        8 => x86::block512::<8>(t, d, h),
        7 => x86::block512::<7>(t, d, h),
        6 => x86::block512::<6>(t, d, h),
        5 => x86::block512::<5>(t, d, h),
        4 => x86::block512::<4>(t, d, h),
        3 => x86::block512::<3>(t, d, h),
        2 => x86::block512::<2>(t, d, h),
        _ => x86::block512::<1>(t, d, h),
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("Direct panels are made for AVX-512 only ({t:?}, {d:?}, {h})")
}

unsafe fn chan_portable<const NP: usize>(t: &Tile) {
    const WB: usize = 4;
    let bias: [f32; WB] = std::ptr::read_unaligned(t.bias as *const [f32; WB]);
    let mut acc = [bias; NP];
    for kk in 0..t.k {
        let w: [f32; WB] = std::ptr::read_unaligned(t.w.add(kk * t.ldw) as *const [f32; WB]);
        let x = t.x.add(kk * t.ldx);
        for (j, acc) in acc.iter_mut().enumerate() {
            let x = *x.add(j);
            for r in 0..WB {
                acc[r] += w[r] * x;
            }
        }
    }
    for (j, acc) in acc.iter().enumerate() {
        for (r, &a) in acc.iter().enumerate().take(t.rows) {
            *t.c.add(r * t.ldc + j) = t.clamp.apply(a);
        }
    }
}

impl Clamp {
    fn apply(self, mut a: f32) -> f32 {
        if let Some(lo) = self.lo {
            a = a.max(lo);
        }
        if let Some(hi) = self.hi {
            a = a.min(hi);
        }
        a
    }
}

unsafe fn tile_portable<const R: usize>(t: &Tile) {
    const NR: usize = 8;
    let mut acc = [[0f32; NR]; R];
    for (r, acc) in acc.iter_mut().enumerate() {
        *acc = [*t.bias.add(r); NR];
    }
    for kk in 0..t.k {
        let x: [f32; NR] = std::ptr::read_unaligned(t.x.add(kk * t.ldx) as *const [f32; NR]);
        let w: [f32; R] = std::ptr::read_unaligned(t.w.add(kk * t.ldw) as *const [f32; R]);
        for r in 0..R {
            for j in 0..NR {
                acc[r][j] += w[r] * x[j];
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let c = std::slice::from_raw_parts_mut(t.c.add(r * t.ldc), t.cols);
        for (c, &a) in c.iter_mut().zip(acc) {
            *c = t.clamp.apply(a);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Direct, Panel, Patches, Tile};
    use std::arch::x86_64::*;

    /// A channel tile: 16 channels in a vector, `NP` positions, written with a scatter
    /// (channel `r` of position `j` to `c + r·ldc + j`).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn chan512<const NP: usize>(t: &Tile) {
        let mut acc = [_mm512_loadu_ps(t.bias); NP];
        let mut w = t.w;
        let mut x = t.x;
        for _ in 0..t.k {
            let wv = _mm512_loadu_ps(w);
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_fmadd_ps(wv, _mm512_set1_ps(*x.add(j)), *acc);
            }
            w = w.add(t.ldw);
            x = x.add(t.ldx);
        }
        if let Some(lo) = t.clamp.lo {
            let lo = _mm512_set1_ps(lo);
            for acc in &mut acc {
                *acc = _mm512_max_ps(*acc, lo);
            }
        }
        if let Some(hi) = t.clamp.hi {
            let hi = _mm512_set1_ps(hi);
            for acc in &mut acc {
                *acc = _mm512_min_ps(*acc, hi);
            }
        }
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let index = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(t.ldc as i32));
        let mask = if t.rows >= 16 {
            0xffff
        } else {
            ((1u32 << t.rows) - 1) as __mmask16
        };
        for (j, acc) in acc.iter().enumerate() {
            _mm512_mask_i32scatter_ps::<4>(t.c.add(j), mask, index, *acc);
        }
    }

    /// [`chan512`] with 8 channels in a vector, stored channel by channel.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn chan256<const NP: usize>(t: &Tile) {
        let mut acc = [_mm256_loadu_ps(t.bias); NP];
        let mut w = t.w;
        let mut x = t.x;
        for _ in 0..t.k {
            let wv = _mm256_loadu_ps(w);
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(wv, _mm256_broadcast_ss(&*x.add(j)), *acc);
            }
            w = w.add(t.ldw);
            x = x.add(t.ldx);
        }
        if let Some(lo) = t.clamp.lo {
            let lo = _mm256_set1_ps(lo);
            for acc in &mut acc {
                *acc = _mm256_max_ps(*acc, lo);
            }
        }
        if let Some(hi) = t.clamp.hi {
            let hi = _mm256_set1_ps(hi);
            for acc in &mut acc {
                *acc = _mm256_min_ps(*acc, hi);
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), *acc);
            for (r, &v) in lanes.iter().enumerate().take(t.rows) {
                *t.c.add(r * t.ldc + j) = v;
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile512<const R: usize>(t: &Tile) {
        let (mut acc0, mut acc1) = bias512::<R>(t);
        let mut w = t.w;
        let mut x = t.x;
        for _ in 0..t.k {
            let x0 = _mm512_loadu_ps(x);
            let x1 = _mm512_loadu_ps(x.add(16));
            fma512::<R>(w, x0, x1, &mut acc0, &mut acc1);
            w = w.add(t.ldw);
            x = x.add(t.ldx);
        }
        store512::<R>(t, acc0, acc1);
    }

    /// [`tile512`] reading the input itself instead of a packed panel: each half of the
    /// panel lies in one output row, so a row of patches is one masked load at stride 1, or
    /// the even lanes of two at stride 2 (`SW`).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn direct512<const R: usize, const SW: usize>(t: &Tile, d: &Direct) {
        let (mut acc0, mut acc1) = bias512::<R>(t);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let mut w = t.w;
        let taps = &d.taps[..d.tap_count];
        for ci in 0..d.channels {
            let image = d.image.wrapping_add(ci * d.plane);
            for tap in taps {
                let p0 = image.wrapping_offset(d.base[0] + tap.offset);
                let p1 = image.wrapping_offset(d.base[1] + tap.offset);
                let (x0, x1) = if SW == 1 {
                    (
                        _mm512_maskz_loadu_ps(tap.masks[0], p0),
                        _mm512_maskz_loadu_ps(tap.masks[1], p1),
                    )
                } else {
                    let a = _mm512_maskz_loadu_ps(tap.masks[0], p0);
                    let b = _mm512_maskz_loadu_ps(tap.masks[1], p0.wrapping_add(16));
                    let c = _mm512_maskz_loadu_ps(tap.masks[2], p1);
                    let e = _mm512_maskz_loadu_ps(tap.masks[3], p1.wrapping_add(16));
                    (
                        _mm512_permutex2var_ps(a, even, b),
                        _mm512_permutex2var_ps(c, even, e),
                    )
                };
                fma512::<R>(w, x0, x1, &mut acc0, &mut acc1);
                w = w.add(t.ldw);
            }
        }
        store512::<R>(t, acc0, acc1);
    }

    /// [`super::direct_block_tile`]: `R` channels × the 16 positions of half `h`, stride 2.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block512<const R: usize>(t: &Tile, d: &Direct, h: usize) {
        let (mut acc, _) = bias512::<R>(t);
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let mut w = t.w;
        let taps = &d.taps[..d.tap_count];
        let base = d.base[h];
        for ci in 0..d.channels {
            let image = d.image.wrapping_add(ci * d.plane);
            for tap in taps {
                let p = image.wrapping_offset(base + tap.offset);
                let a = _mm512_maskz_loadu_ps(tap.masks[2 * h], p);
                let b = _mm512_maskz_loadu_ps(tap.masks[2 * h + 1], p.wrapping_add(16));
                let x = _mm512_permutex2var_ps(a, even, b);
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(_mm512_set1_ps(*w.add(r)), x, *acc);
                }
                w = w.add(t.ldw);
            }
        }
        if let Some(lo) = t.clamp.lo {
            let lo = _mm512_set1_ps(lo);
            for acc in &mut acc {
                *acc = _mm512_max_ps(*acc, lo);
            }
        }
        if let Some(hi) = t.clamp.hi {
            let hi = _mm512_set1_ps(hi);
            for acc in &mut acc {
                *acc = _mm512_min_ps(*acc, hi);
            }
        }
        let m = lanes16(t.cols);
        for (r, acc) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(t.c.add(r * t.ldc), m, *acc);
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn bias512<const R: usize>(t: &Tile) -> ([__m512; R], [__m512; R]) {
        let mut acc = [_mm512_setzero_ps(); R];
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = _mm512_set1_ps(*t.bias.add(r));
        }
        (acc, acc)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn fma512<const R: usize>(
        w: *const f32,
        x0: __m512,
        x1: __m512,
        acc0: &mut [__m512; R],
        acc1: &mut [__m512; R],
    ) {
        for r in 0..R {
            let wr = _mm512_set1_ps(*w.add(r));
            acc0[r] = _mm512_fmadd_ps(wr, x0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(wr, x1, acc1[r]);
        }
    }

    /// Clamps and stores a pixel tile's accumulators (`t.cols` positions of `R` rows).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store512<const R: usize>(t: &Tile, mut acc0: [__m512; R], mut acc1: [__m512; R]) {
        if let Some(lo) = t.clamp.lo {
            let lo = _mm512_set1_ps(lo);
            for r in 0..R {
                acc0[r] = _mm512_max_ps(acc0[r], lo);
                acc1[r] = _mm512_max_ps(acc1[r], lo);
            }
        }
        if let Some(hi) = t.clamp.hi {
            let hi = _mm512_set1_ps(hi);
            for r in 0..R {
                acc0[r] = _mm512_min_ps(acc0[r], hi);
                acc1[r] = _mm512_min_ps(acc1[r], hi);
            }
        }
        let m0 = lanes16(t.cols);
        let m1 = lanes16(t.cols.saturating_sub(16));
        for r in 0..R {
            let c = t.c.add(r * t.ldc);
            _mm512_mask_storeu_ps(c, m0, acc0[r]);
            _mm512_mask_storeu_ps(c.add(16), m1, acc1[r]);
        }
    }

    /// The mask of the first `n` (at most 16) lanes.
    fn lanes16(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// Packs a panel of 32 columns: per half of 16, masked loads when it lies in one
    /// output row at stride 1 or 2 (the even lanes of two loads), a masked gather otherwise.
    /// Masked-off lanes read nothing, so the padding costs no copy. What to do is decided
    /// per kernel position and half, then done for every input channel.
    ///
    /// # Safety
    /// AVX-512F is available; `panel` was made by `patches.pack` with `nr` = 32.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pack512(patches: &Patches, panel: &Panel, dst: &mut [f32]) {
        let g = &patches.geo;
        let plane = g.h * g.w;
        let taps = g.kh * g.kw;
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        assert!(dst.len() >= g.k() * 32 && patches.input.len() >= g.c * plane);
        let input = patches.input.as_ptr();
        let step = taps * 32;
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let tap = ky * g.kw + kx;
                let mask = panel.rows[ky] & panel.cols[kx];
                let off = patches.offsets[tap];
                for h in 0..2 {
                    let m = (mask >> (16 * h)) as u16;
                    let mut out = dst.as_mut_ptr().add(tap * 32 + 16 * h);
                    let mut image = input.wrapping_offset(panel.base[16 * h] as isize + off);
                    if m == 0 {
                        for _ in 0..g.c {
                            _mm512_storeu_ps(out, _mm512_setzero_ps());
                            out = out.add(step);
                        }
                    } else if panel.linear[h] && g.sw == 1 {
                        for _ in 0..g.c {
                            _mm512_storeu_ps(out, _mm512_maskz_loadu_ps(m, image));
                            out = out.add(step);
                            image = image.wrapping_add(plane);
                        }
                    } else if panel.linear[h] && g.sw == 2 {
                        let m2 = super::spread_even(m);
                        let (m_lo, m_hi) = (m2 as u16, (m2 >> 16) as u16);
                        for _ in 0..g.c {
                            let lo = _mm512_maskz_loadu_ps(m_lo, image);
                            let hi = _mm512_maskz_loadu_ps(m_hi, image.wrapping_add(16));
                            _mm512_storeu_ps(out, _mm512_permutex2var_ps(lo, even, hi));
                            out = out.add(step);
                            image = image.wrapping_add(plane);
                        }
                    } else {
                        let base = _mm512_loadu_si512(panel.base.as_ptr().add(16 * h) as *const _);
                        let idx = _mm512_add_epi32(base, _mm512_set1_epi32(off as i32));
                        let mut image = input;
                        let zero = _mm512_setzero_ps();
                        for _ in 0..g.c {
                            let v = _mm512_mask_i32gather_ps::<4>(zero, m, idx, image);
                            _mm512_storeu_ps(out, v);
                            out = out.add(step);
                            image = image.add(plane);
                        }
                    }
                }
            }
        }
    }

    /// [`pack512`] for AVX2 panels of 16: masked loads at stride 1, masked gathers otherwise.
    ///
    /// # Safety
    /// AVX2 is available; `panel` was made by `patches.pack` with `nr` = 16.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn pack256(patches: &Patches, panel: &Panel, dst: &mut [f32]) {
        let g = &patches.geo;
        let plane = g.h * g.w;
        let taps = g.kh * g.kw;
        let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        assert!(dst.len() >= g.k() * 16 && patches.input.len() >= g.c * plane);
        let input = patches.input.as_ptr();
        let step = taps * 16;
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let tap = ky * g.kw + kx;
                let mask = panel.rows[ky] & panel.cols[kx];
                let off = patches.offsets[tap];
                for h in 0..2 {
                    let m = (mask >> (8 * h)) & 0xff;
                    let mut out = dst.as_mut_ptr().add(tap * 16 + 8 * h);
                    let mv = _mm256_cmpeq_epi32(
                        _mm256_and_si256(_mm256_set1_epi32(m as i32), bits),
                        bits,
                    );
                    if m == 0 {
                        for _ in 0..g.c {
                            _mm256_storeu_ps(out, _mm256_setzero_ps());
                            out = out.add(step);
                        }
                    } else if panel.linear[h] && g.sw == 1 {
                        let mut image = input.wrapping_offset(panel.base[8 * h] as isize + off);
                        for _ in 0..g.c {
                            _mm256_storeu_ps(out, _mm256_maskload_ps(image, mv));
                            out = out.add(step);
                            image = image.wrapping_add(plane);
                        }
                    } else {
                        let base = _mm256_loadu_si256(panel.base.as_ptr().add(8 * h) as *const _);
                        let idx = _mm256_add_epi32(base, _mm256_set1_epi32(off as i32));
                        let mut image = input;
                        let zero = _mm256_setzero_ps();
                        let mvf = _mm256_castsi256_ps(mv);
                        for _ in 0..g.c {
                            let v = _mm256_mask_i32gather_ps::<4>(zero, image, idx, mvf);
                            _mm256_storeu_ps(out, v);
                            out = out.add(step);
                            image = image.add(plane);
                        }
                    }
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile256<const R: usize>(t: &Tile) {
        let mut acc0 = [_mm256_setzero_ps(); R];
        let mut acc1 = [_mm256_setzero_ps(); R];
        for r in 0..R {
            let b = _mm256_set1_ps(*t.bias.add(r));
            acc0[r] = b;
            acc1[r] = b;
        }
        let mut w = t.w;
        let mut x = t.x;
        for _ in 0..t.k {
            let x0 = _mm256_loadu_ps(x);
            let x1 = _mm256_loadu_ps(x.add(8));
            for r in 0..R {
                let wr = _mm256_broadcast_ss(&*w.add(r));
                acc0[r] = _mm256_fmadd_ps(wr, x0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(wr, x1, acc1[r]);
            }
            w = w.add(t.ldw);
            x = x.add(t.ldx);
        }
        if let Some(lo) = t.clamp.lo {
            let lo = _mm256_set1_ps(lo);
            for r in 0..R {
                acc0[r] = _mm256_max_ps(acc0[r], lo);
                acc1[r] = _mm256_max_ps(acc1[r], lo);
            }
        }
        if let Some(hi) = t.clamp.hi {
            let hi = _mm256_set1_ps(hi);
            for r in 0..R {
                acc0[r] = _mm256_min_ps(acc0[r], hi);
                acc1[r] = _mm256_min_ps(acc1[r], hi);
            }
        }
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(t.cols.min(8) as i32), lanes);
        let m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(t.cols.saturating_sub(8) as i32), lanes);
        for r in 0..R {
            let c = t.c.add(r * t.ldc);
            if t.cols == 16 {
                _mm256_storeu_ps(c, acc0[r]);
                _mm256_storeu_ps(c.add(8), acc1[r]);
            } else {
                _mm256_maskstore_ps(c, m0, acc0[r]);
                _mm256_maskstore_ps(c.add(8), m1, acc1[r]);
            }
        }
    }
}

/// The widest panel of any [`Isa`].
const MAX_NR: usize = 32;

/// A convolution's geometry for one image of one group, every size concrete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geo {
    /// Input channels of the group.
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) sh: usize,
    pub(crate) sw: usize,
    pub(crate) dh: usize,
    pub(crate) dw: usize,
    /// Zero rows above, zero columns left (those below and right follow from the sizes).
    pub(crate) pt: usize,
    pub(crate) pl: usize,
}

impl Geo {
    /// The reduction length: input channels × kernel positions.
    pub(crate) fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Whether a patch is one input position (1×1 kernel, stride 1, no padding): the
    /// input is then the patch matrix itself, `[c, h·w]`.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.pt == 0
            && self.pl == 0
            && self.oh == self.h
            && self.ow == self.w
            && (self.oh <= 1 || self.sh == 1)
            && (self.ow <= 1 || self.sw == 1)
    }

    /// For each kernel offset along one axis, the output positions `[lo, hi)` whose input
    /// position `o·stride + offset·dilation − pad` is inside `[0, size)`.
    fn valid(out: usize, size: usize, k: usize, s: usize, d: usize, pad: usize) -> Vec<[usize; 2]> {
        (0..k)
            .map(|kk| {
                let off = (kk * d) as isize - pad as isize;
                // o·s + off >= 0  <=>  o >= ceil(-off / s)
                let lo = if off >= 0 {
                    0
                } else {
                    ((-off) as usize).div_ceil(s)
                };
                // o·s + off <= size - 1  <=>  o <= (size - 1 - off) / s
                let last = size as isize - 1 - off;
                let hi = if last < 0 {
                    0
                } else {
                    (last as usize / s + 1).min(out)
                };
                [lo.min(hi), hi]
            })
            .collect()
    }
}

/// Where the patches of output positions come from: one image's input, with what every
/// panel shares precomputed.
pub(crate) struct Patches<'a> {
    geo: Geo,
    /// Per kernel row, the output rows `[lo, hi)` reading inside the image; the same per
    /// kernel column.
    rows: Vec<[usize; 2]>,
    cols: Vec<[usize; 2]>,
    /// Per kernel position (row-major), its offset in a channel's plane from the input
    /// position of output `(0, 0)`.
    offsets: Vec<isize>,
    input: &'a [f32],
    /// Whether every offset fits the vector kernels' 32-bit gather indices.
    small: bool,
    /// The last panel's, kept from one panel to the next (only what a panel uses is
    /// rewritten).
    panel: Panel,
}

/// One panel's output positions: per column its input offset (before the kernel position's),
/// which columns read inside the image per kernel row and column, and which halves read the
/// input at a constant stride (see `linear`).
struct Panel {
    base: [i32; MAX_NR],
    rows: [u32; MAX_K],
    cols: [u32; MAX_K],
    /// Per half: whether its columns' input offsets step by the stride along rows, so that
    /// a row of its patches is one strided run of the input: a half within one output row,
    /// or across rows when they follow each other in the input (stride 1 along columns, or
    /// an input row exactly `stride` × the output row and one row per output row).
    linear: [bool; 2],
    /// The pieces of output rows: (row, first column, length, panel column).
    pieces: [[u32; 4]; MAX_NR],
    /// Which panel this is: first position, columns, width.
    key: Option<[usize; 3]>,
}

/// The longest kernel axis with precomputed masks; longer ones take the portable packing.
const MAX_K: usize = 16;

impl<'a> Patches<'a> {
    /// `input` is one image of one group: `[c, h, w]`.
    pub(crate) fn new(geo: Geo, input: &'a [f32]) -> Patches<'a> {
        assert!(input.len() >= geo.c * geo.h * geo.w);
        let mut offsets = Vec::with_capacity(geo.kh * geo.kw);
        for ky in 0..geo.kh {
            for kx in 0..geo.kw {
                let dy = (ky * geo.dh) as isize - geo.pt as isize;
                let dx = (kx * geo.dw) as isize - geo.pl as isize;
                offsets.push(dy * geo.w as isize + dx);
            }
        }
        let plane = (geo.h * geo.w) as isize;
        let small = offsets.iter().all(|o| o.abs() < 1 << 30)
            && plane < 1 << 30
            && geo.kh <= MAX_K
            && geo.kw <= MAX_K;
        Patches {
            geo,
            rows: Geo::valid(geo.oh, geo.h, geo.kh, geo.sh, geo.dh, geo.pt),
            cols: Geo::valid(geo.ow, geo.w, geo.kw, geo.sw, geo.dw, geo.pl),
            offsets,
            input,
            small,
            panel: Panel {
                base: [0; MAX_NR],
                rows: [0; MAX_K],
                cols: [0; MAX_K],
                linear: [false; 2],
                pieces: [[0; 4]; MAX_NR],
                key: None,
            },
        }
    }

    /// Packs the patches of output positions `p0 .. p0 + cols` (flat over `oh × ow`) into
    /// `dst` (`[k, nr]`, the columns past `cols` zero): what falls in the padding is zero.
    /// `isa` says which instructions gather them; any `nr` up to 32 packs with
    /// [`Isa::Portable`], AVX2 packs 16 and AVX-512 32.
    pub(crate) fn pack(&mut self, isa: Isa, p0: usize, cols: usize, nr: usize, dst: &mut [f32]) {
        let g = &self.geo;
        assert!(cols <= nr && nr <= MAX_NR && p0 + cols <= g.oh * g.ow);
        let dst = &mut dst[..g.k() * nr];
        if !self.small {
            return self.pack_portable(p0, cols, nr, dst);
        }
        if !self.prepared(p0, cols, nr) {
            self.prepare(p0, cols, nr);
        }
        let panel = &self.panel;
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if nr == 32 => unsafe { x86::pack512(self, panel, dst) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 if nr == 16 => unsafe { x86::pack256(self, panel, dst) },
            _ => self.pack_masked(panel, nr, dst),
        }
    }

    /// The panel of output positions `p0 .. p0 + cols` (of 32) for [`direct_tile`], when
    /// each of its halves lies in one output row, the stride along rows is 1 or 2 and the
    /// kernel has at most 25 positions; `None` otherwise (pack it).
    pub(crate) fn direct(&mut self, p0: usize, cols: usize) -> Option<Direct> {
        let g = self.geo;
        let taps = g.kh * g.kw;
        if !self.small || !(1..=2).contains(&g.sw) || taps > MAX_TAPS {
            return None;
        }
        assert!(cols <= 32 && p0 + cols <= g.oh * g.ow);
        self.prepare(p0, cols, 32);
        let panel = &self.panel;
        if (0..2).any(|h| h * 16 < cols && !panel.linear[h]) {
            return None;
        }
        let mut d = Direct {
            image: self.input.as_ptr(),
            plane: g.h * g.w,
            channels: g.c,
            base: [panel.base[0] as isize, panel.base[16] as isize],
            stride: g.sw,
            taps: [DirectTap::default(); MAX_TAPS],
            tap_count: taps,
        };
        if cols <= 16 {
            // The second half reads nothing (masks zero): any base does.
            d.base[1] = d.base[0];
        }
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let tap = ky * g.kw + kx;
                let mask = panel.rows[ky] & panel.cols[kx];
                let halves = [mask as u16, (mask >> 16) as u16];
                let masks = if g.sw == 1 {
                    [halves[0], halves[1], 0, 0]
                } else {
                    let [a, b] = halves.map(spread_even);
                    [a as u16, (a >> 16) as u16, b as u16, (b >> 16) as u16]
                };
                d.taps[tap] = DirectTap {
                    offset: self.offsets[tap],
                    masks,
                };
            }
        }
        Some(d)
    }

    /// Whether the panel scratch already describes `p0 .. p0 + cols` of `nr`.
    fn prepared(&self, p0: usize, cols: usize, nr: usize) -> bool {
        self.panel.key == Some([p0, cols, nr])
    }

    /// Describes the panel of output positions `p0 .. p0 + cols` in the scratch.
    fn prepare(&mut self, p0: usize, cols: usize, nr: usize) {
        let g = &self.geo;
        self.panel.key = Some([p0, cols, nr]);
        let Panel {
            base,
            rows,
            cols: col_masks,
            linear,
            pieces,
            ..
        } = &mut self.panel;
        // The panel's pieces of output rows, at most one per column.
        let mut n = 0;
        let (mut oy, mut ox) = (p0 / g.ow, p0 % g.ow);
        let mut j = 0;
        while j < cols {
            let len = (g.ow - ox).min(cols - j);
            pieces[n] = [oy as u32, ox as u32, len as u32, j as u32];
            n += 1;
            let row = (oy * g.sh * g.w) as i32;
            for t in 0..len {
                base[j + t] = row + ((ox + t) * g.sw) as i32;
            }
            j += len;
            ox = 0;
            oy += 1;
        }
        let pieces = &pieces[..n];
        // Panel columns j + a .. j + b.
        let bits = |j: u32, a: u32, b: u32| -> u32 {
            if b <= a {
                0
            } else {
                (u32::MAX >> (32 - (b - a))) << (j + a)
            }
        };
        for (mask, &[lo, hi]) in rows.iter_mut().zip(&self.rows) {
            let (lo, hi) = (lo as u32, hi as u32);
            *mask = pieces
                .iter()
                .filter(|&&[oy, ..]| oy >= lo && oy < hi)
                .fold(0, |m, &[_, _, len, j]| m | bits(j, 0, len));
        }
        for (mask, &[lo, hi]) in col_masks.iter_mut().zip(&self.cols) {
            let (lo, hi) = (lo as u32, hi as u32);
            *mask = pieces.iter().fold(0, |m, &[_, ox, len, j]| {
                let a = lo.clamp(ox, ox + len) - ox;
                let b = hi.clamp(ox, ox + len) - ox;
                m | bits(j, a, b)
            });
        }
        // A half is linear when its columns in use step by the stride.
        let half = nr / 2;
        for (h, linear) in linear.iter_mut().enumerate() {
            let (first, last) = (h * half, ((h + 1) * half).min(cols));
            *linear = first < last
                && base[first..last]
                    .windows(2)
                    .all(|b| b[1] - b[0] == g.sw as i32);
        }
    }

    /// The portable packing with precomputed masks.
    fn pack_masked(&self, panel: &Panel, nr: usize, dst: &mut [f32]) {
        let g = &self.geo;
        let plane = g.h * g.w;
        let mut rows = dst.chunks_exact_mut(nr);
        for ci in 0..g.c {
            let image = &self.input[ci * plane..][..plane];
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let row = rows.next().expect("k rows");
                    let mask = panel.rows[ky] & panel.cols[kx];
                    let off = self.offsets[ky * g.kw + kx];
                    for (j, d) in row.iter_mut().enumerate() {
                        *d = if mask >> j & 1 == 1 {
                            image[(panel.base[j] as isize + off) as usize]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }

    /// The portable packing, for any size: a panel's pieces of output rows, copied.
    fn pack_portable(&self, p0: usize, cols: usize, nr: usize, dst: &mut [f32]) {
        let g = &self.geo;
        // (row, first column, length, panel column): at most one per column.
        let mut segments = [(0usize, 0usize, 0usize, 0usize); MAX_NR];
        let mut n = 0;
        let (mut j, mut p) = (0, p0);
        while j < cols {
            let (oy, ox) = (p / g.ow, p % g.ow);
            let len = (g.ow - ox).min(cols - j);
            segments[n] = (oy, ox, len, j);
            n += 1;
            j += len;
            p += len;
        }
        let segments = &segments[..n];
        let plane = g.h * g.w;
        let mut rows = dst.chunks_exact_mut(nr);
        for ci in 0..g.c {
            let image = &self.input[ci * plane..][..plane];
            for ky in 0..g.kh {
                let [ylo, yhi] = self.rows[ky];
                for kx in 0..g.kw {
                    let row = rows.next().expect("k rows");
                    let [xlo, xhi] = self.cols[kx];
                    for &(oy, ox, len, j) in segments {
                        let seg = &mut row[j..j + len];
                        if oy < ylo || oy >= yhi {
                            seg.fill(0.0);
                            continue;
                        }
                        let iy = oy * g.sh + ky * g.dh - g.pt;
                        let src = &image[iy * g.w..][..g.w];
                        let a = xlo.clamp(ox, ox + len);
                        let b = xhi.clamp(a, ox + len);
                        seg[..a - ox].fill(0.0);
                        for (t, o) in seg[a - ox..b - ox].iter_mut().enumerate() {
                            *o = src[(a + t) * g.sw + kx * g.dw - g.pl];
                        }
                        seg[b - ox..].fill(0.0);
                    }
                    row[cols..].fill(0.0);
                }
            }
        }
    }
}
