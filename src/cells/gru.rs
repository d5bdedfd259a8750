//! GRU, gates in ONNX order z, r, h:
//!
//! ```text
//! zt = f(Xt·Wzᵀ + Ht-1·Rzᵀ + Wbz + Rbz)
//! rt = f(Xt·Wrᵀ + Ht-1·Rrᵀ + Wbr + Rbr)
//! ht = g(Xt·Whᵀ + (rt⊙Ht-1)·Rhᵀ + Rbh + Wbh)          linear_before_reset = 0
//! ht = g(Xt·Whᵀ + rt⊙(Ht-1·Rhᵀ + Rbh) + Wbh)          linear_before_reset ≠ 0
//! Ht = (1 - zt)⊙ht + zt⊙Ht-1
//! ```

use std::ops::Range;

use ndarray::{s, Array1, ArrayView2, ArrayViewMut2};

use super::activation::{Act, Clip};
use super::{
    pad_gate_columns, pad_gate_row, padded_hidden, Cell, DirWeights, InputProjection, StepBufs,
};
use crate::attrs::{Activation, OpKind};
use crate::kernels::{gemm_cols_raw, Float, Packed, WeightFormat};

/// A gated recurrent unit.
///
/// Its gate rows hold the ONNX gates z, r, h in blocks of H rounded up to whole panels.
#[derive(Debug, Clone)]
pub struct Gru<T> {
    /// Wᵀ packed, with the biases outside the reset gate's reach folded in: all of Wb + Rb,
    /// except Rbh when `linear_before_reset` puts it inside `rt ⊙ (…)`.
    input: InputProjection<T>,
    /// Rᵀ split into its z, r columns (`[H, 2·Hp]`) and its h columns (`[H, H]`), packed.
    r_zr: Packed<T>,
    r_h: Packed<T>,
    /// Rbh, `[hidden]`.
    rbh: Array1<T>,
    hidden: usize,
    /// H rounded up to whole panels.
    hp: usize,
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
        let hp = padded_hidden::<T>(hs);
        let mut bias = &weights.wb + &weights.rb;
        if linear_before_reset {
            bias.slice_mut(s![2 * hs..])
                .assign(&weights.wb.slice(s![2 * hs..]));
        }
        let act = |i: usize, d: Activation| Act::new(activations.get(i).copied().unwrap_or(d));
        Gru {
            input: InputProjection::new(
                pad_gate_columns(weights.w_t.view(), 3, hp).view(),
                pad_gate_row(bias.view(), 3, hp),
                3,
            ),
            r_zr: Packed::pack(pad_gate_columns(weights.r_t.slice(s![.., ..2 * hs]), 2, hp).view()),
            r_h: Packed::pack(weights.r_t.slice(s![.., 2 * hs..])),
            rbh: weights.rb.slice(s![2 * hs..]).to_owned(),
            hidden: hs,
            hp,
            f: act(0, Activation::Sigmoid),
            g: act(1, Activation::Tanh),
            clip: Clip::new(clip),
            linear_before_reset,
        }
    }

    /// The cell with Rᵀ stored as `format` (see [`super::Lstm::with_recurrent_weights`]).
    pub fn with_recurrent_weights(mut self, format: WeightFormat) -> Gru<T> {
        if self.r_h.format() != format {
            self.r_zr = Packed::pack_as(self.r_zr.unpack().view(), format);
            self.r_h = Packed::pack_as(self.r_h.unpack().view(), format);
        }
        self
    }

    /// The candidate and the new state of units `u0..u0 + n`, once the candidate's
    /// pre-activation is in its gate block.
    unsafe fn finish(&self, s: &StepBufs<T>, u0: usize, n: usize) {
        let (hs, hp) = (self.hidden, self.hp);
        for b in 0..s.batch {
            let row = s.gates.add(b * s.ldg + u0);
            let z = std::slice::from_raw_parts(row, n);
            let gh = std::slice::from_raw_parts_mut(row.add(2 * hp), n);
            self.clip.apply_slice(gh);
            self.g.apply_slice(gh);
            let hp_ = std::slice::from_raw_parts(s.h.add(b * hs + u0), n);
            let hn = std::slice::from_raw_parts_mut(s.h_next.add(b * hs + u0), n);
            for (((o, &z), &cand), &h) in hn.iter_mut().zip(z).zip(&*gh).zip(hp_) {
                *o = (T::one() - z) * cand + z * h;
            }
        }
    }
}

