//! Running a PyTorch module: `forward` with PyTorch's shapes over the ONNX-equivalent layers,
//! and the LSTM with projections on its own loop.

use ndarray::{s, Array1, Array2, Array3, ArrayView2, ArrayView3, Axis};

use super::{TorchKind, TorchOutput, TorchRecurrent};
use crate::error::{shape_string, Error, Result};
use crate::gates::{seq_major_y_to_torch, swap_batch_and_seq};
use crate::kernels::{gemm_packed, Float, Init, Packed};
use crate::layer::RunInputs;

impl<T: Float> TorchRecurrent<T> {
    /// Runs the module as PyTorch's `forward` does in eval mode: `input` is `[T, B, I]`
    /// (`[B, T, I]` with `batch_first`), `h0` and `c0` are `[num_layers·D, B, H]` (zeros when
    /// absent; `c0` for LSTM only).
    pub fn forward(
        &self,
        input: ArrayView3<T>,
        h0: Option<ArrayView3<T>>,
        c0: Option<ArrayView3<T>>,
    ) -> Result<TorchOutput<T>> {
        let cfg = &self.config;
        let bf = cfg.batch_first;
        let order = if bf {
            "[batch, seq, input_size]"
        } else {
            "[seq, batch, input_size]"
        };
        if input.dim().2 != self.input_size {
            return Err(Error::Input {
                name: "input".into(),
                message: format!(
                    "expected {order} with input_size {}, found shape {}",
                    self.input_size,
                    shape_string(input.shape())
                ),
            });
        }
        let x = if bf {
            swap_batch_and_seq(input)
        } else {
            input.as_standard_layout().into_owned()
        };
        let (_, batch, _) = x.dim();
        let dirs = cfg.num_directions();
        let h = self.hidden_size;
        let state_shape = [cfg.num_layers * dirs, batch, h];
        // With projections the hidden state is proj_size wide, the cell state hidden_size.
        let h_shape = [cfg.num_layers * dirs, batch, self.proj_size.unwrap_or(h)];
        let check_state =
            |name: &str, s: &Option<ArrayView3<T>>, want: [usize; 3], what: &str| match s {
                Some(s) if s.shape() != want => Err(Error::Input {
                    name: name.into(),
                    message: format!(
                        "expected shape {} ([num_layers·num_directions, batch, {what}]), found {}",
                        shape_string(want),
                        shape_string(s.shape())
                    ),
                }),
                _ => Ok(()),
            };
        let h_what = if self.proj_size.is_some() {
            "proj_size"
        } else {
            "hidden_size"
        };
        check_state("h0", &h0, h_shape, h_what)?;
        check_state("c0", &c0, state_shape, "hidden_size")?;
        let lstm = cfg.kind == TorchKind::Lstm;
        if c0.is_some() && !lstm {
            return Err(Error::Input {
                name: "c0".into(),
                message: format!(
                    "a cell state is for nn.LSTM only, this is {}",
                    cfg.kind.module_name()
                ),
            });
        }

        if self.proj_size.is_some() {
            let (output, h_n, c_n) = self.forward_projected(x, h0, c0, h_shape, state_shape);
            let output = if bf {
                swap_batch_and_seq(output.view())
            } else {
                output
            };
            return Ok(TorchOutput {
                output,
                h_n,
                c_n: Some(c_n),
            });
        }

        let mut h_n = Array3::<T>::zeros(state_shape);
        let mut c_n = lstm.then(|| Array3::<T>::zeros(state_shape));
        let mut x = x;
        for (k, layer) in self.layers.iter().enumerate() {
            let rows = s![k * dirs..(k + 1) * dirs, .., ..];
            let inputs = RunInputs {
                sequence_lens: None,
                initial_h: h0.as_ref().map(|a| a.slice(rows).into_dyn()),
                initial_c: c0.as_ref().map(|a| a.slice(rows).into_dyn()),
                threads: None,
            };
            let out = layer.run(x.view().into_dyn(), inputs, None)?;
            h_n.slice_mut(rows).assign(&out.y_h);
            if let (Some(c_n), Some(y_c)) = (c_n.as_mut(), out.y_c.as_ref()) {
                c_n.slice_mut(rows).assign(y_c);
            }
            x = seq_major_y_to_torch(out.y.view());
        }
        let output = if bf { swap_batch_and_seq(x.view()) } else { x };
        Ok(TorchOutput { output, h_n, c_n })
    }

    /// [`TorchRecurrent::forward`] of an LSTM with projections, sequence-first: `x` is
    /// `[T, B, I]`, shapes checked. Returns `output` `[T, B, D·P]`, `h_n`, `c_n`.
    fn forward_projected(
        &self,
        x: Array3<T>,
        h0: Option<ArrayView3<T>>,
        c0: Option<ArrayView3<T>>,
        h_shape: [usize; 3],
        c_shape: [usize; 3],
    ) -> (Array3<T>, Array3<T>, Array3<T>) {
        let (t_len, batch, _) = x.dim();
        let p = h_shape[2];
        let dirs = self.config.num_directions();
        let mut h_n = Array3::<T>::zeros(h_shape);
        let mut c_n = Array3::<T>::zeros(c_shape);
        let mut x = x;
        for (k, layer) in self.projected.iter().enumerate() {
            let mut y = Array3::<T>::zeros((t_len, batch, dirs * p));
            for (d, dir) in layer.dirs.iter().enumerate() {
                let row = k * dirs + d;
                let h = h0.as_ref().map_or_else(
                    || Array2::zeros((batch, p)),
                    |h0| h0.index_axis(Axis(0), row).to_owned(),
                );
                let c = c0.as_ref().map_or_else(
                    || Array2::zeros((batch, self.hidden_size)),
                    |c0| c0.index_axis(Axis(0), row).to_owned(),
                );
                let y_d = y.slice_mut(s![.., .., d * p..(d + 1) * p]);
                let (h, c) = dir.run(x.view(), h, c, d == 1, y_d);
                h_n.index_axis_mut(Axis(0), row).assign(&h);
                c_n.index_axis_mut(Axis(0), row).assign(&c);
            }
            x = y;
        }
        (x, h_n, c_n)
    }
}

