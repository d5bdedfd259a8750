//! The patches of a convolution: its geometry, and the panels of input patches the tiles
//! multiply (packed, or read straight from the input by the AVX-512 tile).

#[cfg(target_arch = "x86_64")]
use super::x86_64::{avx2, avx512};
use super::Isa;

/// Spreads the 16 bits of `m` to the even bits of a 32-bit mask (a stride-2 load's lanes).
pub(super) fn spread_even(m: u16) -> u32 {
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
    pub(super) offset: isize,
    pub(super) masks: [u16; 4],
}

/// A panel the AVX-512 pixel tile reads straight from the input (see [`Patches::direct`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Direct {
    /// Channel 0 of the group's image.
    pub(super) image: *const f32,
    pub(super) plane: usize,
    pub(super) channels: usize,
    /// Each half's first column's input position.
    pub(super) base: [isize; 2],
    pub(super) stride: usize,
    pub(super) taps: [DirectTap; MAX_TAPS],
    pub(super) tap_count: usize,
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
    pub(crate) geo: Geo,
    /// Per kernel row, the output rows `[lo, hi)` reading inside the image; the same per
    /// kernel column.
    rows: Vec<[usize; 2]>,
    cols: Vec<[usize; 2]>,
    /// Per kernel position (row-major), its offset in a channel's plane from the input
    /// position of output `(0, 0)`.
    pub(super) offsets: Vec<isize>,
    pub(crate) input: &'a [f32],
    /// Whether every offset fits the vector kernels' 32-bit gather indices.
    small: bool,
    /// The last panel's, kept from one panel to the next (only what a panel uses is
    /// rewritten).
    panel: Panel,
}

/// One panel's output positions: per column its input offset (before the kernel position's),
/// which columns read inside the image per kernel row and column, and which halves read the
/// input at a constant stride (see `linear`).
pub(super) struct Panel {
    pub(super) base: [i32; MAX_NR],
    pub(super) rows: [u32; MAX_K],
    pub(super) cols: [u32; MAX_K],
    /// Per half: whether its columns' input offsets step by the stride along rows, so that
    /// a row of its patches is one strided run of the input: a half within one output row,
    /// or across rows when they follow each other in the input (stride 1 along columns, or
    /// an input row exactly `stride` × the output row and one row per output row).
    pub(super) linear: [bool; 2],
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
            Isa::Avx512 if nr == 32 => unsafe { avx512::pack512(self, panel, dst) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 if nr == 16 => unsafe { avx2::pack256(self, panel, dst) },
            _ => self.pack_masked(panel, nr, dst),
        }
    }

    /// The panel of output positions `p0 .. p0 + cols` (of 32) for [`super::direct_tile`], when
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
