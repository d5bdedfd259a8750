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
use super::{add_mul, rows_of, Cell, DirWeights, InputProjection, State, Workspace};
use crate::attrs::{Activation, OpKind};
use crate::kernels::{gemm_packed_par, Float, Init, Packed};

/// A long short-term memory cell.
#[derive(Debug, Clone)]
pub struct Lstm<T> {
    /// Wᵀ packed, with Wb + Rb folded in.
    input: InputProjection<T>,
    /// Rᵀ packed.
    r_p: Packed<T>,
    /// Peepholes `[Pi, Po, Pf]`, `[3·hidden]`.
    p: Option<Array1<T>>,
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
            input: InputProjection::new(weights.w_t.view(), bias),
            r_p: Packed::pack(weights.r_t.view()),
            p: weights.p,
            f: act(0, Activation::Sigmoid),
            g: act(1, Activation::Tanh),
            h: act(2, Activation::Tanh),
            clip: Clip::new(clip),
            input_forget,
        }
    }
}

impl<T: Float> Cell<T> for Lstm<T> {
    fn kind(&self) -> OpKind {
        OpKind::Lstm
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
        let width = 4 * hs;
        if hs == 0 {
            return;
        }
        let gx = rows_of(&gx);
        let gates = ws.gates.as_slice_mut().expect("workspace is contiguous");
        gemm_packed_par(
            ws.parts,
            state.batch(),
            state.h_slice(),
            hs,
            &self.r_p,
            gates,
            width,
            Init::Rows(&gx, width),
        );
        let c_prev = state.c_slice().expect("LSTM state has a cell state");
        let p = self
            .p
            .as_ref()
            .map(|p| p.as_slice().expect("owned, contiguous"));
        let (h_next, c_next) = (
            &mut next.h,
            next.c.as_mut().expect("LSTM state has a cell state"),
        );
        let h_next = h_next.as_slice_mut().expect("State keeps standard layout");
        let c_next = c_next.as_slice_mut().expect("State keeps standard layout");
        let (clip, f, g, h) = (&self.clip, &self.f, &self.g, &self.h);
        // Each pass runs over a whole gate block, so activations dispatch once per block and
        // sigmoid/tanh vectorize.
        for (b, row) in gates.chunks_exact_mut(width).enumerate() {
            let (gi, rest) = row.split_at_mut(hs);
            let (go, rest) = rest.split_at_mut(hs);
            let (gf, gc) = rest.split_at_mut(hs);
            let cp = &c_prev[b * hs..(b + 1) * hs];
            let cn = &mut c_next[b * hs..(b + 1) * hs];
            let hn = &mut h_next[b * hs..(b + 1) * hs];
            if let Some(p) = p {
                add_mul(gi, &p[..hs], cp);
                if !self.input_forget {
                    add_mul(gf, &p[2 * hs..3 * hs], cp);
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
                add_mul(go, &p[hs..2 * hs], cn);
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