/// One layer of an LSTM with projections: one [`ProjectedDir`] per direction.
#[derive(Debug, Clone)]
pub(super) struct ProjectedLayer<T> {
    pub(super) dirs: Vec<ProjectedDir<T>>,
}

/// One direction of an LSTM layer with projections, as PyTorch computes it (gates in
/// PyTorch's order i, f, g, o):
///
/// ```text
/// gates = x_t·W_ihᵀ + b_ih + b_hh + h_{t-1}·W_hhᵀ      (h is proj_size wide)
/// c_t   = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)             (c is hidden_size wide)
/// h_t   = (σ(o) ⊙ tanh(c_t))·W_hrᵀ                     (the projection)
/// ```
///
/// Each product runs on the cells' packed kernel ([`gemm_packed`]): the input projection of
/// the whole sequence at once, then per step the recurrent product and the projection.
#[derive(Debug, Clone)]
pub(super) struct ProjectedDir<T> {
    /// W_ihᵀ `[input, 4·hidden]`.
    pub(super) w_ih: Packed<T>,
    /// W_hhᵀ `[proj, 4·hidden]`.
    pub(super) w_hh: Packed<T>,
    /// W_hrᵀ `[hidden, proj]`.
    pub(super) w_hr: Packed<T>,
    /// `b_ih + b_hh` (zeros without biases), `[4·hidden]`.
    pub(super) bias: Array1<T>,
}

impl<T: Float> ProjectedDir<T> {
    /// From PyTorch's `weight_ih` `[4H, I]`, `weight_hh` `[4H, P]`, `weight_hr` `[P, H]`.
    pub(super) fn new(
        w_ih: ArrayView2<T>,
        w_hh: ArrayView2<T>,
        w_hr: ArrayView2<T>,
        bias: Array1<T>,
    ) -> ProjectedDir<T> {
        ProjectedDir {
            w_ih: Packed::pack(w_ih.t()),
            w_hh: Packed::pack(w_hh.t()),
            w_hr: Packed::pack(w_hr.t()),
            bias,
        }
    }

    /// Runs over `x` (`[T, B, I]`, backwards when `reverse`) from `h` `[B, P]` and `c`
    /// `[B, H]`, writing each step's `h` into `y` (`[T, B, P]`); returns the last `h` and `c`.
    pub(super) fn run(
        &self,
        x: ArrayView3<T>,
        mut h: Array2<T>,
        mut c: Array2<T>,
        reverse: bool,
        mut y: ndarray::ArrayViewMut3<T>,
    ) -> (Array2<T>, Array2<T>) {
        let (t_len, batch, input) = x.dim();
        let hs = self.w_hr.rows();
        let (p, width) = (self.w_hr.cols(), 4 * hs);
        let x = x.as_standard_layout();
        let x = x.as_slice().expect("standard layout");
        let bias = self.bias.as_slice().expect("owned, contiguous");
        let mut gx = vec![T::zero(); t_len * batch * width];
        gemm_packed(
            t_len * batch,
            x,
            input,
            &self.w_ih,
            &mut gx,
            width,
            Init::Row(bias),
        );
        let mut gates = vec![T::zero(); batch * width];
        let mut m = vec![T::zero(); batch * hs];
        let h_rows = h.as_slice_mut().expect("owned, standard layout");
        let c_rows = c.as_slice_mut().expect("owned, standard layout");
        for step in 0..t_len {
            let t = if reverse { t_len - 1 - step } else { step };
            let gx_t = &gx[t * batch * width..(t + 1) * batch * width];
            gemm_packed(
                batch,
                h_rows,
                p,
                &self.w_hh,
                &mut gates,
                width,
                Init::Rows(gx_t, width),
            );
            for ((row, c_b), m_b) in gates
                .chunks_exact_mut(width)
                .zip(c_rows.chunks_exact_mut(hs))
                .zip(m.chunks_exact_mut(hs))
            {
                let (gi, rest) = row.split_at_mut(hs);
                let (gf, rest) = rest.split_at_mut(hs);
                let (gg, go) = rest.split_at_mut(hs);
                T::sigmoid_slice(gi);
                T::sigmoid_slice(gf);
                T::tanh_slice(gg);
                T::sigmoid_slice(go);
                for (((cv, &i), &f), &g) in c_b.iter_mut().zip(&*gi).zip(&*gf).zip(&*gg) {
                    *cv = f * *cv + i * g;
                }
                m_b.copy_from_slice(c_b);
                T::tanh_slice(m_b);
                for (mv, &o) in m_b.iter_mut().zip(&*go) {
                    *mv = o * *mv;
                }
            }
            gemm_packed(batch, &m, hs, &self.w_hr, h_rows, p, Init::Zero);
            y.index_axis_mut(Axis(0), t)
                .assign(&ArrayView2::from_shape((batch, p), &*h_rows).expect("[batch, proj] rows"));
        }
        (h, c)
    }
}
