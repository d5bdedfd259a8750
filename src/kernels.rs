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

use std::marker::PhantomData;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, LinalgScalar};

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

    /// [`gemm_packed`] after its bounds checks, on the kernels of `isa`.
    ///
    /// # Safety
    /// The caller has checked every pointer range (see [`gemm_packed`]) and that the CPU
    /// runs `isa` ([`Isa::available`]).
    #[doc(hidden)]
    unsafe fn gemm_packed_unchecked(g: RawGemm<Self>, isa: Isa);
}

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

    unsafe fn gemm_packed_unchecked(g: RawGemm<f32>, isa: Isa) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::f32z::gemm(g),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::f32k::gemm(g),
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
            Isa::Avx512 => x86::f64z::gemm(g),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::f64k::gemm(g),
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

/// `c = a · b` (overwriting c).
pub fn matmul<T: Float>(a: ArrayView2<T>, b: ArrayView2<T>, mut c: ArrayViewMut2<T>) {
    general_mat_mul(T::one(), &a, &b, T::zero(), &mut c);
}

/// `c += a · b`.
pub fn matmul_acc<T: Float>(a: ArrayView2<T>, b: ArrayView2<T>, mut c: ArrayViewMut2<T>) {
    general_mat_mul(T::one(), &a, &b, T::one(), &mut c);
}

/// A 64-byte block, so packed panels start on cache lines.
#[derive(Clone, Copy, PartialEq)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// How a [`Packed`] matrix stores its elements.
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
    fn elem_bytes<T>(self) -> usize {
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

/// A `[k, n]` matrix packed for [`gemm_packed`]: panels of [`Float::NR`] columns (the last
/// one zero-padded), each stored k-major so a panel is one contiguous run of memory; the
/// elements in `T` or, with [`Packed::pack_as`], in 16 bits.
#[derive(Clone, PartialEq)]
pub struct Packed<T> {
    k: usize,
    n: usize,
    /// Stored elements (T, or u16 for the 16-bit formats).
    len: usize,
    format: WeightFormat,
    lines: Vec<Line>,
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

/// What the product is added to.
#[derive(Debug, Clone, Copy)]
pub enum Init<'a, T> {
    /// Nothing: `c = a · b`.
    Zero,
    /// One row (`[n]`) added to every row: `c = row + a · b`.
    Row(&'a [T]),
    /// A matrix with the given row stride: `c = init + a · b`.
    Rows(&'a [T], usize),
}

/// The arguments of a checked [`gemm_packed`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct RawGemm<T> {
    m: usize,
    k: usize,
    n: usize,
    a: *const T,
    lda: usize,
    /// The panels: `T`s, or u16s in a 16-bit format (the kernels cast).
    b: *const T,
    format: WeightFormat,
    c: *mut T,
    ldc: usize,
    /// Null for no init; row stride 0 for a broadcast row.
    init: *const T,
    ldi: usize,
    /// Walk the panels from the last to the first. The sums are the same; what changes is
    /// which weights are still in cache: a product that reads more than the cache holds,
    /// every time step in the same order, misses everywhere (each line is evicted just
    /// before it is needed again), while alternating the direction starts each step on the
    /// weights the previous step read last.
    reverse: bool,
}

/// `c[r, :n] = init[r] + a[r, :k] · b` for `m` rows, `a` and `c` (and `Init::Rows`) given as
/// slices with row strides. Panics when a slice is too short for its shape.
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed<T: Float>(
    m: usize,
    a: &[T],
    lda: usize,
    b: &Packed<T>,
    c: &mut [T],
    ldc: usize,
    init: Init<'_, T>,
) {
    gemm_packed_par(1, m, a, lda, b, c, ldc, init)
}

/// [`gemm_packed`] on columns `cols` of `b` only, from raw pointers: for the pieces of a step
/// that write disjoint columns of one matrix from several threads. `c` and `init` point at
/// column 0 of their matrices (row strides `ldc` and `ldi`; `ldi` 0 for one row added to
/// every row; `init` null for none), and columns `cols` of rows `0..m` are written. Runs on
/// the calling thread, with the selected kernels; `reverse` walks the panels from the last
/// (same sums: alternate it from one time step to the next to start on the weights still in
/// cache).
///
/// # Safety
/// `a` holds `m` rows of stride `lda` with `b.rows()` elements each; `c` (and `init`) hold
/// rows `0..m` up to column `cols.end`; nothing else reads or writes those columns of `c`
/// meanwhile.
///
/// # Panics
/// When `cols` is not inside `b`'s columns or does not start on a panel.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_cols_raw<T: Float>(
    m: usize,
    a: *const T,
    lda: usize,
    b: &Packed<T>,
    cols: std::ops::Range<usize>,
    c: *mut T,
    ldc: usize,
    init: *const T,
    ldi: usize,
    reverse: bool,
) {
    assert!(
        cols.start.is_multiple_of(T::NR) && cols.start <= cols.end && cols.end <= b.n,
        "gemm_cols_raw: columns {cols:?} of {}",
        b.n
    );
    if m == 0 || cols.is_empty() {
        return;
    }
    let skip = (cols.start / T::NR) * b.k * T::NR;
    let base = b.lines.as_ptr();
    let g = RawGemm {
        m,
        k: b.k,
        n: cols.len(),
        a,
        lda,
        b: match b.format {
            WeightFormat::Full => (base as *const T).add(skip),
            _ => (base as *const u16).add(skip) as *const T,
        },
        format: b.format,
        c: c.add(cols.start),
        ldc,
        init: if init.is_null() {
            init
        } else {
            init.add(cols.start)
        },
        ldi,
        reverse,
    };
    T::gemm_packed_unchecked(g, Isa::selected())
}

/// Products smaller than this many multiply-adds stay on one thread: below it, handing half
/// to another core costs more than it saves.
const PAR_MIN_MACS: usize = 64 * 1024;

/// [`gemm_packed`] with the columns of `b` shared among `parts` threads of the current rayon
/// pool, whole panels each, so every thread streams its own contiguous slice of the weights
/// (and keeps it in its own cache when it fits). Call it inside `ThreadPool::install`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed_par<T: Float>(
    parts: usize,
    m: usize,
    a: &[T],
    lda: usize,
    b: &Packed<T>,
    c: &mut [T],
    ldc: usize,
    init: Init<'_, T>,
) {
    let Some(g) = checked(m, a, lda, b, c, ldc, init) else {
        return;
    };
    // SAFETY: every range was checked; the selected set runs here.
    unsafe { gemm_split(g, parts, Isa::selected()) }
}

