//! Native cells: the RNN, LSTM and GRU recurrences exactly as the ONNX spec writes them, for
//! `f32` and `f64`, usable without tract.
//!
//! Each cell kind implements [`Cell`]: a projection of many input rows at once (the part of
//! the gates that does not depend on the state, done as one matrix product before the time
//! loop) and one step from projected rows. [`Cell::seq`] and [`run_sequence`] drive the time
//! loop, including `sequence_lens` and reverse directions.

pub mod activation;
pub mod gru;
pub mod lstm;
pub mod rnn;
mod team;

use ndarray::{
    s, Array1, Array2, Array3, ArrayView1, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3,
};

pub use gru::Gru;
pub use lstm::Lstm;
pub use rnn::Rnn;

use crate::attrs::OpKind;
use crate::gates::{onnx_rows_to_cell_columns, split_onnx_bias};
use crate::kernels::{gemm_cols_raw, gemm_packed, Float, Init, Packed};

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
    h: Array2<T>,
    c: Option<Array2<T>>,
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
fn aligned_copy<T: Float>(a: ArrayView2<T>) -> Array2<T> {
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
    fn aligned_clone(&self) -> State<T> {
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

    fn h_slice(&self) -> &[T] {
        self.h.as_slice().expect("State keeps standard layout")
    }

    fn c_slice(&self) -> Option<&[T]> {
        self.c
            .as_ref()
            .map(|c| c.as_slice().expect("State keeps standard layout"))
    }

    fn h_slice_mut(&mut self) -> &mut [T] {
        self.h.as_slice_mut().expect("State keeps standard layout")
    }
}

/// Buffers a cell reuses across steps, so the time loop does not allocate, and how many
/// threads its recurrent products may use.
#[derive(Debug, Clone)]
pub struct Workspace<T> {
    /// `[batch, gates·hidden]`, rows padded by [`row_stride`].
    gates: Array2<T>,
    /// `[batch, hidden]`, for GRU's `r ⊙ h`.
    extra: Array2<T>,
    /// Threads of the current rayon pool the products split their columns over (1: none).
    parts: usize,
    /// Whether the next step walks the recurrent weights backwards: alternating keeps the
    /// weights one step read last in cache for the next (same sums either way).
    reverse: bool,
}

impl<T: Float> Workspace<T> {
    fn new(batch: usize, gate_width: usize, hidden: usize, parts: usize) -> Workspace<T> {
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
    batch: usize,
    /// Projected inputs, `[batch, gate_width]` with row stride `ldgx`.
    gx: *const T,
    ldgx: usize,
    /// Previous state, `[batch, H]`; `c` null but for LSTM.
    h: *const T,
    c: *const T,
    /// Workspace: gate rows `[batch, gate_width]` with row stride `ldg`, and `[batch, H]`
    /// (GRU's r ⊙ h).
    gates: *mut T,
    ldg: usize,
    extra: *mut T,
    /// Next state, `[batch, H]`; `c_next` null but for LSTM.
    h_next: *mut T,
    c_next: *mut T,
    /// Walk the recurrent weights backwards (every other step: see the kernels).
    reverse: bool,
}

// SAFETY: the pointers are only dereferenced by `Cell::step_piece`, whose contract keeps the
// pieces that run at once on disjoint columns; T is f32 or f64.
unsafe impl<T: Send> Send for StepBufs<T> {}
unsafe impl<T: Sync> Sync for StepBufs<T> {}

/// Multiply-adds per recurrent product under which a step is not cut into pieces: below it,
/// handing half to another core costs more than it saves (measured on two cores: LSTM
/// H=128 batch 1, 65 K, is slower on two; GRU H=256 batch 1, 196 K, faster). The unit tests
/// cut every step.
const PIECE_MIN_MACS: usize = if cfg!(test) { 1 } else { 128 * 1024 };

/// The same bound per batch row: every step, each core reads the rows of the state the other
/// wrote, so sharing pays later at larger batches (batch 16: LSTM H=64, 262 K, and GRU H=64,
/// 196 K, are slower on two cores; GRU H=128, 786 K, faster).
const PIECE_MIN_MACS_PER_ROW: usize = if cfg!(test) { 0 } else { 32 * 1024 };

/// Pieces a team cuts a task into per member: a helper that comes late leaves the leader
/// whole pieces to take, and one descheduled in the middle of a piece holds up less work.
const PIECES_PER_MEMBER: usize = 2;

/// Whether the steps of `cell` at `batch` are big enough to share among threads.
pub(crate) fn shares_steps<T: Float, C: Cell<T> + ?Sized>(cell: &C, batch: usize) -> bool {
    pieces_for(cell, batch, 2) > 1
}

/// How the pieces of a task (a step's phase, a chunk's projection) run.
#[derive(Clone, Copy)]
enum Exec<'a> {
    /// In rayon joins, halving the pieces among the current pool's threads.
    Join,
    /// Pieces claimed by the members of a team.
    Team(&'a team::Team),
}

impl Exec<'_> {
    /// Runs `f(p, n)` for every `p < n`, returning when all are done: `n` is `pieces`, or
    /// fewer when a team's leader runs the task alone.
    fn run(self, pieces: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        match self {
            _ if pieces <= 1 => f(0, 1),
            Exec::Team(team) => team.run(pieces, f),
            Exec::Join => join_pieces(0..pieces, pieces, f),
        }
    }
}

fn join_pieces(range: std::ops::Range<usize>, n: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    if range.len() <= 1 {
        return range.for_each(|p| f(p, n));
    }
    let mid = range.start + range.len() / 2;
    rayon::join(
        || join_pieces(range.start..mid, n, f),
        || join_pieces(mid..range.end, n, f),
    );
}

/// The hidden units of piece `p` of `pieces`: whole panels of [`Float::NR`] units, the last
/// piece ending at `h`.
fn piece_units<T: Float>(h: usize, pieces: usize, p: usize) -> std::ops::Range<usize> {
    let blocks = h.div_ceil(T::NR);
    let at = |p: usize| (blocks * p / pieces * T::NR).min(h);
    at(p)..at(p + 1)
}

/// How many pieces a step of `cell` at `batch` is cut into on `parts` threads: one when the
/// recurrent product is too small to share, never more than its panels of units.
fn pieces_for<T: Float, C: Cell<T> + ?Sized>(cell: &C, batch: usize, parts: usize) -> usize {
    let h = cell.hidden_size();
    let macs = batch * h * cell.gate_width();
    if macs < PIECE_MIN_MACS.max(PIECE_MIN_MACS_PER_ROW * batch) {
        1
    } else {
        parts.clamp(1, h.div_ceil(T::NR).max(1))
    }
}

/// A step's buffers, after checking every shape: `gx` holds the step's projected rows with
/// row stride `ldgx`.
fn step_bufs<T: Float, C: Cell<T> + ?Sized>(
    cell: &C,
    (gx, ldgx): (&[T], usize),
    state: &State<T>,
    next: &mut State<T>,
    ws: &mut Workspace<T>,
) -> StepBufs<T> {
    let (hs, gw, batch) = (cell.hidden_size(), cell.gate_width(), state.batch());
    assert!(
        ldgx >= gw && gx.len() >= batch.saturating_sub(1) * ldgx + gw,
        "gx is not [batch, gate_width]"
    );
    assert_eq!(
        state.h.dim(),
        (batch, hs),
        "the state is not [batch, hidden]"
    );
    assert_eq!(next.h.dim(), (batch, hs), "next is not [batch, hidden]");
    assert_eq!(
        (ws.gates.dim(), ws.extra.dim()),
        ((batch, row_stride::<T>(gw)), (batch, hs)),
        "the workspace is not the cell's"
    );
    if cell.kind() == OpKind::Lstm {
        let c_dims = (
            state.c.as_ref().map(|c| c.dim()),
            next.c.as_ref().map(|c| c.dim()),
        );
        assert_eq!(
            c_dims,
            (Some((batch, hs)), Some((batch, hs))),
            "LSTM states need C"
        );
    }
    let reverse = ws.reverse;
    ws.reverse = !ws.reverse;
    StepBufs {
        batch,
        gx: gx.as_ptr(),
        ldgx,
        h: state.h_slice().as_ptr(),
        c: state.c_slice().map_or(std::ptr::null(), |c| c.as_ptr()),
        gates: ws.gates.as_mut_ptr(),
        ldg: ws.gates.ncols(),
        extra: ws.extra.as_mut_ptr(),
        h_next: next.h_slice_mut().as_mut_ptr(),
        c_next: next
            .c
            .as_mut()
            .map_or(std::ptr::null_mut(), |c| c.as_mut_ptr()),
        reverse,
    }
}

/// Every phase of one step, cut into `pieces`.
fn step_with<T: Float, C: Cell<T> + ?Sized>(
    cell: &C,
    bufs: &StepBufs<T>,
    exec: Exec,
    pieces: usize,
) {
    let h = cell.hidden_size();
    if h == 0 || bufs.batch == 0 {
        return;
    }
    for phase in 0..cell.phases() {
        exec.run(pieces, &|p, n| {
            // SAFETY: the pieces' units are disjoint, and `Exec::run` returns only when
            // every piece of the phase is done.
            unsafe { cell.step_piece(phase, bufs, piece_units::<T>(h, n, p)) }
        });
    }
}

/// A recurrent cell: the small interface every cell kind shares.
pub trait Cell<T: Float>: Send + Sync {
    /// Which op this cell computes.
    fn kind(&self) -> OpKind;

    /// `out = x · Wᵀ + (the biases that do not depend on the state)`, for any number of rows:
    /// `x` is `[rows, input]`, `out` is `[rows, gate_width]` in the cell's own column order.
    fn project(&self, x: ArrayView2<T>, out: ArrayViewMut2<T>);

    /// One time step from projected rows `gx` (`[batch, gate_width]`, from
    /// [`Cell::project`]): reads `state`, writes the next state into `next` (same shapes).
    /// With a workspace made for several threads, the step's hidden units are shared among
    /// them (call it inside the rayon pool's `install`).
    ///
    /// # Panics
    /// When the shapes disagree with the cell's or with each other.
    fn step_projected(
        &self,
        gx: ArrayView2<T>,
        state: &State<T>,
        next: &mut State<T>,
        ws: &mut Workspace<T>,
    ) {
        assert_eq!(
            gx.dim(),
            (state.batch(), self.gate_width()),
            "gx is not [batch, gate_width]"
        );
        let gx = rows_of(&gx);
        let pieces = pieces_for(self, state.batch(), ws.parts);
        let bufs = step_bufs(self, (&gx, self.gate_width()), state, next, ws);
        step_with(self, &bufs, Exec::Join, pieces);
    }

    /// Sequential phases of a step: each phase's pieces all finish before the next phase
    /// starts (GRU without `linear_before_reset` needs every unit's r ⊙ h before its
    /// candidate's product: two phases).
    #[doc(hidden)]
    fn phases(&self) -> usize {
        1
    }

    /// Phase `phase` of one step for the hidden units `units` (a range of whole panels of
    /// [`Float::NR`] units, but for the last one, which ends at H).
    ///
    /// # Safety
    /// `bufs` points at buffers of the shapes [`StepBufs`] gives, for this cell; no other
    /// piece running meanwhile has units in common with `units`, and every piece of the
    /// earlier phases of the step has finished.
    #[doc(hidden)]
    unsafe fn step_piece(&self, phase: usize, bufs: &StepBufs<T>, units: std::ops::Range<usize>);

    /// [`Cell::project`] of `rows` rows of `x` (row stride `ldx`) into the columns of hidden
    /// units `units` of `out` (row stride `ldo`; every gate's columns for those units).
    ///
    /// # Safety
    /// `x` and `out` hold `rows` rows of the cell's input size and gate width; no other
    /// piece writes these units' columns meanwhile.
    #[doc(hidden)]
    unsafe fn project_piece(
        &self,
        rows: usize,
        x: *const T,
        ldx: usize,
        out: *mut T,
        ldo: usize,
        units: std::ops::Range<usize>,
    );

    /// Hidden size H.
    fn hidden_size(&self) -> usize;

    /// Input size I.
    fn input_size(&self) -> usize;

    /// Width of a row of gate pre-activations: gates·H, each gate's block rounded up to
    /// whole panels when the cell has more than one gate ([`Float::NR`] columns).
    fn gate_width(&self) -> usize;

    /// The all-zero state for `batch` sequences.
    fn zero_state(&self, batch: usize) -> State<T> {
        let h = self.hidden_size();
        let c = (self.kind() == OpKind::Lstm).then(|| aligned_zeros(batch, h));
        State {
            h: aligned_zeros(batch, h),
            c,
        }
    }

    /// Advances `state` by one time step of input `x_t` (`[batch, input]`).
    ///
    /// # Panics
    /// When `x_t`'s input size is not the cell's or its batch is not the state's (a
    /// programming error: [`crate::layer::Layer`] and [`crate::Model`] check data they are
    /// given and return errors).
    fn step(&self, state: &mut State<T>, x_t: ArrayView2<T>) {
        let xs = x_t.insert_axis(ndarray::Axis(0));
        run_sequence(self, xs, state, None, false, None, 1);
    }

    /// Runs a whole sequence `xs` (`[seq, batch, input]`) forward from `state`, leaving the
    /// final state there; returns every step's hidden state, `[seq, batch, hidden]`.
    ///
    /// # Panics
    /// As [`Cell::step`].
    fn seq(&self, state: &mut State<T>, xs: ArrayView3<T>) -> Array3<T> {
        let (t, b, _) = xs.dim();
        let mut y = Array3::zeros((t, b, self.hidden_size()));
        run_sequence(self, xs, state, None, false, Some(y.view_mut()), 1);
        y
    }
}

/// What [`run_sequence`] works in besides the state: the next state, the workspace and a
/// chunk of projected inputs. Kept from one call to the next (a stream keeps one per
/// direction), it spares a one-step call every allocation.
#[derive(Debug, Clone)]
pub(crate) struct Scratch<T> {
    next: State<T>,
    ws: Workspace<T>,
    gx: Array2<T>,
}

impl<T: Float> Scratch<T> {
    fn new(state: &State<T>, gate_width: usize, rows: usize, parts: usize) -> Self {
        Scratch {
            next: state.aligned_clone(),
            ws: Workspace::new(state.batch(), gate_width, state.h.ncols(), parts),
            gx: aligned_zeros(rows, row_stride::<T>(gate_width)),
        }
    }

    /// Whether the buffers suit a run from `state` projecting `rows` rows at a time.
    fn fits(&self, state: &State<T>, rows: usize, gate_width: usize, parts: usize) -> bool {
        self.next.h.dim() == state.h.dim()
            && self.next.c.is_some() == state.c.is_some()
            && self.ws.gates.nrows() == state.batch()
            && self.ws.parts == parts.max(1)
            && self.gx.nrows() >= rows
            && self.gx.ncols() == row_stride::<T>(gate_width)
    }
}

/// How [`run_sequence_in`] walks the sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walk<'a> {
    /// Each batch entry's own length.
    pub lens: Option<&'a [usize]>,
    /// Backwards in time.
    pub reverse: bool,
    /// Threads of the current rayon pool to share the products among.
    pub parts: usize,
}

