//! GRU, gates in ONNX order z, r, h:
//!
//! ```text
//! zt = f(Xt·Wzᵀ + Ht-1·Rzᵀ + Wbz + Rbz)
//! rt = f(Xt·Wrᵀ + Ht-1·Rrᵀ + Wbr + Rbr)
//! ht = g(Xt·Whᵀ + (rt⊙Ht-1)·Rhᵀ + Rbh + Wbh)          linear_before_reset = 0
//! ht = g(Xt·Whᵀ + rt⊙(Ht-1·Rhᵀ + Rbh) + Wbh)          linear_before_reset ≠ 0
//! Ht = (1 - zt)⊙ht + zt⊙Ht-1
//! ```

use ndarray::{s, Array1, ArrayView2, ArrayViewMut2};

use super::activation::{Act, Clip};
use super::{project_with_bias, Cell, DirWeights, State, Workspace};
use crate::attrs::{Activation, OpKind};
use crate::kernels::{matmul, Float};

/// A gated recurrent unit.
#[derive(Debug, Clone)]
pub struct Gru<T> {
    weights: DirWeights<T>,
    /// The biases outside the reset gate's reach, folded into the input projection: all of
    /// Wb + Rb, except Rbh when `linear_before_reset` puts it inside `rt ⊙ (…)`.
    bias: Array1<T>,
    f: Act<T>,
    g: Act<T>,
    clip: Clip<T>,
    linear_before_reset: bool,
}

impl<T: Float> Gru<T> {
    /// A cell from one direction's weights, its activations `[f, g]`, the clip bound and
    /// `linear_before_reset`.
    pub fn new(
        weights: DirWeights<T>,
        activations: &[Activation],
        clip: Option<f32>,
        linear_before_reset: bool,
    ) -> Gru<T> {
        let hs = weights.hidden_size();
        let mut bias = &weights.wb + &weights.rb;
        if linear_before_reset {
            bias.slice_mut(s![2 * hs..]).assign(&weights.wb.slice(s![2 * hs..]));
        }
        let act = |i: usize, d: Activation| Act::new(activations.get(i).copied().unwrap_or(d));
        Gru {
            bias,
            f: act(0, Activation::Sigmoid),
            g: act(1, Activation::Tanh),
            clip: Clip::new(clip),
            linear_before_reset,
            weights,
        }
    }
}

impl<T: Float> Cell<T> for Gru<T> {
    fn kind(&self) -> OpKind {
        OpKind::Gru
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
        let clip = &self.clip;
        let h_prev = state.h_slice();
        let r_t = self.weights.r_t.view();
        if self.linear_before_reset {
            // One product covers all three gates: the reset gate applies after it.
            matmul(state.h.view(), r_t, ws.gates.view_mut());
        } else {
            matmul(state.h.view(), r_t.slice(s![.., ..2 * hs]), ws.gates.slice_mut(s![.., ..2 * hs]));
        }
        let rbh = self.weights.rb.slice(s![2 * hs..]);
        let rbh = rbh.as_slice().expect("owned, contiguous");
        let gx = gx.as_standard_layout();
        let gx = gx.as_slice().expect("standard layout");
        let width = 3 * hs;
        {
            let gates = ws.gates.as_slice_mut().expect("workspace is contiguous");
            let extra = ws.extra.as_slice_mut().expect("workspace is contiguous");
            for b in 0..state.batch() {
                let row = &mut gates[b * width..(b + 1) * width];
                let xrow = &gx[b * width..(b + 1) * width];
                for j in 0..hs {
                    let z = self.f.apply(clip.apply(xrow[j] + row[j]));
                    let r = self.f.apply(clip.apply(xrow[hs + j] + row[hs + j]));
                    row[j] = z;
                    row[hs + j] = r;
                    if self.linear_before_reset {
                        row[2 * hs + j] = xrow[2 * hs + j] + r * (row[2 * hs + j] + rbh[j]);
                    } else {
                        extra[b * hs + j] = r * h_prev[b * hs + j];
                    }
                }
            }
        }
        if !self.linear_before_reset {
            // (rt ⊙ Ht-1) · Rhᵀ, then the input side (which already holds Wbh + Rbh).
            let mut hcols = ws.gates.slice_mut(s![.., 2 * hs..]);
            matmul(ws.extra.view(), r_t.slice(s![.., 2 * hs..]), hcols.view_mut());
            let gx_h = ndarray::ArrayView2::from_shape((state.batch(), width), gx)
                .expect("gx is [batch, 3·hidden]");
            hcols.zip_mut_with(&gx_h.slice(s![.., 2 * hs..]), |o, &x| *o = *o + x);
        }
        let gates = ws.gates.as_slice().expect("workspace is contiguous");
        let h_next = next.h_slice_mut();
        for b in 0..state.batch() {
            let row = &gates[b * width..(b + 1) * width];
            for j in 0..hs {
                let z = row[j];
                let cand = self.g.apply(clip.apply(row[2 * hs + j]));
                h_next[b * hs + j] = (T::one() - z) * cand + z * h_prev[b * hs + j];
            }
        }
    }
}
