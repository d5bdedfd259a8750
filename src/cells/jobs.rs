//! The tasks a team runs for the time loop (a step's phase, a chunk's input projection) as
//! [`Job`]s: the words a helper copies, and each helper's own buffers, so that the leader can
//! take over a piece a helper has started and never see that helper's late result.
//!
//! A helper the leader has overtaken runs on: it still reads the step's inputs (the state,
//! the projected rows) while the leader writes later steps into the same buffers. What it
//! computes from them lands in its own buffers and is never copied, and every buffer it
//! reads stays allocated until the team ends (the leader's last act waits for it).

use super::team::{Job, Words};
use super::*;

/// A helper's own buffers, shaped as the leader's: gate rows, GRU's r ⊙ h, the next state
/// and a chunk of projected rows. Kept in the loop's [`Scratch`], so a stream or a repeated
/// call reuses them.
#[derive(Debug, Clone)]
pub(crate) struct Own<T> {
    gates: Array2<T>,
    extra: Array2<T>,
    h: Array2<T>,
    c: Array2<T>,
    gx: Array2<T>,
}

/// The shapes of the buffers a helper needs: those of the workspace and the projected chunk.
#[derive(Clone, Copy)]
pub(super) struct OwnShape {
    batch: usize,
    ldg: usize,
    hidden: usize,
    gx: (usize, usize),
}

impl OwnShape {
    pub(super) fn of<T: Float>(ws: &Workspace<T>, gx: &Array2<T>) -> OwnShape {
        let (batch, hidden) = ws.extra.dim();
        OwnShape {
            batch,
            ldg: ws.gates.ncols(),
            hidden,
            gx: gx.dim(),
        }
    }
}

impl<T: Float> Own<T> {
    pub(super) fn new(s: OwnShape) -> Own<T> {
        Own {
            gates: aligned_zeros(s.batch, s.ldg),
            extra: aligned_zeros(s.batch, s.hidden),
            h: aligned_zeros(s.batch, s.hidden),
            c: aligned_zeros(s.batch, s.hidden),
            gx: aligned_zeros(s.gx.0, s.gx.1),
        }
    }

    fn shape(&self) -> OwnShape {
        OwnShape {
            batch: self.gates.nrows(),
            ldg: self.gates.ncols(),
            hidden: self.h.ncols(),
            gx: self.gx.dim(),
        }
    }
}

/// Raw pointers into one helper's [`Own`] buffers.
struct OwnPtrs<T> {
    gates: *mut T,
    extra: *mut T,
    h: *mut T,
    c: *mut T,
    gx: *mut T,
}

/// What every job of one time loop points at: the cell and the helpers' buffers (helper `m`
/// has `own[m - 1]`). It lives in the loop's frame for the whole team's life.
pub(super) struct Crew<'a, T, C: ?Sized> {
    cell: &'a C,
    own: Vec<OwnPtrs<T>>,
    /// Whether a step's pieces may be taken over: one phase only, whose pieces write
    /// nothing but their units' columns of the next state (the gate rows and r ⊙ h are the
    /// piece's own scratch). Two-phase GRU passes r ⊙ h and z from one phase to the next,
    /// so its helpers write in place and are waited for.
    takeover: bool,
}

impl<'a, T: Float, C: Cell<T> + ?Sized> Crew<'a, T, C> {
    /// The crew of `helpers` helpers, their buffers in `own` (remade unless they have
    /// `shape`). `own` must stay alive and unmoved while the crew's jobs run: the crew keeps
    /// pointers into it.
    pub(super) fn new(cell: &'a C, own: &mut Vec<Own<T>>, helpers: usize, shape: OwnShape) -> Self {
        let fits = |o: &Own<T>| {
            let s = o.shape();
            (s.batch, s.ldg, s.hidden, s.gx) == (shape.batch, shape.ldg, shape.hidden, shape.gx)
        };
        if own.len() != helpers || !own.iter().all(fits) {
            *own = (0..helpers).map(|_| Own::new(shape)).collect();
        }
        let own = own
            .iter_mut()
            .map(|o| OwnPtrs {
                gates: o.gates.as_mut_ptr(),
                extra: o.extra.as_mut_ptr(),
                h: o.h.as_mut_ptr(),
                c: o.c.as_mut_ptr(),
                gx: o.gx.as_mut_ptr(),
            })
            .collect();
        Crew {
            cell,
            own,
            takeover: cell.phases() == 1,
        }
    }

    /// Phase `phase` of the step in `bufs`.
    pub(super) fn step_job(&self, phase: usize, b: &StepBufs<T>) -> Job {
        let mut words: Words = [0; team::WORDS];
        words[..13].copy_from_slice(&[
            self as *const Self as usize,
            phase,
            b.batch,
            b.gx as usize,
            b.ldgx,
            b.h as usize,
            b.c as usize,
            b.gates as usize,
            b.ldg,
            b.extra as usize,
            b.h_next as usize,
            b.c_next as usize,
            usize::from(b.reverse),
        ]);
        Job {
            run: step_run::<T, C>,
            commit: self
                .takeover
                .then_some(step_commit::<T, C> as team::PieceFn),
            words,
        }
    }

