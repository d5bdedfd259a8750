//! Kernels: arithmetic only. Matrix products and the scalar functions the activations are
//! made of, for `f32` and `f64`. Nothing here knows about gates, layouts or ONNX.
//!
//! The recurrent product runs every time step on few rows (the batch), so it uses weights
//! packed once ([`Packed`]: panels of [`Float::NR`] columns, each panel contiguous over k)
//! and [`gemm_packed`], which has AVX-512 and AVX2+FMA kernels chosen at run time ([`Isa`])
//! and a portable fallback. Every kernel computes each output as the same sequence of
//! multiply-adds in k order from its initial value (fused on x86-64, so the x86 kernels give
//! the same bits as each other and differ from the portable one by FMA rounding only), whatever
//! tile or thread the column falls in.
//!
//! `f32` sigmoid and tanh over slices ([`Float::sigmoid_slice`], [`Float::tanh_slice`]) use
//! vectorizable approximations (a Cody–Waite exp with a degree-6 polynomial; the odd 13/6
//! rational tanh of Eigen and MLAS), a few ulp from the correctly rounded values. `f64`
//! keeps the exact library functions.
//!
//! The files: [`Float`] (here) is the narrow interface the cells use; `format` the weight
//! formats (f32/bf16/f16); `packing` the packed panels; `gemm` the checked products and their
//! split among threads; `dispatch` the run-time choice of kernel set ([`Isa`]); `generic` the
//! portable kernel; `x86_64` the AVX2 and AVX-512 kernels (an `aarch64` NEON set would sit
//! beside it); `activations` the scalar functions.

mod activations;
mod dispatch;
mod format;
mod gemm;
mod generic;
mod packing;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(test)]
mod tests;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, LinalgScalar};

#[doc(hidden)]
pub use activations::LstmRow;
pub use activations::{elu, exp_f32, sigmoid, sigmoid_f32, softplus, softsign, tanh_f32};
pub use dispatch::Isa;
pub use format::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, WeightFormat};
pub(crate) use gemm::gemm_cols_raw;
pub use gemm::{gemm_packed, gemm_packed_on, gemm_packed_par, Init, RawGemm};
pub use packing::Packed;

/// The element types the cells compute in.
pub trait Float:
    num_traits::Float + LinalgScalar + Default + Send + Sync + std::fmt::Debug + 'static
{
    /// Columns per panel of a [`Packed`] matrix: two 256-bit vectors.
    const NR: usize;

    /// Converts an attribute value (ONNX stores them as `f32`).
    fn from_f32(v: f32) -> Self;

    /// `x ← 1 / (1 + e^-x)` for every element.
    fn sigmoid_slice(xs: &mut [Self]);

    /// `x ← tanh x` for every element.
    fn tanh_slice(xs: &mut [Self]);

    /// The LSTM step's pointwise part for one row with the default activations and no clip,
    /// on the selected kernel set; `false` (nothing done) where the type has no such kernel.
    ///
    /// # Safety
    /// The pointers of `r` hold what [`LstmRow`] says.
    #[doc(hidden)]
    unsafe fn lstm_row(_r: &LstmRow) -> bool
    where
        Self: Sized,
    {
        false
    }

    /// [`gemm_packed`] after its bounds checks, on the kernels of `isa`.
    ///
    /// # Safety
    /// The caller has checked every pointer range (see [`gemm_packed`]) and that the CPU
    /// runs `isa` ([`Isa::available`]).
    #[doc(hidden)]
    unsafe fn gemm_packed_unchecked(g: RawGemm<Self>, isa: Isa);
}

/// `c = a · b` (overwriting c).
pub fn matmul<T: Float>(a: ArrayView2<T>, b: ArrayView2<T>, mut c: ArrayViewMut2<T>) {
    general_mat_mul(T::one(), &a, &b, T::zero(), &mut c);
}

/// `c += a · b`.
pub fn matmul_acc<T: Float>(a: ArrayView2<T>, b: ArrayView2<T>, mut c: ArrayViewMut2<T>) {
    general_mat_mul(T::one(), &a, &b, T::one(), &mut c);
}