/// Rows of input projected per product in [`run_sequence`].
const PROJECTION_ROWS: usize = 128;

/// Runs one direction over a sequence.
///
/// `x` is `[seq, batch, input]`; `state` holds the initial state and receives the final one;
/// `lens` gives each batch entry's own length (entries stop there and keep their state, and
/// a reverse direction starts at its entry's last valid step); `y`, when given, is
/// `[seq, batch, hidden]`, receives the hidden state of every valid step, and must be zeroed
/// by the caller for the steps past an entry's length.
///
/// With `parts` > 1 (inside a rayon pool's `install`), the input projection splits its rows
/// and every recurrent product its columns over that many threads.
///
/// # Panics
/// When the shapes disagree: `x`'s input size with the cell's, the state's batch or hidden
/// size with `x` and the cell, `y`'s shape with `[seq, batch, hidden]`, or `lens`'s length
/// with the batch.
pub fn run_sequence<T: Float, C: Cell<T> + ?Sized>(
    cell: &C,
    x: ArrayView3<T>,
    state: &mut State<T>,
    lens: Option<&[usize]>,
    reverse: bool,
    y: Option<ArrayViewMut3<T>>,
    parts: usize,
) {
    let walk = Walk {
        lens,
        reverse,
        parts,
    };
    run_sequence_in(cell, x, state, walk, y, &mut None)
}

