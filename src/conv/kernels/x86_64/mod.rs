//! The x86-64 kernels: AVX2+FMA and AVX-512 tiles, the depthwise kernels of both sets (and
//! their interface, `depthwise`), and the fused clamp they share.

/// A tile's fused clamp on every accumulator of the given arrays: `max` with the low bound,
/// then `min` with the high one, in the vector width of the `set1`/`max`/`min` given.
macro_rules! clamp_tile {
    ($clamp:expr, $set1:ident, $max:ident, $min:ident; $($acc:expr),+) => {
        if let Some(lo) = $clamp.lo {
            let lo = $set1(lo);
            $(for a in $acc.iter_mut() {
                *a = $max(*a, lo);
            })+
        }
        if let Some(hi) = $clamp.hi {
            let hi = $set1(hi);
            $(for a in $acc.iter_mut() {
                *a = $min(*a, hi);
            })+
        }
    };
}

pub(super) mod avx2;
mod avx2_depthwise;
pub(super) mod avx512;
mod avx512_depthwise;
pub(super) mod depthwise;
