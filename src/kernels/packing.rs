//! Packing: a `[k, n]` weight matrix laid out once as the panels the products stream.

use std::marker::PhantomData;

use ndarray::ArrayView2;

use super::format::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, WeightFormat};
use super::Float;

/// A 64-byte block, so packed panels start on cache lines.
#[derive(Clone, Copy, PartialEq)]
#[repr(C, align(64))]
pub(super) struct Line([u8; 64]);

/// A `[k, n]` matrix packed for [`gemm_packed`](super::gemm_packed): panels of [`Float::NR`]
/// columns (the last one zero-padded), each stored k-major so a panel is one contiguous run
/// of memory; the elements in `T` or, with [`Packed::pack_as`], in 16 bits.
#[derive(Clone, PartialEq)]
pub struct Packed<T> {
    pub(super) k: usize,
    pub(super) n: usize,
    /// Stored elements (T, or u16 for the 16-bit formats).
    len: usize,
    pub(super) format: WeightFormat,
    pub(super) lines: Vec<Line>,
    _t: PhantomData<T>,
}

impl<T> std::fmt::Debug for Packed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Packed({} × {}, {})", self.k, self.n, self.format.name())
    }
}

impl<T: Float> Packed<T> {
    /// Packs `b` (`[k, n]`, any layout).
    pub fn pack(b: ArrayView2<T>) -> Packed<T> {
        Packed::pack_as(b, WeightFormat::Full)
    }

    /// Packs `b` stored as `format` (a 16-bit format rounds each element to nearest, from
    /// f64 through f32).
    pub fn pack_as(b: ArrayView2<T>, format: WeightFormat) -> Packed<T> {
        let (k, n) = b.dim();
        let nr = T::NR;
        let panels = n.div_ceil(nr);
        let len = panels * k * nr;
        let bytes = len * format.elem_bytes::<T>();
        let mut p = Packed {
            k,
            n,
            len,
            format,
            // All-zero bytes are 0.0 in every format.
            lines: vec![Line([0; 64]); bytes.div_ceil(64)],
            _t: PhantomData,
        };
        let at = |panel: usize, kk: usize, j: usize| (panel * k + kk) * nr + j;
        let each = |f: &mut dyn FnMut(usize, T)| {
            for panel in 0..panels {
                for kk in 0..k {
                    for j in 0..nr.min(n - panel * nr) {
                        f(at(panel, kk, j), b[[kk, panel * nr + j]]);
                    }
                }
            }
        };
        match format {
            WeightFormat::Full => {
                let data = p.data_mut();
                each(&mut |i, v| data[i] = v);
            }
            WeightFormat::Bf16 | WeightFormat::F16 => {
                let round = if format == WeightFormat::Bf16 {
                    f32_to_bf16
                } else {
                    f32_to_f16
                };
                let data = p.halves_mut();
                each(&mut |i, v| data[i] = round(v.to_f32().unwrap_or(f32::NAN)));
            }
        }
        p
    }

    /// Rows k.
    pub fn rows(&self) -> usize {
        self.k
    }

    /// Columns n.
    pub fn cols(&self) -> usize {
        self.n
    }

    /// How the elements are stored.
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// Bytes of the stored panels (what a product reads).
    pub fn bytes(&self) -> usize {
        self.len * self.format.elem_bytes::<T>()
    }

    /// The matrix as stored, widened back to `T`: `[k, n]`.
    pub fn unpack(&self) -> ndarray::Array2<T> {
        let nr = T::NR;
        ndarray::Array2::from_shape_fn((self.k, self.n), |(kk, j)| {
            let i = ((j / nr) * self.k + kk) * nr + j % nr;
            match self.format {
                WeightFormat::Full => self.data()[i],
                WeightFormat::Bf16 => T::from_f32(bf16_to_f32(self.halves()[i])),
                WeightFormat::F16 => T::from_f32(f16_to_f32(self.halves()[i])),
            }
        })
    }

    fn data(&self) -> &[T] {
        assert_eq!(self.format, WeightFormat::Full);
        // SAFETY: `lines` holds at least `len` elements' bytes, aligned for T; T is f32 or
        // f64, for which every bit pattern is valid.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const T, self.len) }
    }

    fn data_mut(&mut self) -> &mut [T] {
        assert_eq!(self.format, WeightFormat::Full);
        // SAFETY: as in `data`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut T, self.len) }
    }

    fn halves(&self) -> &[u16] {
        assert_ne!(self.format, WeightFormat::Full);
        // SAFETY: `lines` holds at least `len` u16s' bytes, aligned.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const u16, self.len) }
    }

    fn halves_mut(&mut self) -> &mut [u16] {
        assert_ne!(self.format, WeightFormat::Full);
        // SAFETY: as in `halves`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut u16, self.len) }
    }
}
