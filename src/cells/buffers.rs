//! The cells' data: weights per direction, state, workspace, step buffers, gate padding.

use super::*;

/// One direction's weights, in the cells' layout: ONNX gate order, transposed to columns.
#[derive(Debug, Clone, PartialEq)]
pub struct DirWeights<T> {
    /// Wᵀ, `[input, gates·hidden]`.
    pub w_t: Array2<T>,
    /// Rᵀ, `[hidden, gates·hidden]`.
    pub r_t: Array2<T>,
    /// Input-side bias Wb, `[gates·hidden]` (zeros when B is absent).
    pub wb: ndarray::Array1<T>,
    /// Recurrent-side bias Rb, `[gates·hidden]`.
    pub rb: ndarray::Array1<T>,
    /// LSTM peepholes `[Pi, Po, Pf]`, `[3·hidden]`.
    pub p: Option<ndarray::Array1<T>>,
}

impl<T: Float> DirWeights<T> {
    /// From one direction's slices of the ONNX inputs: W `[G·H, I]`, R `[G·H, H]`,
    /// B `[2·G·H]`, P `[3·H]`. Shapes must already be checked (the op does it with messages
    /// naming the node).
    pub fn from_onnx(
        w: ArrayView2<T>,
        r: ArrayView2<T>,
        b: Option<ArrayView1<T>>,
        p: Option<ArrayView1<T>>,
    ) -> DirWeights<T> {
        let gh = w.nrows();
        let (wb, rb) = match b {
            Some(b) => split_onnx_bias(b),
            None => (ndarray::Array1::zeros(gh), ndarray::Array1::zeros(gh)),
        };
        DirWeights {
            w_t: onnx_rows_to_cell_columns(w),
            r_t: onnx_rows_to_cell_columns(r),
            wb,
            rb,
            p: p.map(|p| p.to_owned()),
        }
    }

    /// Hidden size H.
    pub fn hidden_size(&self) -> usize {
        self.r_t.nrows()
    }

    /// Input size I.
    pub fn input_size(&self) -> usize {
        self.w_t.nrows()
    }
}

/// The recurrent state of a batch: hidden state, and the cell state for LSTM.
///
/// Both arrays are `[batch, hidden]` and always in standard (row-major, contiguous) layout,
/// which the cells rely on.
#[derive(Debug, Clone, PartialEq)]
pub struct State<T> {
    pub(super) h: Array2<T>,
    pub(super) c: Option<Array2<T>>,
}

/// `[rows, cols]` zeros in standard layout whose first element sits on a 64-byte boundary.
/// The pieces of a step write disjoint columns of the same rows from different cores; with
/// rows starting on cache lines (and piece boundaries on whole panels, 64 bytes of f32), no
/// line is written by two cores, which would bounce it between their caches every step.
pub(crate) fn aligned_zeros<T: Float>(rows: usize, cols: usize) -> Array2<T> {
    let n = rows * cols;
    let slack = 64 / std::mem::size_of::<T>();
    let v = Array1::<T>::zeros(n + slack);
    let misalign = v.as_ptr() as usize % 64;
    let skip = if misalign == 0 {
        0
    } else {
        (64 - misalign) / std::mem::size_of::<T>()
    };
    v.slice_move(s![skip..skip + n])
        .into_shape_with_order((rows, cols))
        .expect("n elements")
}

/// A copy of `a` made by [`aligned_zeros`].
pub(super) fn aligned_copy<T: Float>(a: ArrayView2<T>) -> Array2<T> {
    let mut out = aligned_zeros(a.nrows(), a.ncols());
    out.assign(&a);
    out
}

impl<T: Float> State<T> {
    /// A state from given arrays (copied into standard layout, starting on a cache line, if
    /// they are not).
    pub fn new(h: Array2<T>, c: Option<Array2<T>>) -> State<T> {
        let std = |a: Array2<T>| {
            if a.is_standard_layout() && (a.as_ptr() as usize).is_multiple_of(64) {
                a
            } else {
                aligned_copy(a.view())
            }
        };
        State {
            h: std(h),
            c: c.map(std),
        }
    }

    /// A copy whose arrays start on cache lines (a clone's may not).
    pub(super) fn aligned_clone(&self) -> State<T> {
        State {
            h: aligned_copy(self.h.view()),
            c: self.c.as_ref().map(|c| aligned_copy(c.view())),
        }
    }

    /// Hidden state `[batch, hidden]`.
    pub fn h(&self) -> ArrayView2<'_, T> {
        self.h.view()
    }

    /// Cell state `[batch, hidden]` (LSTM only).
    pub fn c(&self) -> Option<ArrayView2<'_, T>> {
        self.c.as_ref().map(|c| c.view())
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.h.nrows()
    }

    pub(super) fn h_slice(&self) -> &[T] {
        self.h.as_slice().expect("State keeps standard layout")
    }

    pub(super) fn c_slice(&self) -> Option<&[T]> {
        self.c
            .as_ref()
            .map(|c| c.as_slice().expect("State keeps standard layout"))
    }

    pub(super) fn h_slice_mut(&mut self) -> &mut [T] {
        self.h.as_slice_mut().expect("State keeps standard layout")
    }
}