/// The raw arguments of a product after checking every range (`None`: nothing to do).
#[allow(clippy::too_many_arguments)]
fn checked<T: Float>(
    m: usize,
    a: &[T],
    lda: usize,
    b: &Packed<T>,
    c: &mut [T],
    ldc: usize,
    init: Init<'_, T>,
) -> Option<RawGemm<T>> {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return None;
    }
    let need = |ld: usize, w: usize| (m - 1) * ld + w;
    assert!(
        k == 0 || (lda >= k && a.len() >= need(lda, k)),
        "gemm_packed: a too short"
    );
    assert!(
        ldc >= n && c.len() >= need(ldc, n),
        "gemm_packed: c too short"
    );
    let (init, ldi) = match init {
        Init::Zero => (std::ptr::null(), 0),
        Init::Row(r) => {
            assert!(r.len() >= n, "gemm_packed: init row too short");
            (r.as_ptr(), 0)
        }
        Init::Rows(r, ld) => {
            assert!(
                ld >= n && r.len() >= need(ld, n),
                "gemm_packed: init too short"
            );
            (r.as_ptr(), ld)
        }
    };
    Some(RawGemm {
        m,
        k,
        n,
        a: a.as_ptr(),
        lda,
        b: b.lines.as_ptr() as *const T,
        format: b.format,
        c: c.as_mut_ptr(),
        ldc,
        init,
        ldi,
        reverse: false,
    })
}

/// [`gemm_packed`] on the kernels of a given set, to compare and test them.
///
/// # Panics
/// As [`gemm_packed`], and when this CPU does not run `isa`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed_on<T: Float>(
    isa: Isa,
    m: usize,
    a: &[T],
    lda: usize,
    b: &Packed<T>,
    c: &mut [T],
    ldc: usize,
    init: Init<'_, T>,
) {
    assert!(isa.runs_here(), "this CPU does not run {}", isa.name());
    let Some(g) = checked(m, a, lda, b, c, ldc, init) else {
        return;
    };
    // SAFETY: every range was checked; the CPU runs `isa`.
    unsafe { T::gemm_packed_unchecked(g, isa) }
}

/// A product's arguments, sent to another thread: each part writes only its own columns of
/// `c`, and the caller waits for every part (`rayon::join`) before the borrows end.
struct SendGemm<T>(RawGemm<T>);

// SAFETY: see the type's comment; T is f32 or f64.
unsafe impl<T: Send> Send for SendGemm<T> {}

impl<T: Float> SendGemm<T> {
    /// # Safety
    /// As [`gemm_split`].
    unsafe fn run(self, parts: usize, isa: Isa) {
        gemm_split(self.0, parts, isa)
    }
}

/// Splits the columns in two (whole panels, in proportion to the threads each side gets)
/// until one part is left per thread.
///
/// # Safety
/// The ranges of `g` are valid, as checked by [`gemm_packed_par`].
unsafe fn gemm_split<T: Float>(g: RawGemm<T>, parts: usize, isa: Isa) {
    let nr = T::NR;
    let panels = g.n.div_ceil(nr);
    if parts <= 1 || panels < 2 || g.m * g.k * g.n < PAR_MIN_MACS {
        return T::gemm_packed_unchecked(g, isa);
    }
    let left_parts = parts / 2;
    let left_panels = (panels * left_parts / parts).max(1);
    let col = left_panels * nr;
    let left = RawGemm { n: col, ..g };
    let skip = left_panels * g.k * nr;
    let right = RawGemm {
        n: g.n - col,
        b: match g.format {
            WeightFormat::Full => g.b.add(skip),
            _ => (g.b as *const u16).add(skip) as *const T,
        },
        c: g.c.add(col),
        init: if g.init.is_null() {
            g.init
        } else {
            g.init.add(col)
        },
        ..g
    };
    let (left, right) = (SendGemm(left), SendGemm(right));
    rayon::join(
        move || left.run(left_parts, isa),
        move || right.run(parts - left_parts, isa),
    );
}