impl<T: Float> Cell<T> for Gru<T> {
    fn kind(&self) -> OpKind {
        OpKind::Gru
    }

    fn hidden_size(&self) -> usize {
        self.hidden
    }

    fn input_size(&self) -> usize {
        self.input.input_size()
    }

    fn gate_width(&self) -> usize {
        3 * self.hp
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

    fn phases(&self) -> usize {
        if self.linear_before_reset {
            1
        } else {
            2
        }
    }

    unsafe fn step_piece(&self, phase: usize, s: &StepBufs<T>, units: Range<usize>) {
        let (hs, hp) = (self.hidden, self.hp);
        let (u0, n) = (units.start, units.len());
        if n == 0 {
            return;
        }
        // The candidate's block of the gate rows.
        let cand = s.gates.add(2 * hp);
        if phase == 1 {
            // (rt ⊙ Ht-1)·Rhᵀ over every unit's r ⊙ h, on top of the input side (which
            // already holds Wbh + Rbh).
            let gx_h = s.gx.add(2 * hp);
            gemm_cols_raw(
                s.batch, s.extra, hs, &self.r_h, units, cand, s.ldg, gx_h, s.ldgx, s.reverse,
            );
            return self.finish(s, u0, n);
        }
        // z and r: input side plus Ht-1·R[zr]ᵀ (one product when the piece is the whole
        // step); with linear_before_reset, Ht-1·Rhᵀ + Rbh too, which the reset gate scales.
        // A step walking the weights backwards takes the products in the opposite order.
        let zr = |g: Option<usize>| {
            let cols = match g {
                None => 0..2 * hp,
                Some(g) => g * hp + u0..g * hp + units.end,
            };
            let (h, gx) = (s.h, s.gx);
            gemm_cols_raw(
                s.batch, h, hs, &self.r_zr, cols, s.gates, s.ldg, gx, s.ldgx, s.reverse,
            );
        };
        let zr_products: &[Option<usize>] = if n == hs {
            &[None]
        } else {
            &[Some(0), Some(1)]
        };
        let h_product = || {
            if self.linear_before_reset {
                let (rbh, units) = (self.rbh.as_ptr(), units.clone());
                gemm_cols_raw(
                    s.batch, s.h, hs, &self.r_h, units, cand, s.ldg, rbh, 0, s.reverse,
                );
            }
        };
        if s.reverse {
            h_product();
            zr_products.iter().rev().for_each(|&g| zr(g));
        } else {
            zr_products.iter().for_each(|&g| zr(g));
            h_product();
        }
        let (clip, f) = (&self.clip, &self.f);
        for b in 0..s.batch {
            let row = s.gates.add(b * s.ldg + u0);
            let z = std::slice::from_raw_parts_mut(row, n);
            clip.apply_slice(z);
            f.apply_slice(z);
            let r = std::slice::from_raw_parts_mut(row.add(hp), n);
            clip.apply_slice(r);
            f.apply_slice(r);
            if self.linear_before_reset {
                let gh = std::slice::from_raw_parts_mut(row.add(2 * hp), n);
                let xh = std::slice::from_raw_parts(s.gx.add(b * s.ldgx + 2 * hp + u0), n);
                for ((o, &x), &r) in gh.iter_mut().zip(xh).zip(&*r) {
                    *o = x + r * *o;
                }
            } else {
                let hp_ = std::slice::from_raw_parts(s.h.add(b * hs + u0), n);
                let e = std::slice::from_raw_parts_mut(s.extra.add(b * hs + u0), n);
                for ((e, &r), &h) in e.iter_mut().zip(&*r).zip(hp_) {
                    *e = r * h;
                }
            }
        }
        if self.linear_before_reset {
            self.finish(s, u0, n);
        }
    }
}
