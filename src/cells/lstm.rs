//! LSTM, gates in ONNX order i, o, f, c:
//!
//! ```text
//! it = f(Xt·Wiᵀ + Ht-1·Riᵀ + Pi⊙Ct-1 + Wbi + Rbi)
//! ft = f(Xt·Wfᵀ + Ht-1·Rfᵀ + Pf⊙Ct-1 + Wbf + Rbf)      (1 - it with input_forget)
//! ct = g(Xt·Wcᵀ + Ht-1·Rcᵀ + Wbc + Rbc)
//! Ct = ft⊙Ct-1 + it⊙ct
//! ot = f(Xt·Woᵀ + Ht-1·Roᵀ + Po⊙Ct + Wbo + Rbo)
//! Ht = ot⊙h(Ct)
//! ```

use ndarray::{Array1, ArrayView2, ArrayViewMut2};

use super::activation::{Act, Clip};
use super::{add_recurrent, project_with_bias, Cell, DirWeights, State, Workspace};
use crate::attrs::{Activation, OpKind};
use crate::kernels::Float;

/// A long short-term memory cell.
#[derive(Debug, Clone)]
pub struct Lstm<T> {
    weights: DirWeights<T>,
    /// Wb + Rb, folded into the input projection.
    bias: Array1<T>,
    f: Act<T>,
    g: Act<T>,
    h: Act<T>,
    clip: Clip<T>,
    input_forget: bool,
}

impl<T: Float> Lstm<T> {
    /// A cell from one direction's weights, its activations `[f, g, h]`, the clip bound and
    /// `input_forget`.
    pub fn new(
        weights: DirWeights<T>,
        activations: &[Activation],
        clip: Option<f32>,
        input_forget: bool,
    ) -> Lstm<T> {
        let bias = &weights.wb + &weights.rb;
        let act = |i: usize, d: Activation| Act::new(activations.get(i).copied().unwrap_or(d));
        Lstm {
            bias,
            f: act(0, Activation::Sigmoid),
            g: act(1, Activation::Tanh),
            h: act(2, Activation::Tanh),
            clip: Clip::new(clip),
            input_forget,
            weights,
        }
    }
}

impl<T: Float> Cell<T> for Lstm<T> {
    fn kind(&self) -> OpKind {
        OpKind::Lstm
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
        let hs = self.hidden_size();
        add_recurrent(gx, state.h.view(), self.weights.r_t.view(), ws.gates.view_mut());
        let gates = ws.gates.as_slice().expect("workspace is contiguous");
        let c_prev = state.c_slice().expect("LSTM state has a cell state");
        let p = self.weights.p.as_ref().map(|p| p.as_slice().expect("owned, contiguous"));
        let (pi, po, pf) = match p {
            Some(p) => (&p[..hs], &p[hs..2 * hs], &p[2 * hs..3 * hs]),
            None => (&[][..], &[][..], &[][..]),
        };
        let peep = |p: &[T], j: usize, c: T| if p.is_empty() { T::zero() } else { p[j] * c };
        let (h_next, c_next) = (&mut next.h, next.c.as_mut().expect("LSTM state has a cell state"));
        let h_next = h_next.as_slice_mut().expect("State keeps standard layout");
        let c_next = c_next.as_slice_mut().expect("State keeps standard layout");
        let clip = &self.clip;
        for (b, row) in gates.chunks_exact(4 * hs).enumerate() {
            let (gi, rest) = row.split_at(hs);
            let (go, rest) = rest.split_at(hs);
            let (gf, gc) = rest.split_at(hs);
            for j in 0..hs {
                let cp = c_prev[b * hs + j];
                let i = self.f.apply(clip.apply(gi[j] + peep(pi, j, cp)));
                let f = if self.input_forget {
                    T::one() - i
                } else {
                    self.f.apply(clip.apply(gf[j] + peep(pf, j, cp)))
                };
                let cand = self.g.apply(clip.apply(gc[j]));
                let c = f * cp + i * cand;
                let o = self.f.apply(clip.apply(go[j] + peep(po, j, c)));
                c_next[b * hs + j] = c;
                h_next[b * hs + j] = o * self.h.apply(c);
            }
        }
    }
}
