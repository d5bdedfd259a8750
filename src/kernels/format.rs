//! The weight formats a packed matrix stores (the element type, bfloat16, IEEE half) and
//! the exact conversions between them and f32.

/// How a [`Packed`](super::Packed) matrix stores its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum WeightFormat {
    /// The element type itself (f32 or f64): the exact weights.
    #[default]
    Full,
    /// bfloat16: f32's exponent, 8 significant bits (relative rounding error ≤ 2⁻⁹). Widened
    /// to the element type as they are read, so only the weights are rounded; the products
    /// accumulate in f32 (f64).
    Bf16,
    /// IEEE half: 11 significant bits (≤ 2⁻¹²), but a range of ±65504, and values below
    /// 6.1e-5 lose bits (subnormal) or flush to zero under 6e-8. Widened as [`Self::Bf16`].
    F16,
}

impl WeightFormat {
    /// Bytes per stored element of a `T` matrix.
    pub(super) fn elem_bytes<T>(self) -> usize {
        match self {
            WeightFormat::Full => std::mem::size_of::<T>(),
            WeightFormat::Bf16 | WeightFormat::F16 => 2,
        }
    }

    /// The name the command line uses: `f32` (full), `bf16`, `f16`.
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::Full => "full",
            WeightFormat::Bf16 => "bf16",
            WeightFormat::F16 => "f16",
        }
    }
}

/// `x` rounded to the nearest bfloat16 (ties to even), as its bits; NaN stays NaN.
pub fn f32_to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The bfloat16 with bits `h`, exactly.
#[inline(always)]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x` rounded to the nearest IEEE half (ties to even), as its bits.
pub fn f32_to_f16(x: f32) -> u16 {
    tract_core::prelude::f16::from_f32(x).to_bits()
}

/// The IEEE half with bits `h`, exactly.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    tract_core::prelude::f16::from_bits(h).to_f32()
}
