//! The x86-64 kernel sets (AVX2+FMA, AVX-512) and what they share: the weight formats as
//! const parameters.

pub(super) mod avx2;
pub(super) mod avx512;

use super::format::WeightFormat;

/// Formats as const parameters, so each kernel is compiled once per format with the
/// weight loads resolved.
const FULL: u8 = 0;
const BF16: u8 = 1;
const F16: u8 = 2;

fn format_code(f: WeightFormat) -> u8 {
    match f {
        WeightFormat::Full => FULL,
        WeightFormat::Bf16 => BF16,
        WeightFormat::F16 => F16,
    }
}
