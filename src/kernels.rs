//! Kernels: arithmetic only. Matrix products and the scalar functions the activations are
//! made of, for `f32` and `f64`. Nothing here knows about gates, layouts or ONNX.
//!
//! The recurrent product runs every time step on few rows (the batch), so it uses weights
//! packed once ([`Packed`]: panels of [`Float::NR`] columns, each panel contiguous over k)
//! and [`gemm_packed`], which has an AVX2+FMA kernel chosen at run time and a portable
//! fallback that computes the same sums (up to rounding: FMA versus multiply-then-add).
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

    /// [`gemm_packed`] after its bounds checks.
    ///
    /// # Safety
    /// The caller has checked every pointer range (see [`gemm_packed`]).
    #[doc(hidden)]
    unsafe fn gemm_packed_unchecked(g: RawGemm<Self>);
}

impl Float for f32 {
    const NR: usize = 16;

    fn from_f32(v: f32) -> Self {
        v
    }

    fn sigmoid_slice(xs: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { x86::sigmoid_slice_f32(xs) };
        }
        sigmoid_slice_f32(xs)
    }

    fn tanh_slice(xs: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { x86::tanh_slice_f32(xs) };
        }
        tanh_slice_f32(xs)
    }

    unsafe fn gemm_packed_unchecked(g: RawGemm<f32>) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            return x86::f32k::gemm(g);
        }
        gemm_portable(g)
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

    unsafe fn gemm_packed_unchecked(g: RawGemm<f64>) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            return x86::f64k::gemm(g);
        }
        gemm_portable(g)
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
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

/// A `[k, n]` matrix packed for [`gemm_packed`]: panels of [`Float::NR`] columns (the last
/// one zero-padded), each stored k-major so a panel is one contiguous run of memory.
#[derive(Clone, PartialEq)]
pub struct Packed<T> {
    k: usize,
    n: usize,
    len: usize,
    lines: Vec<Line>,
    _t: PhantomData<T>,
}

impl<T> std::fmt::Debug for Packed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Packed({} × {})", self.k, self.n)
    }
}