/// Buffers a cell reuses across steps, so the time loop does not allocate, and how many
/// threads its recurrent products may use.
#[derive(Debug, Clone)]
pub struct Workspace<T> {
    /// `[batch, gates·hidden]`, rows padded by [`row_stride`].
    pub(super) gates: Array2<T>,
    /// `[batch, hidden]`, for GRU's `r ⊙ h`.
    pub(super) extra: Array2<T>,
    /// Threads of the current rayon pool the products split their columns over (1: none).
    pub(super) parts: usize,
    /// Whether the next step walks the recurrent weights backwards: alternating keeps the
    /// weights one step read last in cache for the next (same sums either way).
    pub(super) reverse: bool,
}

impl<T: Float> Workspace<T> {
    pub(super) fn new(
        batch: usize,
        gate_width: usize,
        hidden: usize,
        parts: usize,
    ) -> Workspace<T> {
        Workspace {
            gates: aligned_zeros(batch, row_stride::<T>(gate_width)),
            extra: aligned_zeros(batch, hidden),
            parts: parts.max(1),
            reverse: false,
        }
    }
}

/// H rounded up to whole panels ([`Float::NR`] columns): the width of each gate block in the
/// cells' gate rows, so that every gate starts on a panel and a range of hidden units maps to
/// whole panels of every gate (the padding columns hold zeros and are never read).
pub(crate) fn padded_hidden<T: Float>(h: usize) -> usize {
    h.div_ceil(T::NR) * T::NR
}

/// `m` (`[rows, gates·H]`, gate blocks of H columns) with each block widened to `hp` columns.
pub(crate) fn pad_gate_columns<T: Float>(m: ArrayView2<T>, gates: usize, hp: usize) -> Array2<T> {
    let h = m.ncols() / gates.max(1);
    let mut out = Array2::zeros((m.nrows(), gates * hp));
    for g in 0..gates {
        out.slice_mut(s![.., g * hp..g * hp + h])
            .assign(&m.slice(s![.., g * h..(g + 1) * h]));
    }
    out
}

/// [`pad_gate_columns`] for one row.
pub(crate) fn pad_gate_row<T: Float>(v: ArrayView1<T>, gates: usize, hp: usize) -> Array1<T> {
    let padded = pad_gate_columns(v.insert_axis(ndarray::Axis(0)), gates, hp);
    padded.row(0).to_owned()
}

/// The row stride of a buffer of rows `width` elements wide: `width`, plus one cache line
/// when rows would start a multiple of 2 KiB apart. Rows 4 KiB apart fall in the same L1
/// sets (and their loads wait on each other's stores through 4K aliasing): a tile's eight
/// rows of gates, and those of the projected inputs it starts from, would compete for a few
/// sets, at a cost that depends on where the allocator put the two buffers (LSTM H=256 batch
/// 16 took 120 or 173 µs per step from one process to the next).
pub(crate) fn row_stride<T: Float>(width: usize) -> usize {
    if width > 0 && (width * std::mem::size_of::<T>()).is_multiple_of(2048) {
        width + T::NR
    } else {
        width
    }
}

/// One step's buffers as raw pointers, shared by the pieces a step is cut into when it runs
/// on several threads: each piece owns a range of hidden units and writes only those units'
/// columns (of the gates, of GRU's r ⊙ h and of the next state); every piece reads the whole
/// previous state and, in a later phase, the whole r ⊙ h.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct StepBufs<T> {
    pub(super) batch: usize,
    /// Projected inputs, `[batch, gate_width]` with row stride `ldgx`.
    pub(super) gx: *const T,
    pub(super) ldgx: usize,
    /// Previous state, `[batch, H]`; `c` null but for LSTM.
    pub(super) h: *const T,
    pub(super) c: *const T,
    /// Workspace: gate rows `[batch, gate_width]` with row stride `ldg`, and `[batch, H]`
    /// (GRU's r ⊙ h).
    pub(super) gates: *mut T,
    pub(super) ldg: usize,
    pub(super) extra: *mut T,
    /// Next state, `[batch, H]`; `c_next` null but for LSTM.
    pub(super) h_next: *mut T,
    pub(super) c_next: *mut T,
    /// Walk the recurrent weights backwards (every other step: see the kernels).
    pub(super) reverse: bool,
}

// SAFETY: the pointers are only dereferenced by `Cell::step_piece`, whose contract keeps the
// pieces that run at once on disjoint columns; T is f32 or f64.
unsafe impl<T: Send> Send for StepBufs<T> {}
unsafe impl<T: Sync> Sync for StepBufs<T> {}