/// [`run_sequence`] in buffers kept by the caller (made or remade when they do not fit).
pub(crate) fn run_sequence_in<T: Float, C: Cell<T> + ?Sized>(
    cell: &C,
    x: ArrayView3<T>,
    state: &mut State<T>,
    Walk {
        lens,
        reverse,
        parts,
    }: Walk,
    mut y: Option<ArrayViewMut3<T>>,
    scratch: &mut Option<Scratch<T>>,
) {
    let (t_len, batch, input) = x.dim();
    let hidden = cell.hidden_size();
    // Callers pass checked shapes; a mismatch is a programming error, named here rather than
    // as an index deep in a kernel.
    assert_eq!(input, cell.input_size(), "x's input size is not the cell's");
    assert_eq!(
        state.h.dim(),
        (batch, hidden),
        "the state is not [x's batch, hidden]"
    );
    if let Some(c) = &state.c {
        assert_eq!(
            c.dim(),
            (batch, hidden),
            "the cell state is not [x's batch, hidden]"
        );
    }
    if let Some(y) = &y {
        assert_eq!(
            y.dim(),
            (t_len, batch, hidden),
            "y is not [seq, batch, hidden]"
        );
    }
    if let Some(l) = lens {
        assert_eq!(
            l.len(),
            batch,
            "lens does not have one length per batch entry"
        );
    }
    let gate_width = cell.gate_width();
    if t_len == 0 || batch == 0 {
        return;
    }
    // A state built without a cell state (`State::new(h, None)`) starts LSTM from C = 0, as
    // an absent initial_c does.
    if cell.kind() == OpKind::Lstm && state.c.is_none() {
        state.c = Some(aligned_zeros(batch, hidden));
    }
    let x_std = x.as_standard_layout();
    let x_rows = x_std
        .view()
        .into_shape_with_order((t_len * batch, input))
        .expect("standard layout reshapes");
    // The input projection does not depend on the state, so it runs as one product per chunk
    // of steps: rows enough to keep the product efficient, few enough that the chunk's gates
    // stay in cache (a whole-sequence buffer would be fresh, faulting pages on every run, and
    // evicted by the time the steps read it).
    let chunk = (PROJECTION_ROWS / batch).clamp(1, t_len);
    let scratch = match scratch {
        Some(s) if s.fits(state, chunk * batch, gate_width, parts) => s,
        _ => scratch.insert(Scratch::new(state, gate_width, chunk * batch, parts)),
    };
    let Scratch {
        next,
        ws,
        gx: gx_chunk,
    } = scratch;
    let uniform = lens.is_none_or(|l| l.iter().all(|&n| n == t_len));

    if uniform {
        // Each step (and each chunk's projection) cut into pieces of hidden units; on more
        // than one thread, a team claims them, each member its own pieces first.
        let members = pieces_for(cell, batch, parts);
        let pieces = if members > 1 {
            (members * PIECES_PER_MEMBER)
                .min(hidden.div_ceil(T::NR))
                .min(team::MAX_PIECES)
        } else {
            1
        };
        let mut run = |exec: Exec| {
            let mut done = 0;
            while done < t_len {
                let n = chunk.min(t_len - done);
                let t0 = if reverse { t_len - done - n } else { done };
                let x_chunk = x_rows.slice(s![t0 * batch..(t0 + n) * batch, ..]);
                if pieces > 1 {
                    let x = SharedPtr(x_chunk.as_ptr() as *mut T);
                    let out = SharedPtr(gx_chunk.as_mut_ptr());
                    let ldo = gx_chunk.ncols();
                    exec.run(pieces, &|p, n_pieces| {
                        let units = piece_units::<T>(hidden, n_pieces, p);
                        // SAFETY: x_chunk is in standard layout ([n·batch, input]), gx_chunk
                        // holds at least n·batch rows of gate_width (stride ldo), and the
                        // pieces' units are disjoint.
                        unsafe {
                            cell.project_piece(n * batch, x.get(), input, out.get(), ldo, units)
                        }
                    });
                } else {
                    cell.project(x_chunk, gx_chunk.slice_mut(s![..n * batch, ..gate_width]));
                }
                let ldx = gx_chunk.ncols();
                let gx_all = gx_chunk.as_slice().expect("owned, contiguous");
                for k in 0..n {
                    let local = if reverse { n - 1 - k } else { k };
                    let gx = &gx_all[local * batch * ldx..(local + 1) * batch * ldx];
                    let bufs = step_bufs(cell, (gx, ldx), state, next, ws);
                    step_with(cell, &bufs, exec, pieces);
                    std::mem::swap(state, next);
                    if let Some(y) = y.as_mut() {
                        // A straight copy where Y is contiguous (slicing and assigning a view
                        // cost more than a small cell's step).
                        let t = t0 + local;
                        match y.as_slice_mut() {
                            Some(ys) => ys[t * batch * hidden..(t + 1) * batch * hidden]
                                .copy_from_slice(state.h_slice()),
                            None => y.slice_mut(s![t, .., ..]).assign(&state.h),
                        }
                    }
                }
                done += n;
            }
        };
        if members > 1 {
            team::with_team(members, |team| run(Exec::Team(team)));
        } else {
            run(Exec::Join);
        }
        return;
    }

    // Entries of different lengths need different time steps at once (a reverse entry starts
    // at its own last step), so the whole projection is made up front.
    let mut gx_all = Array2::zeros((t_len * batch, gate_width));
    project_split(cell, x_rows, gx_all.view_mut(), parts);
    let lens = lens.unwrap_or(&[]);
    let steps = lens.iter().copied().max().unwrap_or(0).min(t_len);
    let mut gx = Array2::zeros((batch, gate_width));
    let mut times = vec![None; batch];
    for k in 0..steps {
        for (b, &len) in lens.iter().enumerate() {
            let len = len.min(t_len);
            times[b] = (k < len).then(|| if reverse { len - 1 - k } else { k });
            match times[b] {
                Some(t) => gx.row_mut(b).assign(&gx_all.row(t * batch + b)),
                None => gx.row_mut(b).fill(T::zero()),
            }
        }
        cell.step_projected(gx.view(), state, next, ws);
        // Only entries still inside their sequence take the new state.
        for (b, t) in times.iter().enumerate() {
            let Some(t) = *t else { continue };
            state.h.row_mut(b).assign(&next.h.row(b));
            if let (Some(c), Some(nc)) = (state.c.as_mut(), next.c.as_ref()) {
                c.row_mut(b).assign(&nc.row(b));
            }
            if let Some(y) = y.as_mut() {
                y.slice_mut(s![t, b, ..]).assign(&state.h.row(b));
            }
        }
    }
}