/// The portable product: the same panel walk, plain multiply-add.
unsafe fn gemm_portable<T: Float>(g: RawGemm<T>) {
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{RawGemm, WeightFormat};

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

    /// One AVX2+FMA kernel per element type: `$lanes` elements per vector, panels of two.
    /// `$widen` turns `$lanes` 16-bit weights into a vector of `$t`.
    macro_rules! avx2_gemm {
        ($modname:ident, $t:ty, $v:ty, $lanes:expr, $load:ident, $store:ident, $bcast:ident, $fma:ident, $zero:ident, $widen:ident) => {
            pub(super) mod $modname {
                use super::{format_code, RawGemm, BF16, F16, FULL};
                use std::arch::x86_64::*;

                const L: usize = $lanes;
                const NR: usize = 2 * L;
                /// Rows per tile: 6 × 2 accumulators, 2 weight vectors and a broadcast fit
                /// the 16 vector registers.
                const MR: usize = 6;

                #[inline]
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn load_part(p: *const $t, w: usize) -> [$v; 2] {
                    if w == NR {
                        [$load(p), $load(p.add(L))]
                    } else {
                        let mut tmp = [0 as $t; NR];
                        std::ptr::copy_nonoverlapping(p, tmp.as_mut_ptr(), w);
                        [$load(tmp.as_ptr()), $load(tmp.as_ptr().add(L))]
                    }
                }

                #[inline]
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn store_part(p: *mut $t, w: usize, v: [$v; 2]) {
                    if w == NR {
                        $store(p, v[0]);
                        $store(p.add(L), v[1]);
                    } else {
                        let mut tmp = [0 as $t; NR];
                        $store(tmp.as_mut_ptr(), v[0]);
                        $store(tmp.as_mut_ptr().add(L), v[1]);
                        std::ptr::copy_nonoverlapping(tmp.as_ptr(), p, w);
                    }
                }

                /// One panel row (element `i` of the panels) as two vectors.
                #[inline(always)]
                unsafe fn load_b<const F: u8>(b: *const $t, i: usize) -> [$v; 2] {
                    if F == FULL {
                        [$load(b.add(i)), $load(b.add(i + L))]
                    } else {
                        let h = b as *const u16;
                        [
                            super::$widen::<F>(h.add(i)),
                            super::$widen::<F>(h.add(i + L)),
                        ]
                    }
                }

                /// `R` rows × one panel (`w` valid columns).
                #[inline]
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn tile<const R: usize, const F: u8>(
                    g: &RawGemm<$t>,
                    r0: usize,
                    panel: usize,
                ) {
                    let col = panel * NR;
                    let w = NR.min(g.n - col);
                    let mut acc = [[$zero(); 2]; R];
                    if !g.init.is_null() {
                        for (r, acc) in acc.iter_mut().enumerate() {
                            *acc = load_part(g.init.add((r0 + r) * g.ldi + col), w);
                        }
                    }
                    let a = g.a.add(r0 * g.lda);
                    let base = panel * g.k * NR;
                    for kk in 0..g.k {
                        let [b0, b1] = load_b::<F>(g.b, base + kk * NR);
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let x = $bcast(&*a.add(r * g.lda + kk));
                            acc[0] = $fma(x, b0, acc[0]);
                            acc[1] = $fma(x, b1, acc[1]);
                        }
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        store_part(g.c.add((r0 + r) * g.ldc + col), w, *acc);
                    }
                }

                /// One row × four full panels: eight independent accumulator chains, for the
                /// batch-1 recurrent product.
                #[inline]
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn row_x4<const F: u8>(g: &RawGemm<$t>, panel: usize) {
                    let col = panel * NR;
                    let mut acc = [[$zero(); 2]; 4];
                    if !g.init.is_null() {
                        for (q, acc) in acc.iter_mut().enumerate() {
                            *acc = load_part(g.init.add(col + q * NR), NR);
                        }
                    }
                    let stride = g.k * NR;
                    let base = panel * stride;
                    for kk in 0..g.k {
                        let x = $bcast(&*g.a.add(kk));
                        for (q, acc) in acc.iter_mut().enumerate() {
                            let [b0, b1] = load_b::<F>(g.b, base + q * stride + kk * NR);
                            acc[0] = $fma(x, b0, acc[0]);
                            acc[1] = $fma(x, b1, acc[1]);
                        }
                    }
                    for (q, acc) in acc.iter().enumerate() {
                        store_part(g.c.add(col + q * NR), NR, *acc);
                    }
                }

                #[target_feature(enable = "avx2,fma,f16c")]
                pub(in crate::kernels) unsafe fn gemm(g: RawGemm<$t>) {
                    match format_code(g.format) {
                        FULL => gemm_as::<FULL>(g),
                        BF16 => gemm_as::<BF16>(g),
                        _ => gemm_as::<F16>(g),
                    }
                }

                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn gemm_as<const F: u8>(g: RawGemm<$t>) {
                    let panels = g.n.div_ceil(NR);
                    if g.m == 1 {
                        // Groups of four full panels, then single panels; `reverse` walks
                        // the same groups backwards.
                        let quads = g.n / NR / 4;
                        let one = |i: usize| {
                            if i < quads {
                                row_x4::<F>(&g, 4 * i)
                            } else {
                                tile::<1, F>(&g, 0, 4 * quads + (i - quads))
                            }
                        };
                        let groups = quads + (panels - 4 * quads);
                        for i in 0..groups {
                            one(if g.reverse { groups - 1 - i } else { i });
                        }
                        return;
                    }
                    // Blocks of rows small enough to stay in L2 while every panel passes
                    // over them (the input projection has T·batch rows); a panel stays in
                    // L1 while the block's tiles use it.
                    let block = (((128 * 1024) / (g.k.max(1) * std::mem::size_of::<$t>())) / MR
                        * MR)
                        .max(MR);
                    let mut r0 = 0;
                    while r0 < g.m {
                        let end = (r0 + block).min(g.m);
                        for i in 0..panels {
                            let panel = if g.reverse { panels - 1 - i } else { i };
                            let mut r = r0;
                            while r < end {
                                let rows = MR.min(end - r);
                                match rows {
                                    6 => tile::<6, F>(&g, r, panel),
                                    5 => tile::<5, F>(&g, r, panel),
                                    4 => tile::<4, F>(&g, r, panel),
                                    3 => tile::<3, F>(&g, r, panel),
                                    2 => tile::<2, F>(&g, r, panel),
                                    _ => tile::<1, F>(&g, r, panel),
                                }
                                r += rows;
                            }
                        }
                        r0 = end;
                    }
                }
            }
        };
    }

    /// Eight bfloat16 ([`BF16`]) or IEEE half weights as f32: bfloat16 is f32's top half.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn widen8_ps<const F: u8>(p: *const u16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        let h = _mm_loadu_si128(p as *const __m128i);
        if F == BF16 {
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
        } else {
            _mm256_cvtph_ps(h)
        }
    }

    /// Four 16-bit weights as f64 (through f32, exactly).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn widen4_pd<const F: u8>(p: *const u16) -> std::arch::x86_64::__m256d {
        use std::arch::x86_64::*;
        let h = _mm_loadl_epi64(p as *const __m128i);
        let f = if F == BF16 {
            _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(h), 16))
        } else {
            _mm_cvtph_ps(h)
        };
        _mm256_cvtps_pd(f)
    }

    avx2_gemm!(
        f32k,
        f32,
        __m256,
        8,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_broadcast_ss,
        _mm256_fmadd_ps,
        _mm256_setzero_ps,
        widen8_ps
    );
    avx2_gemm!(
        f64k,
        f64,
        __m256d,
        4,
        _mm256_loadu_pd,
        _mm256_storeu_pd,
        _mm256_broadcast_sd,
        _mm256_fmadd_pd,
        _mm256_setzero_pd,
        widen4_pd
    );

    pub(crate) fn shape() -> (usize, usize) {
        static S: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();
        *S.get_or_init(|| {
            let v = std::env::var("SHAPE").unwrap_or("8x3".into());
            let (a, b) = v.split_once('x').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
    }

    /// Sixteen 16-bit weights as f32.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
    unsafe fn widen16_ps<const F: u8>(p: *const u16) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        let h = _mm256_loadu_si256(p as *const __m256i);
        if F == BF16 {
            _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
        } else {
            _mm512_cvtph_ps(h)
        }
    }

    /// Eight 16-bit weights as f64.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
    unsafe fn widen8_pd<const F: u8>(p: *const u16) -> std::arch::x86_64::__m512d {
        std::arch::x86_64::_mm512_cvtps_pd(widen8_ps::<F>(p))
    }

    /// One AVX-512 kernel per element type: a panel row (16 f32 or 8 f64) is one vector.
    macro_rules! avx512_gemm {
        ($modname:ident, $t:ty, $v:ty, $mask:ty, $lanes:expr, $load:ident, $maskz_load:ident, $store:ident, $mask_store:ident, $set1:ident, $fma:ident, $zero:ident, $widen:ident) => {
            pub(super) mod $modname {
                use super::{format_code, RawGemm, BF16, F16, FULL};
                use std::arch::x86_64::*;

                /// Columns per panel: one vector.
                const NR: usize = $lanes;
                /// Rows × panels per tile: 8 × 3 accumulators, 3 weight vectors and a
                /// broadcast take 28 of the 32 registers, and each k step's 24 FMAs need
                /// 11 loads.
                fn mr() -> usize {
                    super::shape().0
                }
                fn np() -> usize {
                    super::shape().1
                }
                /// Panels per pass of the one-row product (batch 1): eight independent
                /// chains cover the FMA latency, eight weight streams at once.
                const NP1: usize = 8;

                #[inline]
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
                unsafe fn load(p: *const $t, w: usize) -> $v {
                    if w >= NR {
                        $load(p)
                    } else {
                        $maskz_load(((1u32 << w) - 1) as $mask, p)
                    }
                }

                #[inline]
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
                unsafe fn store(p: *mut $t, w: usize, v: $v) {
                    if w >= NR {
                        $store(p, v)
                    } else {
                        $mask_store(p, ((1u32 << w) - 1) as $mask, v)
                    }
                }

                /// One panel row (element `i` of the panels) as a vector.
                #[inline(always)]
                unsafe fn load_b<const F: u8>(b: *const $t, i: usize) -> $v {
                    if F == FULL {
                        $load(b.add(i))
                    } else {
                        super::$widen::<F>((b as *const u16).add(i))
                    }
                }

                /// `R` rows × `P` panels from `panel` (the last of them possibly partial).
                #[inline]
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
                unsafe fn tile<const R: usize, const P: usize, const F: u8>(
                    g: &RawGemm<$t>,
                    r0: usize,
                    panel: usize,
                ) {
                    let col = panel * NR;
                    let width = |p: usize| g.n - (col + p * NR);
                    let mut acc = [[$zero(); P]; R];
                    if !g.init.is_null() {
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let ip = g.init.add((r0 + r) * g.ldi + col);
                            for (p, acc) in acc.iter_mut().enumerate() {
                                *acc = load(ip.add(p * NR), width(p));
                            }
                        }
                    }
                    let stride = g.k * NR;
                    let base = panel * stride;
                    // One pointer per row of a and per panel, each indexed by k, so the loop
                    // adds nothing but k to the addresses (integer work would take the FMA
                    // ports' slots).
                    let a: [*const $t; R] = std::array::from_fn(|r| g.a.add((r0 + r) * g.lda));
                    let bp: [*const $t; P] = std::array::from_fn(|p| {
                        if F == FULL {
                            g.b.add(base + p * stride)
                        } else {
                            (g.b as *const u16).add(base + p * stride) as *const $t
                        }
                    });
                    // One k step: every row's value times every panel's row of weights.
                    let step = |acc: &mut [[$v; P]; R], kk: usize| {
                        let mut bv = [$zero(); P];
                        for (bv, &bp) in bv.iter_mut().zip(&bp) {
                            *bv = load_b::<F>(bp, kk * NR);
                        }
                        for (acc, &a) in acc.iter_mut().zip(&a) {
                            let x = $set1(*a.add(kk));
                            for (acc, &bv) in acc.iter_mut().zip(&bv) {
                                *acc = $fma(x, bv, *acc);
                            }
                        }
                    };
                    // Four steps per pass (in order): the loop's own work is spread over
                    // more FMAs (measured: 158 → 174 GFLOP/s for an 8 × 3 tile at k = 256).
                    let mut kk = 0;
                    while kk + 4 <= g.k {
                        step(&mut acc, kk);
                        step(&mut acc, kk + 1);
                        step(&mut acc, kk + 2);
                        step(&mut acc, kk + 3);
                        kk += 4;
                    }
                    while kk < g.k {
                        step(&mut acc, kk);
                        kk += 1;
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        let cp = g.c.add((r0 + r) * g.ldc + col);
                        for (p, &acc) in acc.iter().enumerate() {
                            store(cp.add(p * NR), width(p), acc);
                        }
                    }
                }

                /// One tile of `rows` rows × `np` panels.
                #[inline]
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
                unsafe fn tile_of<const F: u8>(
                    g: &RawGemm<$t>,
                    r0: usize,
                    panel: usize,
                    rows: usize,
                    np: usize,
                ) {
                    macro_rules! by_rows {
                        ($p:literal) => {
                            match rows {
                                12 => tile::<12, $p, F>(g, r0, panel),
                                11 => tile::<11, $p, F>(g, r0, panel),
                                10 => tile::<10, $p, F>(g, r0, panel),
                                9 => tile::<9, $p, F>(g, r0, panel),
                                8 => tile::<8, $p, F>(g, r0, panel),
                                7 => tile::<7, $p, F>(g, r0, panel),
                                6 => tile::<6, $p, F>(g, r0, panel),
                                5 => tile::<5, $p, F>(g, r0, panel),
                                4 => tile::<4, $p, F>(g, r0, panel),
                                3 => tile::<3, $p, F>(g, r0, panel),
                                2 => tile::<2, $p, F>(g, r0, panel),
                                _ => tile::<1, $p, F>(g, r0, panel),
                            }
                        };
                    }
                    match np {
                        4 => by_rows!(4),
                        3 => by_rows!(3),
                        2 => by_rows!(2),
                        _ => by_rows!(1),
                    }
                }

                #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
                pub(in crate::kernels) unsafe fn gemm(g: RawGemm<$t>) {
                    match format_code(g.format) {
                        FULL => gemm_as::<FULL>(g),
                        BF16 => gemm_as::<BF16>(g),
                        _ => gemm_as::<F16>(g),
                    }
                }

                #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
                unsafe fn gemm_as<const F: u8>(g: RawGemm<$t>) {
                    let panels = g.n.div_ceil(NR);
                    if g.m == 1 {
                        // Groups of NP1 panels, then one of 4, then one of up to 3;
                        // `reverse` walks the same groups backwards.
                        let full = panels / NP1;
                        let mut tail = [(0, 0); 2];
                        let mut tails = 0;
                        let mut p = full * NP1;
                        if p + 4 <= panels {
                            tail[tails] = (p, 4);
                            tails += 1;
                            p += 4;
                        }
                        if p < panels {
                            tail[tails] = (p, panels - p);
                            tails += 1;
                        }
                        let groups = full + tails;
                        for i in 0..groups {
                            let i = if g.reverse { groups - 1 - i } else { i };
                            if i < full {
                                tile::<1, NP1, F>(&g, 0, i * NP1);
                            } else {
                                match tail[i - full] {
                                    (p, 4) => tile::<1, 4, F>(&g, 0, p),
                                    (p, np) => tile_of::<F>(&g, 0, p, 1, np),
                                }
                            }
                        }
                        return;
                    }
                    // Blocks of rows small enough to stay in L2 while every panel passes
                    // over them (the input projection has T·batch rows).
                    let block = (((128 * 1024) / (g.k.max(1) * std::mem::size_of::<$t>())) / mr()
                        * mr())
                    .max(mr());
                    let groups = panels.div_ceil(np());
                    let mut r0 = 0;
                    while r0 < g.m {
                        let end = (r0 + block).min(g.m);
                        for i in 0..groups {
                            let i = if g.reverse { groups - 1 - i } else { i };
                            let panel = i * np();
                            let np = np().min(panels - panel);
                            let mut r = r0;
                            while r < end {
                                let rows = mr().min(end - r);
                                tile_of::<F>(&g, r, panel, rows, np);
                                r += rows;
                            }
                        }
                        r0 = end;
                    }
                }
            }
        };
    }

    avx512_gemm!(
        f32z,
        f32,
        __m512,
        __mmask16,
        16,
        _mm512_loadu_ps,
        _mm512_maskz_loadu_ps,
        _mm512_storeu_ps,
        _mm512_mask_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_setzero_ps,
        widen16_ps
    );
    avx512_gemm!(
        f64z,
        f64,
        __m512d,
        __mmask8,
        8,
        _mm512_loadu_pd,
        _mm512_maskz_loadu_pd,
        _mm512_storeu_pd,
        _mm512_mask_storeu_pd,
        _mm512_set1_pd,
        _mm512_fmadd_pd,
        _mm512_setzero_pd,
        widen8_pd
    );

    /// The portable loops, compiled with AVX2 (or AVX-512) enabled so they vectorize 8 (or
    /// 16) wide. No FMA contraction happens (Rust does not fuse `a * b + c`), so the results
    /// are the same bits as the portable build's.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sigmoid_slice_f32(xs: &mut [f32]) {
        super::sigmoid_slice_f32(xs)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tanh_slice_f32(xs: &mut [f32]) {
        super::tanh_slice_f32(xs)
    }

    #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
    pub(super) unsafe fn sigmoid_slice_f32_512(xs: &mut [f32]) {
        super::sigmoid_slice_f32(xs)
    }

    #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
    pub(super) unsafe fn tanh_slice_f32_512(xs: &mut [f32]) {
        super::tanh_slice_f32(xs)
    }
}

