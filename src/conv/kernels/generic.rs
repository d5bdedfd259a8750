//! The portable tile kernels: plain multiply-add, any CPU.

use super::{Clamp, Tile};

pub(super) unsafe fn chan_portable<const NP: usize>(t: &Tile) {
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
    pub(super) fn apply(self, mut a: f32) -> f32 {
        if let Some(lo) = self.lo {
            a = a.max(lo);
        }
        if let Some(hi) = self.hi {
            a = a.min(hi);
        }
        a
    }
}

pub(super) unsafe fn tile_portable<const R: usize>(t: &Tile) {
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
