//! The portable panel sums of the quantized product: plain wrapping int32 arithmetic.

use super::{QuantRows, MR, NC};

/// The pair `a[r, 2p] − a_zp`, `a[r, 2p + 1] − a_zp` (0 past the end of the row).
#[inline(always)]
pub(super) fn a_pair(a: &QuantRows, r: usize, p: usize) -> (i16, i16) {
    (a.centered(r, 2 * p), a.centered(r, 2 * p + 1))
}

pub(super) fn portable_panel_sums<W: Copy + Into<i32>>(
    a: &QuantRows,
    r0: usize,
    block: usize,
    packed: &[W],
    panel: usize,
    pairs: usize,
    sums: &mut [[i32; NC]; MR],
) {
    for row in sums.iter_mut().take(block) {
        row.fill(0);
    }
    for p in 0..pairs {
        let w = &packed[(panel * pairs + p) * NC * 2..(panel * pairs + p + 1) * NC * 2];
        for (i, row) in sums.iter_mut().take(block).enumerate() {
            let (a0, a1) = a_pair(a, r0 + i, p);
            for (c, s) in row.iter_mut().enumerate() {
                let pair = a0 as i32 * w[2 * c].into() + a1 as i32 * w[2 * c + 1].into();
                *s = s.wrapping_add(pair);
            }
        }
    }
}
