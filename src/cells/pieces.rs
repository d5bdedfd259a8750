//! Cutting a step or a projection into pieces of hidden units, run alone, in joins or a team.

use super::*;

/// Multiply-adds per recurrent product under which a step is not cut into pieces: below it,
/// handing half to another core costs more than it saves (measured on two cores: LSTM
/// H=128 batch 1, 65 K, is slower on two; GRU H=256 batch 1, 196 K, faster). The unit tests
/// cut every step.
pub(super) const PIECE_MIN_MACS: usize = if cfg!(test) { 1 } else { 128 * 1024 };

/// The same bound per batch row: every step, each core reads the rows of the state the other
/// wrote, so sharing pays later at larger batches (batch 16: LSTM H=64, 262 K, and GRU H=64,
/// 196 K, are slower on two cores; GRU H=128, 786 K, faster).
pub(super) const PIECE_MIN_MACS_PER_ROW: usize = if cfg!(test) { 0 } else { 32 * 1024 };

/// Pieces a team cuts a task into per member: a helper that comes late leaves the leader
/// whole pieces to take, and one descheduled in the middle of a piece holds up less work.
pub(super) const PIECES_PER_MEMBER: usize = 2;

/// Whether the steps of `cell` at `batch` are big enough to share among threads.
pub(crate) fn shares_steps<T: Float, C: Cell<T> + ?Sized>(cell: &C, batch: usize) -> bool {
    pieces_for(cell, batch, 2) > 1
}

/// How the pieces of a task (a step's phase, a chunk's projection) run.
pub(super) enum Exec<'a, T, C: ?Sized> {
    /// In rayon joins, halving the pieces among the current pool's threads.
    Join,
    /// Pieces claimed by the members of a team, as the crew's jobs.
    Team(&'a std::sync::Arc<team::Team>, &'a jobs::Crew<'a, T, C>),
}

impl<T, C: ?Sized> Clone for Exec<'_, T, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, C: ?Sized> Copy for Exec<'_, T, C> {}

impl<T: Float, C: Cell<T> + ?Sized> Exec<'_, T, C> {
    /// Phase `phase` of the step in `bufs`, cut into `pieces`.
    fn step(self, cell: &C, phase: usize, bufs: &StepBufs<T>, pieces: usize) {
        let h = cell.hidden_size();
        match self {
            // SAFETY (all three): the pieces' units are disjoint, each piece writes only its
            // own units' columns, and every piece is done when the call returns; a team's
            // jobs point at the crew and buffers, which outlive the team.
            _ if pieces <= 1 => unsafe { cell.step_piece(phase, bufs, 0..h) },
            Exec::Team(team, crew) => unsafe { team.run(pieces, &crew.step_job(phase, bufs)) },
            Exec::Join => join_pieces(0..pieces, pieces, &|p, n| unsafe {
                cell.step_piece(phase, bufs, piece_units::<T>(h, n, p))
            }),
        }
    }

    /// The projection of `rows` rows of `x` (row stride `ldx`) into `out` (row stride
    /// `ldo`), cut into `pieces` on a team; whole otherwise (the time loop shares a
    /// projection's columns only on a team, and rayon joins split its rows instead:
    /// [`project_split`]).
    ///
    /// # Safety
    /// `x` and `out` hold `rows` rows of the cell's input size and gate width.
    pub(super) unsafe fn project(
        self,
        cell: &C,
        rows: usize,
        x: (*const T, usize),
        out: (*mut T, usize),
        pieces: usize,
    ) {
        match self {
            Exec::Team(team, crew) if pieces > 1 => {
                team.run(pieces, &crew.project_job(rows, x, out))
            }
            _ => cell.project_piece(rows, x.0, x.1, out.0, out.1, 0..cell.hidden_size()),
        }
    }
}

pub(super) fn join_pieces(
    range: std::ops::Range<usize>,
    n: usize,
    f: &(dyn Fn(usize, usize) + Sync),
) {
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
pub(super) fn piece_units<T: Float>(h: usize, pieces: usize, p: usize) -> std::ops::Range<usize> {
    let blocks = h.div_ceil(T::NR);
    let at = |p: usize| (blocks * p / pieces * T::NR).min(h);
    at(p)..at(p + 1)
}

/// How many pieces a step of `cell` at `batch` is cut into on `parts` threads: one when the
/// recurrent product is too small to share, never more than its panels of units.
pub(super) fn pieces_for<T: Float, C: Cell<T> + ?Sized>(
    cell: &C,
    batch: usize,
    parts: usize,
) -> usize {
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
pub(super) fn step_bufs<T: Float, C: Cell<T> + ?Sized>(
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
pub(super) fn step_with<T: Float, C: Cell<T> + ?Sized>(
    cell: &C,
    bufs: &StepBufs<T>,
    exec: Exec<T, C>,
    pieces: usize,
) {
    if cell.hidden_size() == 0 || bufs.batch == 0 {
        return;
    }
    for phase in 0..cell.phases() {
        exec.step(cell, phase, bufs, pieces);
    }
}
