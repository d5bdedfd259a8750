//! Native cells: the RNN, LSTM and GRU recurrences exactly as the ONNX spec writes them, for
//! `f32` and `f64`, usable without tract.
//!
//! Each cell kind implements [`Cell`]: a projection of many input rows at once (the part of
//! the gates that does not depend on the state, done as one matrix product before the time
//! loop) and one step from projected rows. [`Cell::seq`] and [`run_sequence`] drive the time
//! loop, including `sequence_lens` and reverse directions.
//!
//! The files: the trait (here), the cells (`rnn`, `lstm`, `gru`) and their activations, the
//! data they work on (`buffers`), the time loop and input projection (`sequence`), the cutting
//! of a step into pieces (`pieces`), the threads that run them (`team`) and the jobs they run
//! (`jobs`), and whether sharing a step pays (`choice`).

pub mod activation;
mod buffers;
mod choice;
pub mod gru;
mod jobs;
pub mod lstm;
mod pieces;
pub mod rnn;
mod sequence;
mod team;
#[cfg(test)]
mod tests;

use ndarray::{
    s, Array1, Array2, Array3, ArrayView1, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3,
};

pub use gru::Gru;
pub use lstm::Lstm;
pub use rnn::Rnn;

use crate::attrs::OpKind;
use crate::gates::{onnx_rows_to_cell_columns, split_onnx_bias};
use crate::kernels::{gemm_cols_raw, gemm_packed, Float, Init, Packed};

// The parts live in their own files; their items are the module's as before.
pub use buffers::*;
pub(crate) use pieces::*;
pub use sequence::*;

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
