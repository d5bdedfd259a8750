//! The time loop over one direction (lengths, reverse), its buffers and the input projection.

use super::*;

/// What [`run_sequence`] works in besides the state: the next state, the workspace and a
/// chunk of projected inputs. Kept from one call to the next (a stream keeps one per
/// direction), it spares a one-step call every allocation.
#[derive(Debug, Clone)]
pub(crate) struct Scratch<T> {
    pub(super) next: State<T>,
    pub(super) ws: Workspace<T>,
    pub(super) gx: Array2<T>,
    /// Each helper's own buffers, made at the first run on a team.
    pub(super) own: Vec<jobs::Own<T>>,
}

impl<T: Float> Scratch<T> {
    pub(super) fn new(state: &State<T>, gate_width: usize, rows: usize, parts: usize) -> Self {
        Scratch {
            next: state.aligned_clone(),
            ws: Workspace::new(state.batch(), gate_width, state.h.ncols(), parts),
            gx: aligned_zeros(rows, row_stride::<T>(gate_width)),
            own: Vec::new(),
        }
    }

    /// Whether the buffers suit a run from `state` projecting `rows` rows at a time.
    pub(super) fn fits(
        &self,
        state: &State<T>,
        rows: usize,
        gate_width: usize,
        parts: usize,
    ) -> bool {
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
pub(super) const PROJECTION_ROWS: usize = 128;

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
        own,
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
        // Whether each step is shared, from the measured times of shared and lone steps of
        // this cell (see `choice`); a lone step is one piece, the same bits.
        let key = (cell as *const C as *const () as usize, batch, pieces);
        let mut choice = (pieces > 1).then(|| choice::take(key));
        // The helpers' own buffers are made (or found in the scratch) at the first shared
        // task: a loop that runs alone never fills them.
        let shape = jobs::OwnShape::of(ws, gx_chunk);
        let own = std::cell::RefCell::new(own);
        let crew = std::cell::OnceCell::new();
        let crew = || {
            crew.get_or_init(|| jobs::Crew::new(cell, &mut own.borrow_mut(), members - 1, shape))
        };
        let mut run = |team: Option<&std::sync::Arc<team::Team>>| {
            let mut done = 0;
            while done < t_len {
                let n = chunk.min(t_len - done);
                let t0 = if reverse { t_len - done - n } else { done };
                let x_chunk = x_rows.slice(s![t0 * batch..(t0 + n) * batch, ..]);
                let exec = |shared: bool| match team {
                    Some(team) if shared => (Exec::Team(team, crew()), pieces),
                    _ => (Exec::Join, 1),
                };
                let (ex, pieces) = exec(choice.as_ref().is_some_and(|c| c.shared()));
                if pieces > 1 {
                    let x = (x_chunk.as_ptr(), input);
                    let out = (gx_chunk.as_mut_ptr(), gx_chunk.ncols());
                    // SAFETY: x_chunk is in standard layout ([n·batch, input]), and gx_chunk
                    // holds at least n·batch rows of gate_width (stride ldo).
                    unsafe { ex.project(cell, n * batch, x, out, pieces) };
                } else {
                    cell.project(x_chunk, gx_chunk.slice_mut(s![..n * batch, ..gate_width]));
                }
                // Only the steps' waits and help count. Each step is timed from the end of
                // the last (one clock read a step: at a few µs a step, every read shows).
                let help = || team.map_or((0.0, false, 0), |t| t.take_help());
                help();
                let mut last = std::time::Instant::now();
                let ldx = gx_chunk.ncols();
                let gx_all = gx_chunk.as_slice().expect("owned, contiguous");
                for k in 0..n {
                    let local = if reverse { n - 1 - k } else { k };
                    let gx = &gx_all[local * batch * ldx..(local + 1) * batch * ldx];
                    let bufs = step_bufs(cell, (gx, ldx), state, next, ws);
                    match choice.as_mut() {
                        Some(c) => {
                            let shared = c.shared();
                            let (ex, pieces) = exec(shared);
                            step_with(cell, &bufs, ex, pieces);
                            let now = std::time::Instant::now();
                            // A lone step leaves the team nothing to report.
                            let (waited, helped, _) = if shared { help() } else { (0.0, false, 0) };
                            c.record((now - last).as_secs_f64(), waited, helped);
                            last = now;
                        }
                        None => step_with(cell, &bufs, Exec::Join, 1),
                    }
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
            team::with_team(members, |team| run(Some(team)));
        } else {
            run(None);
        }
        if let Some(c) = choice {
            choice::put(key, c);
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

/// [`Cell::project`] with the rows shared among `parts` threads of the current rayon pool.
pub(super) fn project_split<T: Float, C: Cell<T> + ?Sized>(
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
pub(super) fn rows_of<'a, T: Float>(a: &'a ArrayView2<'a, T>) -> std::borrow::Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

/// The input side every cell kind shares: Wᵀ packed once, and the biases that do not depend
/// on the state, folded into the projection.
#[derive(Debug, Clone)]
pub(crate) struct InputProjection<T> {
    pub(super) w_p: Packed<T>,
    pub(super) bias: Array1<T>,
    /// Gate blocks and their width (H, or H rounded up to whole panels).
    pub(super) gates: usize,
    pub(super) block: usize,
}

impl<T: Float> InputProjection<T> {
    /// From Wᵀ (`[input, gates·block]`) and the folded bias (`[gates·block]`), both already
    /// in the cell's column order: `gates` blocks of `block` columns.
    pub(super) fn new(w_t: ArrayView2<T>, bias: Array1<T>, gates: usize) -> InputProjection<T> {
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
    pub(super) unsafe fn project_units(
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

    pub(super) fn input_size(&self) -> usize {
        self.w_p.rows()
    }

    /// `out = x · Wᵀ + bias`, the bias broadcast over rows.
    pub(super) fn project(&self, x: ArrayView2<T>, mut out: ArrayViewMut2<T>) {
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
pub(super) fn add_mul<T: Float>(acc: &mut [T], p: &[T], c: &[T]) {
    for ((a, &p), &c) in acc.iter_mut().zip(p).zip(c) {
        *a = *a + p * c;
    }
}