/// A pointer the pieces of a task share (each writes only its own columns).
#[derive(Clone, Copy)]
struct SharedPtr<T>(*mut T);

// SAFETY: see the type's comment; T is f32 or f64.
unsafe impl<T: Send> Send for SharedPtr<T> {}
unsafe impl<T: Sync> Sync for SharedPtr<T> {}

impl<T> SharedPtr<T> {
    /// The pointer (a method, so closures capture the whole Sync wrapper).
    fn get(self) -> *mut T {
        self.0
    }
}

/// [`Cell::project`] with the rows shared among `parts` threads of the current rayon pool.
fn project_split<T: Float, C: Cell<T> + ?Sized>(
    cell: &C,
    x: ArrayView2<T>,
    mut out: ArrayViewMut2<T>,
    parts: usize,
) {
    let rows = x.nrows();
    // Each half reads all of Wᵀ: only worth it when there are rows enough to share.
    if parts <= 1 || rows < 8 {
        return cell.project(x, out);
    }
    let left_parts = parts / 2;
    let mid = rows * left_parts / parts;
    let (x1, x2) = x.split_at(ndarray::Axis(0), mid);
    let (o1, o2) = out.view_mut().split_at(ndarray::Axis(0), mid);
    rayon::join(
        || project_split(cell, x1, o1, left_parts),
        || project_split(cell, x2, o2, parts - left_parts),
    );
}

