//! RNN: `Ht = f(Xt·Wᵀ + Ht-1·Rᵀ + Wb + Rb)`.

use ndarray::{Array1, ArrayView2, ArrayViewMut2};

use super::activation::{Act, Clip};
use super::{add_recurrent, project_with_bias, Cell, DirWeights, State, Workspace};
use crate::attrs::{Activation, OpKind};
use crate::kernels::Float;

/// A simple (Elman) recurrent cell.
#[derive(Debug, Clone)]
pub struct Rnn<T> {
    weights: DirWeights<T>,
    /// Wb + Rb: both are constant, so they fold into the input projection.
    bias: Array1<T>,
    f: Act<T>,
    clip: Clip<T>,
}

impl<T: Float> Rnn<T> {
    /// A cell from one direction's weights, its activation `[f]` and the clip bound.
    pub fn new(weights: DirWeights<T>, activations: &[Activation], clip: Option<f32>) -> Rnn<T> {
        let bias = &weights.wb + &weights.rb;
        let f = activations.first().copied().unwrap_or(Activation::Tanh);
        Rnn { weights, bias, f: Act::new(f), clip: Clip::new(clip) }
    }
}

impl<T: Float> Cell<T> for Rnn<T> {
    fn kind(&self) -> OpKind {
        OpKind::Rnn
    }

    fn weights(&self) -> &DirWeights<T> {
        &self.weights
    }

    fn project(&self, x: ArrayView2<T>, out: ArrayViewMut2<T>) {
        project_with_bias(x, self.weights.w_t.view(), self.bias.view(), out);
    }

    fn step_projected(
        &self,
        gx: ArrayView2<T>,
        state: &State<T>,
        next: &mut State<T>,
        ws: &mut Workspace<T>,
    ) {
        add_recurrent(gx, state.h.view(), self.weights.r_t.view(), ws.gates.view_mut());
        for (h, &g) in next.h_slice_mut().iter_mut().zip(ws.gates.iter()) {
            *h = self.f.apply(self.clip.apply(g));
        }
    }
}
