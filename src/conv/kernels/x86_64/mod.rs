//! The x86-64 tile kernels: AVX2+FMA and AVX-512.

pub(super) mod avx2;
pub(super) mod avx512;
