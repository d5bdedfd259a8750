//! RNN: `Ht = f(Xt·Wᵀ + Ht-1·Rᵀ + Wb + Rb)`.

use ndarray::{ArrayView2, ArrayViewMut2};

use super::activation::{Act, Clip};
use super::{rows_of, Cell, DirWeights, InputProjection, State, Workspace};
use crate::attrs::{Activation, OpKind};
use crate::kernels::{gemm_packed_par, Float, Init, Packed};

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
            input: InputProjection::new(weights.w_t.view(), bias),
            r_p: Packed::pack(weights.r_t.view()),
            f: Act::new(f),
            clip: Clip::new(clip),
        }
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

    fn project(&self, x: ArrayView2<T>, out: ArrayViewMut2<T>) {
        self.input.project(x, out)
    }

    fn step_projected(
        &self,
        gx: ArrayView2<T>,
        state: &State<T>,
        next: &mut State<T>,
        ws: &mut Workspace<T>,
    ) {
        let hs = self.hidden_size();
        let gx = rows_of(&gx);
        let out = next.h_slice_mut();
        gemm_packed_par(
            ws.parts,
            state.batch(),
            state.h_slice(),
            hs,
            &self.r_p,
            out,
            hs,
            Init::Rows(&gx, hs),
        );
        self.clip.apply_slice(out);
        self.f.apply_slice(out);
    }
}