/// `x ← sigmoid x` on the vectors of `isa` (same bits on every set).
fn sigmoid_slice_f32_on(isa: Isa, xs: &mut [f32]) {
    match isa {
        // SAFETY: the CPU runs `isa` (it was selected or checked among the available ones).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::sigmoid_slice_f32_512(xs) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::sigmoid_slice_f32(xs) },
        _ => sigmoid_slice_f32(xs),
    }
}

/// `x ← tanh x` on the vectors of `isa` (same bits on every set).
fn tanh_slice_f32_on(isa: Isa, xs: &mut [f32]) {
    match isa {
        // SAFETY: as in `sigmoid_slice_f32_on`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::tanh_slice_f32_512(xs) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::tanh_slice_f32(xs) },
        _ => tanh_slice_f32(xs),
    }
}

/// `e^x` for f32 in plain arithmetic (vectorizes): n = round(x·log2 e), r = x − n·ln 2 in
/// two parts (Cody–Waite), e^r by Cephes' degree-6 polynomial, 2^n through the exponent
/// bits. About 1 ulp; saturates to e^-87.3 and e^88 outside that range, NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.336_54, 88.0);
    let z = x * std::f32::consts::LOG2_E + MAGIC;
    let n = z - MAGIC;
    let ni = (z.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = x - n * 0.693_359_4;
    let r = r - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    #[allow(clippy::excessive_precision)] // the fitted coefficient, kept as fitted
    {
        p = p * r + 5.000_000_1e-1;
    }
    let y = p * (r * r) + r + 1.0;
    y * f32::from_bits((ni.wrapping_add(127) << 23) as u32)
}