/// Rows of a 2-D view as one slice with its row stride: the view itself when it is in
/// standard layout (the time loop's case), a standard copy otherwise.
fn rows_of<'a, T: Float>(a: &'a ArrayView2<'a, T>) -> std::borrow::Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

/// The input side every cell kind shares: Wᵀ packed once, and the biases that do not depend
/// on the state, folded into the projection.
#[derive(Debug, Clone)]
pub(crate) struct InputProjection<T> {
    w_p: Packed<T>,
    bias: Array1<T>,
    /// Gate blocks and their width (H, or H rounded up to whole panels).
    gates: usize,
    block: usize,
}

impl<T: Float> InputProjection<T> {
    /// From Wᵀ (`[input, gates·block]`) and the folded bias (`[gates·block]`), both already
    /// in the cell's column order: `gates` blocks of `block` columns.
    fn new(w_t: ArrayView2<T>, bias: Array1<T>, gates: usize) -> InputProjection<T> {
        let block = w_t.ncols() / gates.max(1);
        InputProjection {
            w_p: Packed::pack(w_t),
            bias,
            gates,
            block,
        }
    }

    /// See [`Cell::project_piece`].
    ///
    /// # Safety
    /// As [`Cell::project_piece`].
    unsafe fn project_units(
        &self,
        rows: usize,
        x: *const T,
        ldx: usize,
        out: *mut T,
        ldo: usize,
        units: std::ops::Range<usize>,
    ) {
        let bias = self.bias.as_ptr();
        let all = self.gates * self.block;
        if units.start == 0 && units.end.next_multiple_of(T::NR) >= self.block {
            return gemm_cols_raw(rows, x, ldx, &self.w_p, 0..all, out, ldo, bias, 0, false);
        }
        for g in 0..self.gates {
            let cols = g * self.block + units.start..g * self.block + units.end;
            gemm_cols_raw(rows, x, ldx, &self.w_p, cols, out, ldo, bias, 0, false);
        }
    }

