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

use std::ops::Range;

use ndarray::{Array1, ArrayView2, ArrayViewMut2};

use super::activation::{Act, Clip};
use super::{
    add_mul, pad_gate_columns, pad_gate_row, padded_hidden, Cell, DirWeights, InputProjection,
    StepBufs,
};
use crate::attrs::{Activation, OpKind};
use crate::kernels::{gemm_cols_raw, Float, LstmRow, Packed, WeightFormat};

/// A long short-term memory cell.
///
/// Its gate rows hold the ONNX gates i, o, f, c in blocks of H rounded up to whole panels.
#[derive(Debug, Clone)]
pub struct Lstm<T> {
    /// Wᵀ packed, with Wb + Rb folded in.
    input: InputProjection<T>,
    /// Rᵀ packed, `[H, 4·Hp]`.
    r_p: Packed<T>,
    hidden: usize,
    /// H rounded up to whole panels.
    hp: usize,
    /// Peepholes `[Pi, Po, Pf]`, `[3·hidden]`.
    p: Option<Array1<T>>,
    f: Act<T>,
    g: Act<T>,
    h: Act<T>,
    clip: Clip<T>,
    input_forget: bool,
    /// f32 with the default activations and no clip: the pointwise part runs fused
    /// ([`Float::lstm_row`]).
    default_pointwise: bool,
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
        let hidden = weights.hidden_size();
        let hp = padded_hidden::<T>(hidden);
        let bias = pad_gate_row((&weights.wb + &weights.rb).view(), 4, hp);
        let act = |i: usize, d: Activation| Act::new(activations.get(i).copied().unwrap_or(d));
        let (f, g, h) = (
            act(0, Activation::Sigmoid),
            act(1, Activation::Tanh),
            act(2, Activation::Tanh),
        );
        let clip = Clip::new(clip);
        let default_pointwise = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
            && f.is(Activation::Sigmoid)
            && g.is(Activation::Tanh)
            && h.is(Activation::Tanh)
            && clip.is_none();
        Lstm {
            input: InputProjection::new(
                pad_gate_columns(weights.w_t.view(), 4, hp).view(),
                bias,
                4,
            ),
            r_p: Packed::pack(pad_gate_columns(weights.r_t.view(), 4, hp).view()),
            hidden,
            hp,
            p: weights.p,
            f,
            g,
            h,
            clip,
            input_forget,
            default_pointwise,
        }
    }

    /// The cell with Rᵀ stored as `format` (rounded from the exact weights): with a 16-bit
    /// format, each step reads half the bytes, and the results move by the rounding.
    pub fn with_recurrent_weights(mut self, format: WeightFormat) -> Lstm<T> {
        if self.r_p.format() != format {
            self.r_p = Packed::pack_as(self.r_p.unpack().view(), format);
        }
        self
    }
}

impl<T: Float> Cell<T> for Lstm<T> {
    fn kind(&self) -> OpKind {
        OpKind::Lstm
    }

    fn hidden_size(&self) -> usize {
        self.hidden
    }

    fn input_size(&self) -> usize {
        self.input.input_size()
    }

    fn gate_width(&self) -> usize {
        4 * self.hp
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
        let (hs, hp) = (self.hidden, self.hp);
        let width = 4 * hp;
        let (u0, n) = (units.start, units.len());
        if n == 0 {
            return;
        }
        // Gates of these units: gx + Ht-1·Rᵀ, one product when the piece is the whole step.
        if n == hs {
            gemm_cols_raw(
                s.batch,
                s.h,
                hs,
                &self.r_p,
                0..width,
                s.gates,
                s.ldg,
                s.gx,
                s.ldgx,
                s.reverse,
            );
        } else {
            // A step walking the weights backwards takes the gates in the opposite order.
            for g in (0..4).map(|g| if s.reverse { 3 - g } else { g }) {
                let cols = g * hp + u0..g * hp + units.end;
                gemm_cols_raw(
                    s.batch, s.h, hs, &self.r_p, cols, s.gates, s.ldg, s.gx, s.ldgx, s.reverse,
                );
            }
        }
        let p = self
            .p
            .as_ref()
            .map(|p| p.as_slice().expect("owned, contiguous"));
        if self.default_pointwise {
            for b in 0..s.batch {
                let at = |p: *const T| p.add(b * hs + u0) as *const f32;
                let peep = |k: usize| p.map_or(std::ptr::null(), |p| p.as_ptr().add(k * hs + u0));
                let row = LstmRow {
                    gates: s.gates.add(b * s.ldg + u0) as *const f32,
                    hp,
                    c_prev: at(s.c),
                    peep: [peep(0), peep(1), peep(2)].map(|q| q as *const f32),
                    c_next: at(s.c_next) as *mut f32,
                    h_next: at(s.h_next) as *mut f32,
                    n,
                    input_forget: self.input_forget,
                };
                // SAFETY: T is f32 (`default_pointwise` says so); gate blocks are `hp` wide
                // and `u0` starts a panel, so whole chunks of 16 from `u0` stay in them;
                // the state rows hold H values from `b·H`, the peepholes 3·H.
                if !T::lstm_row(&row) {
                    unreachable!("default_pointwise is set for f32 only");
                }
            }
            return;
        }
        let (clip, f, g, h) = (&self.clip, &self.f, &self.g, &self.h);
        // Each pass runs over a gate's units, so activations dispatch once per block and
        // sigmoid/tanh vectorize.
        for b in 0..s.batch {
            let row = s.gates.add(b * s.ldg + u0);
            let gi = std::slice::from_raw_parts_mut(row, n);
            let go = std::slice::from_raw_parts_mut(row.add(hp), n);
            let gf = std::slice::from_raw_parts_mut(row.add(2 * hp), n);
            let gc = std::slice::from_raw_parts_mut(row.add(3 * hp), n);
            let cp = std::slice::from_raw_parts(s.c.add(b * hs + u0), n);
            let cn = std::slice::from_raw_parts_mut(s.c_next.add(b * hs + u0), n);
            let hn = std::slice::from_raw_parts_mut(s.h_next.add(b * hs + u0), n);
            if let Some(p) = p {
                add_mul(gi, &p[u0..units.end], cp);
                if !self.input_forget {
                    add_mul(gf, &p[2 * hs + u0..2 * hs + units.end], cp);
                }
            }
            clip.apply_slice(gi);
            f.apply_slice(gi);
            clip.apply_slice(gc);
            g.apply_slice(gc);
            if self.input_forget {
                for (((c, &cp), &i), &cand) in cn.iter_mut().zip(cp).zip(&*gi).zip(&*gc) {
                    *c = (T::one() - i) * cp + i * cand;
                }
            } else {
                clip.apply_slice(gf);
                f.apply_slice(gf);
                for (((c, &cp), (&i, &fg)), &cand) in
                    cn.iter_mut().zip(cp).zip(gi.iter().zip(&*gf)).zip(&*gc)
                {
                    *c = fg * cp + i * cand;
                }
            }
            if let Some(p) = p {
                add_mul(go, &p[hs + u0..hs + units.end], cn);
            }
            clip.apply_slice(go);
            f.apply_slice(go);
            hn.copy_from_slice(cn);
            h.apply_slice(hn);
            for (hv, &o) in hn.iter_mut().zip(&*go) {
                *hv = o * *hv;
            }
        }
    }
}