/// `1 / (1 + e^-x)` for f32 with [`exp_f32`].
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// `tanh x` for f32: the odd 13/6 rational approximation of Eigen and MLAS, clamped at
/// ±7.905 where tanh rounds to ±1. Odd in x, so small arguments keep their relative
/// accuracy. NaN stays NaN.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 + -8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    let mut q = 1.198_258_4e-6f32;
    q = q * x2 + 1.185_347e-4;
    q = q * x2 + 2.268_434_7e-3;
    q = q * x2 + 4.893_525e-3;
    x * p / q
}

#[inline(always)]
fn sigmoid_slice_f32(xs: &mut [f32]) {
    for x in xs {
        *x = sigmoid_f32(*x);
    }
}

#[inline(always)]
fn tanh_slice_f32(xs: &mut [f32]) {
    for x in xs {
        *x = tanh_f32(*x);
    }
}

/// `1 / (1 + e^-x)`, written so that neither tail overflows.
#[inline]
pub fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// `ln(1 + e^x)` without overflow for large x: `max(x, 0) + ln(1 + e^-|x|)`.
#[inline]
pub fn softplus<T: Float>(x: T) -> T {
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}

/// `x / (1 + |x|)`.
#[inline]
pub fn softsign<T: Float>(x: T) -> T {
    x / (T::one() + x.abs())
}