impl<T: Float> Packed<T> {
    /// Packs `b` (`[k, n]`, any layout).
    pub fn pack(b: ArrayView2<T>) -> Packed<T> {
        let (k, n) = b.dim();
        let nr = T::NR;
        let panels = n.div_ceil(nr);
        let len = panels * k * nr;
        let bytes = len * std::mem::size_of::<T>();
        let mut p = Packed {
            k,
            n,
            len,
            // All-zero bytes are 0.0 for f32 and f64.
            lines: vec![Line([0; 64]); bytes.div_ceil(64)],
            _t: PhantomData,
        };
        let data = p.data_mut();
        for panel in 0..panels {
            for kk in 0..k {
                for j in 0..nr.min(n - panel * nr) {
                    data[(panel * k + kk) * nr + j] = b[[kk, panel * nr + j]];
                }
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

    fn data(&self) -> &[T] {
        // SAFETY: `lines` holds at least `len` elements' bytes, aligned for T; T is f32 or
        // f64, for which every bit pattern is valid.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const T, self.len) }
    }

    fn data_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `data`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut T, self.len) }
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
    b: *const T,
    c: *mut T,
    ldc: usize,
    /// Null for no init; row stride 0 for a broadcast row.
    init: *const T,
    ldi: usize,
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
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return;
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
    let g = RawGemm {
        m,
        k,
        n,
        a: a.as_ptr(),
        lda,
        b: b.data().as_ptr(),
        c: c.as_mut_ptr(),
        ldc,
        init,
        ldi,
    };
    // SAFETY: every range was checked above.
    unsafe { gemm_split(g, parts) }
}

/// A product's arguments, sent to another thread: each part writes only its own columns of
/// `c`, and the caller waits for every part (`rayon::join`) before the borrows end.
struct SendGemm<T>(RawGemm<T>);

// SAFETY: see the type's comment; T is f32 or f64.
unsafe impl<T: Send> Send for SendGemm<T> {}

impl<T: Float> SendGemm<T> {
    /// # Safety
    /// As [`gemm_split`].
    unsafe fn run(self, parts: usize) {
        gemm_split(self.0, parts)
    }
}

/// Splits the columns in two (whole panels, in proportion to the threads each side gets)
/// until one part is left per thread.
///
/// # Safety
/// The ranges of `g` are valid, as checked by [`gemm_packed_par`].
unsafe fn gemm_split<T: Float>(g: RawGemm<T>, parts: usize) {
    let nr = T::NR;
    let panels = g.n.div_ceil(nr);
    if parts <= 1 || panels < 2 || g.m * g.k * g.n < PAR_MIN_MACS {
        return T::gemm_packed_unchecked(g);
    }
    let left_parts = parts / 2;
    let left_panels = (panels * left_parts / parts).max(1);
    let col = left_panels * nr;
    let left = RawGemm { n: col, ..g };
    let right = RawGemm {
        n: g.n - col,
        b: g.b.add(left_panels * g.k * nr),
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
        move || left.run(left_parts),
        move || right.run(parts - left_parts),
    );
}

/// The portable product: the same panel walk, plain multiply-add.
unsafe fn gemm_portable<T: Float>(g: RawGemm<T>) {
    let nr = T::NR;
    let mut acc = [T::zero(); 16];
    for panel in 0..g.n.div_ceil(nr) {
        let col = panel * nr;
        let w = nr.min(g.n - col);
        let bp = std::slice::from_raw_parts(g.b.add(panel * g.k * nr), g.k * nr);
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
                let brow = &bp[kk * nr..(kk + 1) * nr];
                for (a, &b) in acc.iter_mut().zip(brow) {
                    *a = *a + x * b;
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
    use super::RawGemm;

    /// One AVX2+FMA kernel per element type: `$lanes` elements per vector, panels of two.
    macro_rules! avx2_gemm {
        ($modname:ident, $t:ty, $v:ty, $lanes:expr, $load:ident, $store:ident, $bcast:ident, $fma:ident, $zero:ident) => {
            pub(super) mod $modname {
                use super::RawGemm;
                use std::arch::x86_64::*;

                const L: usize = $lanes;
                const NR: usize = 2 * L;
                /// Rows per tile: 6 × 2 accumulators, 2 weight vectors and a broadcast fit
                /// the 16 vector registers.
                const MR: usize = 6;

                #[inline]
                #[target_feature(enable = "avx2,fma")]
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
                #[target_feature(enable = "avx2,fma")]
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

                /// `R` rows × one panel (`w` valid columns).
                #[inline]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn tile<const R: usize>(g: &RawGemm<$t>, r0: usize, panel: usize) {
                    let col = panel * NR;
                    let w = NR.min(g.n - col);
                    let mut acc = [[$zero(); 2]; R];
                    if !g.init.is_null() {
                        for (r, acc) in acc.iter_mut().enumerate() {
                            *acc = load_part(g.init.add((r0 + r) * g.ldi + col), w);
                        }
                    }
                    let a = g.a.add(r0 * g.lda);
                    let mut bp = g.b.add(panel * g.k * NR);
                    for kk in 0..g.k {
                        let b0 = $load(bp);
                        let b1 = $load(bp.add(L));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let x = $bcast(&*a.add(r * g.lda + kk));
                            acc[0] = $fma(x, b0, acc[0]);
                            acc[1] = $fma(x, b1, acc[1]);
                        }
                        bp = bp.add(NR);
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        store_part(g.c.add((r0 + r) * g.ldc + col), w, *acc);
                    }
                }

                /// One row × four full panels: eight independent accumulator chains, for the
                /// batch-1 recurrent product.
                #[inline]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn row_x4(g: &RawGemm<$t>, panel: usize) {
                    let col = panel * NR;
                    let mut acc = [[$zero(); 2]; 4];
                    if !g.init.is_null() {
                        for (q, acc) in acc.iter_mut().enumerate() {
                            *acc = load_part(g.init.add(col + q * NR), NR);
                        }
                    }
                    let stride = g.k * NR;
                    let b = g.b.add(panel * stride);
                    for kk in 0..g.k {
                        let x = $bcast(&*g.a.add(kk));
                        for (q, acc) in acc.iter_mut().enumerate() {
                            let bp = b.add(q * stride + kk * NR);
                            acc[0] = $fma(x, $load(bp), acc[0]);
                            acc[1] = $fma(x, $load(bp.add(L)), acc[1]);
                        }
                    }
                    for (q, acc) in acc.iter().enumerate() {
                        store_part(g.c.add(col + q * NR), NR, *acc);
                    }
                }

                #[target_feature(enable = "avx2,fma")]
                pub(in crate::kernels) unsafe fn gemm(g: RawGemm<$t>) {
                    let panels = g.n.div_ceil(NR);
                    let mut panel = 0;
                    if g.m == 1 {
                        while (panel + 4) * NR <= g.n {
                            row_x4(&g, panel);
                            panel += 4;
                        }
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
                        for panel in panel..panels {
                            let mut r = r0;
                            while r < end {
                                let rows = MR.min(end - r);
                                match rows {
                                    6 => tile::<6>(&g, r, panel),
                                    5 => tile::<5>(&g, r, panel),
                                    4 => tile::<4>(&g, r, panel),
                                    3 => tile::<3>(&g, r, panel),
                                    2 => tile::<2>(&g, r, panel),
                                    _ => tile::<1>(&g, r, panel),
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

    avx2_gemm!(
        f32k,
        f32,
        __m256,
        8,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_broadcast_ss,
        _mm256_fmadd_ps,
        _mm256_setzero_ps
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
        _mm256_setzero_pd
    );

    /// The portable loops, compiled with AVX2 enabled so they vectorize 8 wide. No FMA
    /// contraction happens (Rust does not fuse `a * b + c`), so the results are the same
    /// bits as the portable build's.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sigmoid_slice_f32(xs: &mut [f32]) {
        super::sigmoid_slice_f32(xs)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tanh_slice_f32(xs: &mut [f32]) {
        super::tanh_slice_f32(xs)
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

    fn check_gemm<T: Float>(m: usize, k: usize, n: usize, init: u8) {
        let a = Array2::from_shape_fn((m, k), |(i, j)| {
            T::from_f32(((i * 7 + j * 3) % 11) as f32 * 0.1 - 0.5)
        });
        let b = Array2::from_shape_fn((k, n), |(i, j)| {
            T::from_f32(((i * 5 + j * 13) % 17) as f32 * 0.05 - 0.4)
        });
        let bias = Array2::from_shape_fn((m, n), |(i, j)| T::from_f32((i + 2 * j) as f32 * 0.01));
        let mut want = Array2::zeros((m, n));
        matmul(a.view(), b.view(), want.view_mut());
        match init {
            1 => want.zip_mut_with(&bias.row(0), |w, &b| *w = *w + b),
            2 => want.zip_mut_with(&bias, |w, &b| *w = *w + b),
            _ => {}
        }
        let packed = Packed::pack(b.view());
        let mut got = Array2::from_elem((m, n), T::nan());
        let init = match init {
            1 => Init::Row(bias.row(0).to_slice().unwrap()),
            2 => Init::Rows(bias.as_slice().unwrap(), n),
            _ => Init::Zero,
        };
        gemm_packed(
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
                "m {m} k {k} n {n}: {g:?} vs {w:?}"
            );
        }
        let mut portable = Array2::from_elem((m, n), T::nan());
        let g = RawGemm {
            m,
            k,
            n,
            a: a.as_ptr(),
            lda: k,
            b: packed.data().as_ptr(),
            c: portable.as_mut_ptr(),
            ldc: n,
            init: match init {
                Init::Zero => std::ptr::null(),
                Init::Row(r) | Init::Rows(r, _) => r.as_ptr(),
            },
            ldi: if let Init::Rows(_, ld) = init { ld } else { 0 },
        };
        unsafe { gemm_portable(g) };
        for (g, w) in portable.iter().zip(want.iter()) {
            assert!(
                (*g - *w).abs() <= T::from_f32(1e-4),
                "portable m {m} k {k} n {n}"
            );
        }
    }

    #[test]
    fn packed_products_match_matmul() {
        for &(m, k, n) in &[
            (1, 5, 3),
            (1, 16, 64),
            (1, 33, 100),
            (1, 64, 256),
            (2, 7, 17),
            (4, 20, 48),
            (7, 9, 33),
            (16, 32, 96),
            (13, 0, 5),
            // Several row blocks (128 KiB of A each), the last one with a partial tile.
            (130, 512, 40),
            (61, 1024, 20),
        ] {
            for init in 0..3 {
                check_gemm::<f32>(m, k, n, init);
                check_gemm::<f64>(m, k, n, init);
            }
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
