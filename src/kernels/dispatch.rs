//! The run-time choice of kernel set: which [`Isa`] this CPU runs and uses, and the per-type
//! routing of products and activations to that set's kernels.

use super::activations::{lstm_row_f32, sigmoid, sigmoid_slice_f32, tanh_slice_f32, LstmRow};
use super::generic::gemm_portable;
#[cfg(target_arch = "x86_64")]
use super::x86_64::{avx2, avx512};
use super::{Float, RawGemm};

impl Float for f32 {
    const NR: usize = 16;

    fn from_f32(v: f32) -> Self {
        v
    }

    fn sigmoid_slice(xs: &mut [f32]) {
        sigmoid_slice_f32_on(Isa::selected(), xs)
    }

    fn tanh_slice(xs: &mut [f32]) {
        tanh_slice_f32_on(Isa::selected(), xs)
    }

    unsafe fn lstm_row(r: &LstmRow) -> bool {
        lstm_row_f32_on(Isa::selected(), r);
        true
    }

    unsafe fn gemm_packed_unchecked(g: RawGemm<f32>, isa: Isa) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::f32z::gemm(g),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::f32k::gemm(g),
            _ => gemm_portable(g),
        }
    }
}

impl Float for f64 {
    const NR: usize = 8;

    fn from_f32(v: f32) -> Self {
        v as f64
    }

    fn sigmoid_slice(xs: &mut [f64]) {
        for x in xs {
            *x = sigmoid(*x);
        }
    }

    fn tanh_slice(xs: &mut [f64]) {
        for x in xs {
            *x = x.tanh();
        }
    }

    unsafe fn gemm_packed_unchecked(g: RawGemm<f64>, isa: Isa) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::f64z::gemm(g),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::f64k::gemm(g),
            _ => gemm_portable(g),
        }
    }
}

/// The kernel sets, from the least to the most demanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, any CPU.
    Portable,
    /// x86-64 with AVX2, FMA and F16C (Haswell, Zen and later).
    Avx2,
    /// x86-64 with AVX-512 F (Skylake-SP, Ice Lake, Sapphire Rapids, Zen 4 and later): 32
    /// registers of 512 bits, so bigger tiles and one vector per panel row.
    Avx512,
}

impl Isa {
    /// Every set this CPU runs, [`Isa::Portable`] first.
    pub fn available() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.runs_here())
            .collect()
    }

    /// Whether this CPU runs the set.
    pub fn runs_here(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.runs_here()
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The set's name, as `RNN_RUN_ISA` spells it: `portable`, `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// What the products and activations use: the most capable set this CPU runs, or the
    /// one the environment variable `RNN_RUN_ISA` names when the CPU runs it (to compare the
    /// kernels on one machine). Decided once per process.
    pub fn selected() -> Isa {
        static SELECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *SELECTED.get_or_init(|| {
            let best = *Isa::available().last().expect("portable always runs");
            match std::env::var("RNN_RUN_ISA") {
                Ok(v) => Isa::available()
                    .into_iter()
                    .find(|i| i.name().eq_ignore_ascii_case(v.trim()))
                    .unwrap_or(best),
                Err(_) => best,
            }
        })
    }
}

/// `x ← sigmoid x` on the vectors of `isa` (same bits on every set).
pub(super) fn sigmoid_slice_f32_on(isa: Isa, xs: &mut [f32]) {
    match isa {
        // SAFETY: the CPU runs `isa` (it was selected or checked among the available ones).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::sigmoid_slice_f32(xs) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::sigmoid_slice_f32(xs) },
        _ => sigmoid_slice_f32(xs),
    }
}

/// `x ← tanh x` on the vectors of `isa` (same bits on every set).
pub(super) fn tanh_slice_f32_on(isa: Isa, xs: &mut [f32]) {
    match isa {
        // SAFETY: as in `sigmoid_slice_f32_on`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::tanh_slice_f32(xs) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::tanh_slice_f32(xs) },
        _ => tanh_slice_f32(xs),
    }
}

/// The fused LSTM row on the vectors of `isa` (same bits on every set).
///
/// # Safety
/// The CPU runs `isa`; the pointers of `r` hold what [`LstmRow`] says.
pub(super) unsafe fn lstm_row_f32_on(isa: Isa, r: &LstmRow) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::lstm_row_f32(r),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::lstm_row_f32(r),
        _ => lstm_row_f32(r),
    }
}
