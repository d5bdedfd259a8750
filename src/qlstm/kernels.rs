//! The quantized LSTM's arithmetic: onnxruntime's run-time quantization of a product's float
//! operand, and one direction's recurrence over the time steps.

use ndarray::{s, Array2, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3};

use super::int_gemm::{int_product, QuantRows};
use super::weights::DirWeights;
use crate::cells::activation::Clip;

/// onnxruntime's dynamic quantization parameters of a float matrix for uint8
/// (`GetQuantizationParameter`): the range of the values widened to include 0,
/// `scale = (max − min) / 255` (1 for an all-zero range) and
/// `zero_point = round_half_even(clamp(−min / scale, 0, 255))`, in float32.
pub fn quantization_params(values: impl IntoIterator<Item = f32>) -> (f32, u8) {
    let (lo, hi) = values
        .into_iter()
        .fold((0f32, 0f32), |(lo, hi), v| (lo.min(v), hi.max(v)));
    params_of_range(lo, hi)
}

/// [`quantization_params`] of a slice, vectorized where the CPU allows.
pub(super) fn quantization_params_of(values: &[f32]) -> (f32, u8) {
    let (lo, hi) = super::int_gemm::range(values);
    params_of_range(lo, hi)
}

/// The scale and zero point of the range `lo..=hi` (which includes 0).
fn params_of_range(lo: f32, hi: f32) -> (f32, u8) {
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    let zero_point = (0.0 - lo / scale).clamp(0.0, 255.0).round_ties_even();
    (scale, zero_point as u8)
}

/// `clamp(round_half_even(v / scale) + zero_point, 0, 255)`, as `MlasQuantizeLinear`.
#[inline]
pub fn quantize(v: f32, scale: f32, zero_point: u8) -> u8 {
    ((v / scale).round_ties_even() + zero_point as f32).clamp(0.0, 255.0) as u8
}

/// Quantizes the row-major `rows × a.k` matrix `values` with its own parameters into `a`;
/// returns the scale.
pub(super) fn quantize_rows(values: &[f32], rows: usize, a: &mut QuantRows) -> f32 {
    let (scale, zp) = quantization_params_of(values);
    a.reset(rows, zp);
    let k = values.len() / rows.max(1);
    if k > 0 {
        for (r, row) in values.chunks_exact(k).enumerate() {
            a.quantize_row(r, row, scale, zp);
        }
    }
    scale
}

/// What one direction writes.
pub(super) struct DirOutputs<'a> {
    /// `[T, B, H]`, zero-filled; `None` when the node has no Y.
    pub(super) y: Option<ArrayViewMut3<'a, f32>>,
    pub(super) y_h: ArrayViewMut2<'a, f32>,
    pub(super) y_c: ArrayViewMut2<'a, f32>,
}

