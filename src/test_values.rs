//! Seeded values for the unit tests: the same cases on every run, so a failure names its seed.

use tract_hir::internal::*;

/// splitmix64.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `lo ..= hi`.
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// `n` values in [-1, 1).
    pub(crate) fn values(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect()
    }

    /// A float32 tensor of `shape` with values in [-1, 1).
    pub(crate) fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let v = self.values(shape.iter().product());
        tensor1(&v).into_shape(shape).unwrap()
    }
}

/// `len` values in [-1, 1) on a grid of 1/1000 (some exactly 0), from `seed` (xorshift32).
pub(crate) fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// A float32 tensor of `shape` holding [`values`] of `seed`.
pub(crate) fn tensor(shape: &[usize], seed: u32) -> Tensor {
    tensor1(&values(shape.iter().product(), seed))
        .into_shape(shape)
        .unwrap()
}
