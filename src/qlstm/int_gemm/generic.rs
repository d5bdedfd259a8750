//! The portable panel sums of the quantized product: plain wrapping int32 arithmetic.

use super::{MR, NC};

/// The pair of `a[row, 2p]`, `a[row, 2p + 1]` (0 past the end of the row).
#[inline(always)]
pub(super) fn a_pair(a: &[i16], k: usize, row: usize, p: usize) -> (i16, i16) {
    let first = a[row * k + 2 * p];
    let second = if 2 * p + 1 < k {
        a[row * k + 2 * p + 1]
    } else {
        0
    };
    (first, second)
}

pub(super) fn portable_panel_sums<W: Copy + Into<i32>>(
    a: &[i16],
    block: usize,
    k: usize,
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
            let (a0, a1) = a_pair(a, k, i, p);
            for (c, s) in row.iter_mut().enumerate() {
                let pair = a0 as i32 * w[2 * c].into() + a1 as i32 * w[2 * c + 1].into();
                *s = s.wrapping_add(pair);
            }
        }
    }
}