impl DirWeights {
    /// Runs one direction over `x` (`[T, B, I]`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        &self,
        x: ArrayView3<f32>,
        lens: &[usize],
        reverse: bool,
        h0: Option<ArrayView2<f32>>,
        c0: Option<ArrayView2<f32>>,
        clip: Clip<f32>,
        input_forget: bool,
        mut out: DirOutputs,
    ) {
        let (_, batch, input) = x.dim();
        let hs = self.r.k;
        let g = self.w.n;
        out.y_h.fill(0.0);
        out.y_c.fill(0.0);
        let max_len = lens.iter().copied().max().unwrap_or(0);
        if batch == 0 || max_len == 0 {
            return;
        }
        let keep_y = out.y.is_some();

        // The input projection: X's first max_len steps quantized as one matrix, rows in the
        // order this direction visits them.
        let rows = max_len * batch;
        let mut qx = QuantRows::new(input);
        let x_used = x.slice(s![..max_len, .., ..]);
        let (scale, zp) = match x_used.as_slice() {
            Some(v) => quantization_params_of(v),
            None => quantization_params(x_used.iter().copied()),
        };
        qx.reset(rows, zp);
        let mut scratch = Vec::with_capacity(input);
        for j in 0..max_len {
            for (b, &len) in lens.iter().enumerate() {
                let src = if reverse && j < len { len - 1 - j } else { j };
                let values = x.slice(s![src, b, ..]);
                let values = match values.as_slice() {
                    Some(v) => v,
                    None => {
                        scratch.clear();
                        scratch.extend(values.iter());
                        &scratch
                    }
                };
                qx.quantize_row(j * batch + b, values, scale, zp);
            }
        }
        let mult: Vec<f32> = self.w_scale.iter().map(|&s| scale * s).collect();
        let mut gx = vec![0f32; rows * g];
        int_product(&qx, &self.w, &mult, &mut gx, false);
        drop(qx);

        let zeros = || Array2::<f32>::zeros((batch, hs));
        let mut h_prev = h0.map_or_else(zeros, |h| h.to_owned());
        let mut h_next = zeros();
        let mut c = c0.map_or_else(zeros, |c| c.to_owned());
        let mut qh = QuantRows::new(hs);
        let mut gates = vec![0f32; batch * g];
        let mut r_mult = vec![0f32; self.r_scale.len()];
        for t in 0..max_len {
            let h_slice = h_prev.as_slice().expect("owned, standard layout");
            let scale = quantize_rows(h_slice, batch, &mut qh);
            for (m, &s) in r_mult.iter_mut().zip(&self.r_scale) {
                *m = scale * s;
            }
            gates.copy_from_slice(&gx[t * batch * g..(t + 1) * batch * g]);
            int_product(&qh, &self.r, &r_mult, &mut gates, true);
            for (b, &len) in lens.iter().enumerate() {
                if t >= len {
                    // Past its length the entry takes no new state; its row of the next
                    // step's A is Y's zero row, or its last state when there is no Y.
                    if keep_y {
                        h_next.row_mut(b).fill(0.0);
                    } else {
                        h_next.row_mut(b).assign(&h_prev.row(b));
                    }
                    continue;
                }
                let row = &mut gates[b * g..(b + 1) * g];
                let (gi, rest) = row.split_at_mut(hs);
                let (go, rest) = rest.split_at_mut(hs);
                let (gf, gc) = rest.split_at_mut(hs);
                let cb = c.row_mut(b).into_slice().expect("owned, standard layout");
                let bias = |k: usize| self.bias.as_ref().map(|v| &v[k * hs..(k + 1) * hs]);
                let peep = |k: usize| self.p.as_ref().map(|v| &v[k * hs..(k + 1) * hs]);
                // Gates i, o, f, c; peepholes i, o, f.
                finish_gate(gi, peep(0).map(|p| (p, &*cb)), bias(0), &clip);
                self.f.apply_slice(gi);
                if input_forget {
                    for (f, &i) in gf.iter_mut().zip(&*gi) {
                        *f = 1.0 - i;
                    }
                } else {
                    finish_gate(gf, peep(2).map(|p| (p, &*cb)), bias(2), &clip);
                    self.f.apply_slice(gf);
                }
                finish_gate(gc, None, bias(3), &clip);
                self.g.apply_slice(gc);
                for (((cv, &f), &i), &cand) in cb.iter_mut().zip(&*gf).zip(&*gi).zip(&*gc) {
                    *cv = *cv * f + i * cand;
                }
                finish_gate(go, peep(1).map(|p| (p, &*cb)), bias(1), &clip);
                self.f.apply_slice(go);
                let hn = h_next
                    .row_mut(b)
                    .into_slice()
                    .expect("owned, standard layout");
                hn.copy_from_slice(cb);
                self.h.apply_slice(hn);
                for (hv, &o) in hn.iter_mut().zip(&*go) {
                    *hv *= o;
                }
                if let Some(y) = out.y.as_mut() {
                    let at = if reverse { len - 1 - t } else { t };
                    y.slice_mut(s![at, b, ..]).assign(&h_next.row(b));
                }
                if t + 1 == len {
                    out.y_h.row_mut(b).assign(&h_next.row(b));
                    out.y_c.row_mut(b).assign(&c.row(b));
                }
            }
            std::mem::swap(&mut h_prev, &mut h_next);
        }
    }
}

/// One gate's pre-activation finished as onnxruntime does: `+ P ⊙ C` (peephole weights and
/// cell state), `+ (Wb + Rb)`, then `clip`.
pub(super) fn finish_gate(
    v: &mut [f32],
    peephole: Option<(&[f32], &[f32])>,
    bias: Option<&[f32]>,
    clip: &Clip<f32>,
) {
    if let Some((p, c)) = peephole {
        for ((v, &c), &p) in v.iter_mut().zip(c).zip(p) {
            *v += c * p;
        }
    }
    if let Some(bias) = bias {
        for (v, &b) in v.iter_mut().zip(bias) {
            *v += b;
        }
    }
    clip.apply_slice(v);
}
