//! The products on packed weights: their checked entry points, the raw arguments the kernels
//! take, and the split of a product's columns among threads.

use super::dispatch::Isa;
use super::format::WeightFormat;
use super::packing::Packed;
use super::Float;

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
    pub(super) m: usize,
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) a: *const T,
    pub(super) lda: usize,
    /// The panels: `T`s, or u16s in a 16-bit format (the kernels cast).
    pub(super) b: *const T,
    pub(super) format: WeightFormat,
    pub(super) c: *mut T,
    pub(super) ldc: usize,
    /// Null for no init; row stride 0 for a broadcast row.
    pub(super) init: *const T,
    pub(super) ldi: usize,
    /// Walk the panels from the last to the first. The sums are the same; what changes is
    /// which weights are still in cache: a product that reads more than the cache holds,
    /// every time step in the same order, misses everywhere (each line is evicted just
    /// before it is needed again), while alternating the direction starts each step on the
    /// weights the previous step read last.
    pub(super) reverse: bool,
}

/// `c[r, :n] = init[r] + a[r, :k] · b` for `m` rows, `a` and `c` (and `Init::Rows`) given as
/// slices with row strides (the rows of `a` may overlap: `lda < k`). Panics when a slice is
/// too short for its shape.
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
    // Rows of `a` may overlap (`lda < k`: a channels-last convolution's receptive fields,
    // src/conv/channels_last.rs); the kernels only read them.
    assert!(
        k == 0 || a.len() >= need(lda, k),
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
