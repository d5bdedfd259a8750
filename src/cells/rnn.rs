//! RNN: `Ht = f(Xt·Wᵀ + Ht-1·Rᵀ + Wb + Rb)`.

use ndarray::{Array1, ArrayView2, ArrayViewMut2};

use super::activation::{Act, Clip};
use super::{project_packed, rows_of, Cell, DirWeights, State, Workspace};
use crate::attrs::{Activation, OpKind};
use crate::kernels::{gemm_packed_par, Float, Init, Packed};

/// A simple (Elman) recurrent cell.
#[derive(Debug, Clone)]
pub struct Rnn<T> {
    /// Wb + Rb: both are constant, so they fold into the input projection.
    bias: Array1<T>,
    /// Wᵀ and Rᵀ packed for the products.
    w_p: Packed<T>,
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
            bias,
            w_p: Packed::pack(weights.w_t.view()),
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
        self.w_p.rows()
    }

    fn project(&self, x: ArrayView2<T>, out: ArrayViewMut2<T>) {
        project_packed(
            x,
            &self.w_p,
            self.bias.as_slice().expect("owned, contiguous"),
            out,
        );
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
