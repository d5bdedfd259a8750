//! The portable kernel: the packed product in plain Rust, for any CPU (and the reference the
//! vector kernels are tested against).

use super::format::{bf16_to_f32, f16_to_f32, WeightFormat};
use super::{Float, RawGemm};

/// The portable product: the same panel walk, plain multiply-add.
pub(super) unsafe fn gemm_portable<T: Float>(g: RawGemm<T>) {
    match g.format {
        WeightFormat::Full => gemm_portable_with(g, |i| *g.b.add(i)),
        WeightFormat::Bf16 => {
            gemm_portable_with(g, |i| T::from_f32(bf16_to_f32(*(g.b as *const u16).add(i))))
        }
        WeightFormat::F16 => {
            gemm_portable_with(g, |i| T::from_f32(f16_to_f32(*(g.b as *const u16).add(i))))
        }
    }
}

/// [`gemm_portable`] with element `i` of the panels read by `b_at`.
#[inline(always)]
unsafe fn gemm_portable_with<T: Float>(g: RawGemm<T>, b_at: impl Fn(usize) -> T) {
    let nr = T::NR;
    let mut acc = [T::zero(); 16];
    let panels = g.n.div_ceil(nr);
    for i in 0..panels {
        let panel = if g.reverse { panels - 1 - i } else { i };
        let col = panel * nr;
        let w = nr.min(g.n - col);
        let base = panel * g.k * nr;
        for r in 0..g.m {
            let acc = &mut acc[..nr];
            if g.init.is_null() {
                acc.fill(T::zero());
            } else {
                let ip = g.init.add(r * g.ldi + col);
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = if j < w { *ip.add(j) } else { T::zero() };
                }
            }
            let ar = std::slice::from_raw_parts(g.a.add(r * g.lda), g.k);
            for (kk, &x) in ar.iter().enumerate() {
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = *a + x * b_at(base + kk * nr + j);
                }
            }
            let cp = g.c.add(r * g.ldc + col);
            for (j, a) in acc.iter().enumerate().take(w) {
                *cp.add(j) = *a;
            }
        }
    }
}