/// `alpha · (e^x - 1)` below zero, x above.
#[inline]
pub fn elu<T: Float>(x: T, alpha: T) -> T {
    if x >= T::zero() {
        x
    } else {
        alpha * x.exp_m1()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// Every kernel set this CPU runs against ndarray's product; the x86 sets (all fused
    /// multiply-adds in k order) against each other bit for bit, at every thread split.
    fn check_gemm<T: Float>(m: usize, k: usize, n: usize, init: u8) {
        for format in [WeightFormat::Full, WeightFormat::Bf16, WeightFormat::F16] {
            check_gemm_as::<T>(m, k, n, init, format);
        }
    }

    /// As [`check_gemm`] with the weights stored in `format`: against ndarray's product of
    /// the rounded weights.
    fn check_gemm_as<T: Float>(m: usize, k: usize, n: usize, init: u8, format: WeightFormat) {
        let a = Array2::from_shape_fn((m, k), |(i, j)| {
            T::from_f32(((i * 7 + j * 3) % 11) as f32 * 0.1 - 0.5)
        });
        let b = Array2::from_shape_fn((k, n), |(i, j)| {
            T::from_f32(((i * 5 + j * 13) % 17) as f32 * 0.0517 - 0.4)
        });
        let bias = Array2::from_shape_fn((m, n), |(i, j)| T::from_f32((i + 2 * j) as f32 * 0.01));
        let packed = Packed::pack_as(b.view(), format);
        let rounded = packed.unpack();
        if format == WeightFormat::Full {
            assert_eq!(rounded, b);
        } else {
            assert!(rounded != b || k * n == 0, "{format:?} rounds nothing");
            let bound = T::from_f32(if format == WeightFormat::Bf16 {
                1.0 / 256.0
            } else {
                1.0 / 2048.0
            });
            for (r, x) in rounded.iter().zip(&b) {
                assert!(
                    (*r - *x).abs() <= x.abs() * bound,
                    "{format:?} {x:?} -> {r:?}"
                );
            }
        }
        let b = rounded;
        let mut want = Array2::zeros((m, n));
        matmul(a.view(), b.view(), want.view_mut());
        match init {
            1 => want.zip_mut_with(&bias.row(0), |w, &b| *w = *w + b),
            2 => want.zip_mut_with(&bias, |w, &b| *w = *w + b),
            _ => {}
        }
        let init = match init {
            1 => Init::Row(bias.row(0).to_slice().unwrap()),
            2 => Init::Rows(bias.as_slice().unwrap(), n),
            _ => Init::Zero,
        };
        let mut fused: Option<(Isa, Array2<T>)> = None;
        for isa in Isa::available() {
            let mut got = Array2::from_elem((m, n), T::nan());
            gemm_packed_on(
                isa,
                m,
                a.as_slice().unwrap(),
                k,
                &packed,
                got.as_slice_mut().unwrap(),
                n,
                init,
            );
            for (g, w) in got.iter().zip(want.iter()) {
                assert!(
                    (*g - *w).abs() <= T::from_f32(1e-4),
                    "{isa:?} {format:?} m {m} k {k} n {n}: {g:?} vs {w:?}"
                );
            }
            if isa == Isa::Portable {
                continue;
            }
            match &fused {
                None => fused = Some((isa, got)),
                Some((first, bits)) => assert!(
                    bits.iter()
                        .zip(got.iter())
                        .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())),
                    "{isa:?} and {first:?} differ, {format:?} m {m} k {k} n {n}"
                ),
            }
        }
        // The selected set with the columns split among threads: the same bits as unsplit.
        let mut one = Array2::from_elem((m, n), T::nan());
        gemm_packed(
            m,
            a.as_slice().unwrap(),
            k,
            &packed,
            one.as_slice_mut().unwrap(),
            n,
            init,
        );
        for parts in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(parts)
                .build()
                .unwrap();
            let mut many = Array2::from_elem((m, n), T::nan());
            pool.install(|| {
                gemm_packed_par(
                    parts,
                    m,
                    a.as_slice().unwrap(),
                    k,
                    &packed,
                    many.as_slice_mut().unwrap(),
                    n,
                    init,
                )
            });
            assert!(
                one.iter().zip(many.iter()).all(|(x, y)| x == y),
                "{parts} parts, m {m} k {k} n {n}"
            );
        }
    }

    #[test]
    fn packed_products_match_matmul() {
        eprintln!("kernel sets run here: {:?}", Isa::available());
        for &(m, k, n) in &[
            (1, 5, 3),
            (1, 16, 64),
            (1, 33, 100),
            (1, 64, 256),
            // One row over 8 + 4 + 3 + 2 + 1 panels and a partial one; over 8 panels twice.
            (1, 40, 16 * 18 + 5),
            (1, 300, 256),
            (2, 7, 17),
            (4, 20, 48),
            (7, 9, 33),
            (9, 24, 16 * 5 + 3),
            (16, 32, 96),
            (16, 64, 16 * 7 + 9),
            (13, 0, 5),
            // Several row blocks (128 KiB of A each), the last one with a partial tile.
            (130, 512, 40),
            (61, 1024, 20),
            (200, 160, 16 * 4 + 1),
        ] {
            for init in 0..3 {
                check_gemm::<f32>(m, k, n, init);
                check_gemm::<f64>(m, k, n, init);
            }
        }
    }

    #[test]
    fn sixteen_bit_roundings() {
        // bfloat16: nearest, ties to even; NaN stays NaN; infinities and zeros kept.
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, to even
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, to even
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80); // rounds past the largest: infinity
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(f32_to_bf16(-0.0), 0x8000);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(bf16_to_f32(f32_to_bf16(-2.5)), -2.5);
        assert_eq!(f16_to_f32(f32_to_f16(0.1)), 0.099975586);
        assert_eq!(f16_to_f32(f32_to_f16(1e5)), f32::INFINITY);
        for i in 0..100_000 {
            let x = (i as f32 - 50_000.0) * 1.37e-3;
            let r = bf16_to_f32(f32_to_bf16(x));
            assert!((r - x).abs() <= x.abs() / 256.0, "{x} -> {r}");
            let r = f16_to_f32(f32_to_f16(x));
            assert!((r - x).abs() <= x.abs() / 2048.0, "{x} -> {r}");
        }
    }

    #[test]
    fn every_kernel_set_gives_the_same_activations() {
        let xs: Vec<f32> = (0..4099)
            .map(|i| (i as f32 - 2049.0) * 0.0173)
            .chain([
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.0,
                -0.0,
                1e-30,
                200.0,
            ])
            .collect();
        let (mut s0, mut t0) = (xs.clone(), xs.clone());
        sigmoid_slice_f32(&mut s0);
        tanh_slice_f32(&mut t0);
        for isa in Isa::available() {
            let (mut s, mut t) = (xs.clone(), xs.clone());
            sigmoid_slice_f32_on(isa, &mut s);
            tanh_slice_f32_on(isa, &mut t);
            let same =
                |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same(&s, &s0) && same(&t, &t0), "{isa:?}");
        }
    }

    #[test]
    fn fast_f32_functions_are_within_a_few_ulp() {
        let mut worst = (0.0f64, 0.0f64, 0.0f64);
        let mut x = -30.0f32;
        while x < 30.0 {
            let want_s = 1.0 / (1.0 + (-(x as f64)).exp());
            let want_t = (x as f64).tanh();
            let want_e = (x as f64).exp();
            let rel = |got: f32, want: f64| {
                if want == 0.0 {
                    got.abs() as f64
                } else {
                    ((got as f64 - want) / want).abs()
                }
            };
            worst.0 = worst.0.max(rel(sigmoid_f32(x), want_s));
            worst.1 = worst.1.max(rel(tanh_f32(x), want_t));
            if x > -80.0 {
                worst.2 = worst.2.max(rel(exp_f32(x), want_e));
            }
            x += 0.000_37;
        }
        let ulp = f32::EPSILON as f64;
        assert!(
            worst.0 < 4.0 * ulp && worst.1 < 4.0 * ulp && worst.2 < 2.0 * ulp,
            "relative errors {worst:?}"
        );
        assert!(tanh_f32(f32::NAN).is_nan() && sigmoid_f32(f32::NAN).is_nan());
        assert!(sigmoid_f32(-200.0).max(0.0) < 1e-37);
        assert_eq!(sigmoid_f32(200.0), 1.0);
        assert_eq!(tanh_f32(20.0), 1.0);
        assert_eq!(tanh_f32(-20.0), -1.0);
        assert_eq!(tanh_f32(0.0), 0.0);
    }
}