    fn input_size(&self) -> usize {
        self.w_p.rows()
    }

    /// `out = x · Wᵀ + bias`, the bias broadcast over rows.
    fn project(&self, x: ArrayView2<T>, mut out: ArrayViewMut2<T>) {
        let (rows, k) = x.dim();
        let n = self.w_p.cols();
        assert_eq!(out.dim(), (rows, n), "out is not [rows, gate_width]");
        let xs = rows_of(&x);
        let bias = Init::Row(self.bias.as_slice().expect("owned, contiguous"));
        let ldo = out.strides()[0];
        if rows > 0 && out.strides()[1] == 1 && ldo >= n as isize {
            // Rows of contiguous columns (a standard array, or columns sliced off a wider
            // one): straight into `out`.
            let ldo = ldo as usize;
            // SAFETY: `out` holds `rows` rows of `n` contiguous elements, `ldo` apart.
            let o =
                unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr(), (rows - 1) * ldo + n) };
            return gemm_packed(rows, &xs, k, &self.w_p, o, ldo, bias);
        }
        let mut tmp = Array2::zeros((rows, n));
        let o = tmp.as_slice_mut().expect("fresh array is contiguous");
        gemm_packed(rows, &xs, k, &self.w_p, o, n, bias);
        out.assign(&tmp);
    }
}

