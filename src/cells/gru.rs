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
use super::{rows_of, Cell, DirWeights, InputProjection, State, Workspace};
use crate::attrs::{Activation, OpKind};
use crate::kernels::{gemm_packed_par, Float, Init, Packed};

/// A gated recurrent unit.
#[derive(Debug, Clone)]
pub struct Gru<T> {
    /// Wᵀ packed, with the biases outside the reset gate's reach folded in: all of Wb + Rb,
    /// except Rbh when `linear_before_reset` puts it inside `rt ⊙ (…)`.
    input: InputProjection<T>,
    /// Rᵀ split into its z, r columns and its h columns, packed.
    r_zr: Packed<T>,
    r_h: Packed<T>,
    /// Rbh, `[hidden]`.
    rbh: Array1<T>,
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
            bias.slice_mut(s![2 * hs..])
                .assign(&weights.wb.slice(s![2 * hs..]));
        }
        let act = |i: usize, d: Activation| Act::new(activations.get(i).copied().unwrap_or(d));
        Gru {
            input: InputProjection::new(weights.w_t.view(), bias),
            r_zr: Packed::pack(weights.r_t.slice(s![.., ..2 * hs])),
            r_h: Packed::pack(weights.r_t.slice(s![.., 2 * hs..])),
            rbh: weights.rb.slice(s![2 * hs..]).to_owned(),
            f: act(0, Activation::Sigmoid),
            g: act(1, Activation::Tanh),
            clip: Clip::new(clip),
            linear_before_reset,
        }
    }
}

impl<T: Float> Cell<T> for Gru<T> {
    fn kind(&self) -> OpKind {
        OpKind::Gru
    }

    fn hidden_size(&self) -> usize {
        self.r_zr.rows()
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
        let width = 3 * hs;
        let batch = state.batch();
        if hs == 0 {
            return;
        }
        let (clip, f, g) = (&self.clip, &self.f, &self.g);
        let h_prev = state.h_slice();
        let gx = rows_of(&gx);
        let parts = ws.parts;
        let gates = ws.gates.as_slice_mut().expect("workspace is contiguous");
        let extra = ws.extra.as_slice_mut().expect("workspace is contiguous");
        // z and r: input side plus Ht-1·R[zr]ᵀ.
        gemm_packed_par(
            parts,
            batch,
            h_prev,
            hs,
            &self.r_zr,
            gates,
            width,
            Init::Rows(&gx, width),
        );
        if self.linear_before_reset {
            // Ht-1·Rhᵀ + Rbh, which the reset gate scales.
            let rbh = self.rbh.as_slice().expect("owned, contiguous");
            gemm_packed_par(
                parts,
                batch,
                h_prev,
                hs,
                &self.r_h,
                &mut gates[2 * hs..],
                width,
                Init::Row(rbh),
            );
        }
        for b in 0..batch {
            let row = &mut gates[b * width..(b + 1) * width];
            let (zr, gh) = row.split_at_mut(2 * hs);
            clip.apply_slice(zr);
            f.apply_slice(zr);
            let r = &zr[hs..];
            if self.linear_before_reset {
                let xh = &gx[b * width + 2 * hs..(b + 1) * width];
                for ((o, &x), &r) in gh.iter_mut().zip(xh).zip(r) {
                    *o = x + r * *o;
                }
            } else {
                let hp = &h_prev[b * hs..(b + 1) * hs];
                for ((e, &r), &h) in extra[b * hs..(b + 1) * hs].iter_mut().zip(r).zip(hp) {
                    *e = r * h;
                }
            }
        }
        if !self.linear_before_reset {
            // (rt ⊙ Ht-1)·Rhᵀ on top of the input side (which already holds Wbh + Rbh).
            gemm_packed_par(
                parts,
                batch,
                extra,
                hs,
                &self.r_h,
                &mut gates[2 * hs..],
                width,
                Init::Rows(&gx[2 * hs..], width),
            );
        }
        let h_next = next.h_slice_mut();
        for b in 0..batch {
            let row = &mut gates[b * width..(b + 1) * width];
            let (z, gh) = row.split_at_mut(2 * hs);
            let z = &z[..hs];
            clip.apply_slice(gh);
            g.apply_slice(gh);
            let hp = &h_prev[b * hs..(b + 1) * hs];
            for (((o, &z), &cand), &h) in h_next[b * hs..(b + 1) * hs]
                .iter_mut()
                .zip(z)
                .zip(&*gh)
                .zip(hp)
            {
                *o = (T::one() - z) * cand + z * h;
            }
        }
    }
}