    /// The projection of `rows` rows of `x` (row stride `ldx`) into `out` (row stride `ldo`).
    pub(super) fn project_job(
        &self,
        rows: usize,
        (x, ldx): (*const T, usize),
        (out, ldo): (*mut T, usize),
    ) -> Job {
        let mut words: Words = [0; team::WORDS];
        words[..6].copy_from_slice(&[
            self as *const Self as usize,
            rows,
            x as usize,
            ldx,
            out as usize,
            ldo,
        ]);
        Job {
            run: project_run::<T, C>,
            commit: Some(project_commit::<T, C>),
            words,
        }
    }
}

/// The crew and step buffers a step job's words hold, member `m`'s outputs in its own
/// buffers when the step may be taken over.
///
/// # Safety
/// `w` was made by [`Crew::step_job`] of a crew that is still alive.
unsafe fn step_of<'w, T: Float, C: Cell<T> + ?Sized>(
    w: &'w Words,
    m: usize,
) -> (&'w Crew<'w, T, C>, StepBufs<T>) {
    let crew = &*(w[0] as *const Crew<T, C>);
    let mut b = StepBufs {
        batch: w[2],
        gx: w[3] as *const T,
        ldgx: w[4],
        h: w[5] as *const T,
        c: w[6] as *const T,
        gates: w[7] as *mut T,
        ldg: w[8],
        extra: w[9] as *mut T,
        h_next: w[10] as *mut T,
        c_next: w[11] as *mut T,
        reverse: w[12] != 0,
    };
    if m > 0 && crew.takeover {
        let own = &crew.own[m - 1];
        (b.gates, b.extra, b.h_next) = (own.gates, own.extra, own.h);
        if !b.c_next.is_null() {
            b.c_next = own.c;
        }
    }
    (crew, b)
}

/// In the unit tests, helpers on threads named `slow-helper…` sleep in every third piece,
/// as if descheduled mid-piece, so that the leader takes pieces over; the leader's pieces
/// there take at least 5 µs, so that a helper starts while some are left.
#[cfg(test)]
pub(super) static SLOW_PIECES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

fn as_if_descheduled(m: usize) {
    #[cfg(test)]
    if std::thread::current()
        .name()
        .is_some_and(|n| n.starts_with("slow-helper"))
    {
        use std::time::{Duration, Instant};
        if m == 0 {
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(5) {
                std::hint::spin_loop();
            }
        } else if SLOW_PIECES
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(3)
        {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    let _ = m;
}

unsafe fn step_run<T: Float, C: Cell<T> + ?Sized>(w: &Words, p: usize, n: usize, m: usize) {
    as_if_descheduled(m);
    let (crew, b) = step_of::<T, C>(w, m);
    let units = piece_units::<T>(crew.cell.hidden_size(), n, p);
    crew.cell.step_piece(w[1], &b, units);
}

/// Copies helper `m`'s columns of the next state into place.
unsafe fn step_commit<T: Float, C: Cell<T> + ?Sized>(w: &Words, p: usize, n: usize, m: usize) {
    let (crew, own) = step_of::<T, C>(w, m);
    let (_, b) = step_of::<T, C>(w, 0);
    let hs = crew.cell.hidden_size();
    let units = piece_units::<T>(hs, n, p);
    for row in 0..b.batch {
        let at = row * hs + units.start;
        std::ptr::copy_nonoverlapping(own.h_next.add(at), b.h_next.add(at), units.len());
        if !b.c_next.is_null() {
            std::ptr::copy_nonoverlapping(own.c_next.add(at), b.c_next.add(at), units.len());
        }
    }
}

unsafe fn project_run<T: Float, C: Cell<T> + ?Sized>(w: &Words, p: usize, n: usize, m: usize) {
    as_if_descheduled(m);
    let crew = &*(w[0] as *const Crew<T, C>);
    let out = if m > 0 {
        crew.own[m - 1].gx
    } else {
        w[4] as *mut T
    };
    let units = piece_units::<T>(crew.cell.hidden_size(), n, p);
    crew.cell
        .project_piece(w[1], w[2] as *const T, w[3], out, w[5], units);
}

/// Copies helper `m`'s projected columns into place: its units' columns of every gate
/// block, with the padding past H in the last piece (a whole step's product reads it).
unsafe fn project_commit<T: Float, C: Cell<T> + ?Sized>(w: &Words, p: usize, n: usize, m: usize) {
    let crew = &*(w[0] as *const Crew<T, C>);
    let (rows, out, ldo) = (w[1], w[4] as *mut T, w[5]);
    let own = crew.own[m - 1].gx;
    let gates = crew.cell.kind().gates();
    let block = crew.cell.gate_width() / gates;
    let units = piece_units::<T>(crew.cell.hidden_size(), n, p);
    let end = units.end.next_multiple_of(T::NR).min(block);
    for g in 0..gates {
        let (at, len) = (g * block + units.start, end.saturating_sub(units.start));
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(own.add(r * ldo + at), out.add(r * ldo + at), len);
        }
    }
}
