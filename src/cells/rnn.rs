//! RNN: `Ht = f(Xt·Wᵀ + Ht-1·Rᵀ + Wb + Rb)`.

use std::ops::Range;

use ndarray::{ArrayView2, ArrayViewMut2};

use super::activation::{Act, Clip};
use super::{Cell, DirWeights, InputProjection, StepBufs};
use crate::attrs::{Activation, OpKind};
use crate::kernels::{gemm_cols_raw, Float, Packed, WeightFormat};

/// A simple (Elman) recurrent cell.
#[derive(Debug, Clone)]
pub struct Rnn<T> {
    /// Wᵀ packed, with Wb + Rb folded in (both are constant).
    input: InputProjection<T>,
    /// Rᵀ packed.
    r_p: Packed<T>,
    f: Act<T>,
    clip: Clip<T>,
}

impl<T: Float> Rnn<T> {
    /// A cell from one direction's weights, its activation `[f]` and the clip bound.
    pub fn new(weights: DirWeights<T>, activations: &[Activation], clip: Option<f32>) -> Rnn<T> {
        let bias = &weights.wb + &weights.rb;
        let f = activations.first().copied().unwrap_or(Activation::Tanh);
        Rnn {
            input: InputProjection::new(weights.w_t.view(), bias, 1),
            r_p: Packed::pack(weights.r_t.view()),
            f: Act::new(f),
            clip: Clip::new(clip),
        }
    }

    /// The cell with Rᵀ stored as `format` (see [`super::Lstm::with_recurrent_weights`]).
    pub fn with_recurrent_weights(mut self, format: WeightFormat) -> Rnn<T> {
        if self.r_p.format() != format {
            self.r_p = Packed::pack_as(self.r_p.unpack().view(), format);
        }
        self
    }
}

impl<T: Float> Cell<T> for Rnn<T> {
    fn kind(&self) -> OpKind {
        OpKind::Rnn
    }

    fn hidden_size(&self) -> usize {
        self.r_p.rows()
    }

    fn input_size(&self) -> usize {
        self.input.input_size()
    }

    fn gate_width(&self) -> usize {
        self.r_p.rows()
    }

    fn project(&self, x: ArrayView2<T>, out: ArrayViewMut2<T>) {
        self.input.project(x, out)
    }

    unsafe fn project_piece(
        &self,
        rows: usize,
        x: *const T,
        ldx: usize,
        out: *mut T,
        ldo: usize,
        units: Range<usize>,
    ) {
        self.input.project_units(rows, x, ldx, out, ldo, units)
    }

    unsafe fn step_piece(&self, _phase: usize, s: &StepBufs<T>, units: Range<usize>) {
        let hs = self.hidden_size();
        let (u0, n) = (units.start, units.len());
        gemm_cols_raw(
            s.batch, s.h, hs, &self.r_p, units, s.h_next, hs, s.gx, s.ldgx, s.reverse,
        );
        let rows = if n == hs { 1 } else { s.batch };
        let len = if n == hs { s.batch * hs } else { n };
        for b in 0..rows {
            let out = std::slice::from_raw_parts_mut(s.h_next.add(b * hs + u0), len);
            self.clip.apply_slice(out);
            self.f.apply_slice(out);
        }
    }
}