/// `acc += p ⊙ c` (peepholes).
#[inline]
fn add_mul<T: Float>(acc: &mut [T], p: &[T], c: &[T]) {
    for ((a, &p), &c) in acc.iter_mut().zip(p).zip(c) {
        *a = *a + p * c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::Activation;
    use crate::kernels::WeightFormat;
    use ndarray::Array3;

    fn cast<T: Float>(v: f64) -> T {
        <T as num_traits::NumCast>::from(v).unwrap()
    }

    /// Deterministic values in [-scale, scale).
    fn values(n: usize, seed: u64, scale: f64) -> impl Iterator<Item = f64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
    }

    fn cells<T: Float>(h: usize, i: usize, format: WeightFormat) -> Vec<Box<dyn Cell<T>>> {
        let k = 1.0 / (h as f64).sqrt();
        let arr = |r: usize, c: usize, seed| {
            Array2::from_shape_vec((r, c), values(r * c, seed, k).map(cast::<T>).collect()).unwrap()
        };
        let vec = |n: usize, seed| Array1::from_iter(values(n, seed, k).map(cast::<T>));
        let dir = |g: usize, peep: bool| {
            DirWeights::from_onnx(
                arr(g * h, i, 1).view(),
                arr(g * h, h, 2).view(),
                Some(vec(2 * g * h, 3).view()),
                peep.then(|| vec(3 * h, 4)).as_ref().map(|p| p.view()),
            )
        };
        let relu = [Activation::Relu];
        vec![
            Box::new(Lstm::new(dir(4, false), &[], None, false).with_recurrent_weights(format)),
            Box::new(Lstm::new(dir(4, true), &[], Some(2.5), false).with_recurrent_weights(format)),
            Box::new(Lstm::new(dir(4, true), &[], None, true).with_recurrent_weights(format)),
            Box::new(Gru::new(dir(3, false), &[], None, false).with_recurrent_weights(format)),
            Box::new(Gru::new(dir(3, false), &[], Some(1.5), true).with_recurrent_weights(format)),
            Box::new(Rnn::new(dir(1, false), &relu, None).with_recurrent_weights(format)),
        ]
    }

    /// `run_sequence` of every cell kind with its steps cut among 1 to 5 threads: the same
    /// bits every time, with H both a whole number of panels and not.
    fn pieces_give_the_same_bits<T: Float>() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(5)
            .build()
            .unwrap();
        for format in [WeightFormat::Full, WeightFormat::Bf16] {
            // H=128 (f32) and 64 (f64): gate rows of 2 KiB, padded by a cache line.
            for (h, i, batch) in [
                (37, 5, 3),
                (136, 12, 1),
                (64, 7, 2),
                (200, 9, 4),
                (128, 6, 3),
            ] {
                let x = Array3::from_shape_vec(
                    (6, batch, i),
                    values(6 * batch * i, 9, 1.0).map(cast::<T>).collect(),
                )
                .unwrap();
                // Equal lengths (a team runs the pieces) and, past batch 1, different ones
                // (rayon joins do), backwards.
                let lens: Vec<usize> = (0..batch).map(|b| 6 - b % 4).collect();
                let walks = [(None, false), (Some(&lens[..]), true)];
                for (n, cell) in cells::<T>(h, i, format).iter().enumerate() {
                    for (lens, reverse) in walks.iter().take(if batch > 1 { 2 } else { 1 }) {
                        let run = |parts: usize| {
                            let mut state = cell.zero_state(batch);
                            let mut y = Array3::zeros((6, batch, h));
                            pool.install(|| {
                                run_sequence(
                                    cell.as_ref(),
                                    x.view(),
                                    &mut state,
                                    *lens,
                                    *reverse,
                                    Some(y.view_mut()),
                                    parts,
                                )
                            });
                            (y, state)
                        };
                        let (y1, s1) = run(1);
                        assert!(
                            y1.iter().all(|v| v.is_finite()) && y1.iter().any(|v| !v.is_zero())
                        );
                        for parts in 2..=5 {
                            let (y, s) = run(parts);
                            let same = y.iter().zip(&y1).all(|(a, b)| a == b);
                            assert!(
                                same && s == s1,
                                "cell {n} h {h} batch {batch} {format:?} lens {lens:?} {parts} parts"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pieces_give_the_same_bits_f32() {
        pieces_give_the_same_bits::<f32>();
    }

    #[test]
    fn pieces_give_the_same_bits_f64() {
        pieces_give_the_same_bits::<f64>();
    }
}
