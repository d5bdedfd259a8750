//! A quantized LSTM's constant part: the integer weights packed per direction, their scales,
//! bias, peepholes and gate functions, built once and shared between plans.

use std::sync::Arc;

use tract_hir::internal::*;

use super::int_gemm::IntMatrix;
use super::mlas;
use super::parse::QuantSpec;
use crate::attrs::Activation;
use crate::cells::activation::Act;
use crate::error::{shape_string, NodeError};
use crate::shared::{SharedBuilds, Tensors};

/// One direction's constant part.
#[derive(Debug, Clone)]
pub(super) struct DirWeights {
    pub(super) w: IntMatrix,
    pub(super) r: IntMatrix,
    /// One scale (per tensor) or 4·hidden (per column).
    pub(super) w_scale: Vec<f32>,
    pub(super) r_scale: Vec<f32>,
    /// `Wb + Rb`, `[4·hidden]`, gates i, o, f, c.
    pub(super) bias: Option<Vec<f32>>,
    /// Peepholes `[Pi, Po, Pf]`.
    pub(super) p: Option<Vec<f32>>,
    pub(super) f: GateAct,
    pub(super) g: GateAct,
    pub(super) h: GateAct,
}

/// An activation as onnxruntime's LSTM applies it: MLAS's logistic and tanh for `Sigmoid`
/// and `Tanh` ([`mlas`]), the crate's functions for the others.
#[derive(Debug, Clone, Copy)]
pub(super) enum GateAct {
    Logistic,
    Tanh,
    Other(Act<f32>),
}

impl GateAct {
    pub(super) fn new(a: Activation) -> GateAct {
        match a {
            Activation::Sigmoid => GateAct::Logistic,
            Activation::Tanh => GateAct::Tanh,
            other => GateAct::Other(Act::new(other)),
        }
    }

    pub(super) fn apply_slice(&self, xs: &mut [f32]) {
        match self {
            GateAct::Logistic => mlas::logistic_slice(xs),
            GateAct::Tanh => mlas::tanh_slice(xs),
            GateAct::Other(a) => a.apply_slice(xs),
        }
    }
}

/// A node's weights, ready to run.
#[derive(Debug, Clone)]
pub(super) struct QuantWeights {
    pub(super) input: usize,
    pub(super) dirs: Vec<DirWeights>,
}

impl QuantWeights {
    /// From the node's constant (or per-run) tensors, after checking their types, shapes and
    /// zero points; `x_input` is X's input size when known.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build(
        spec: &QuantSpec,
        x_input: Option<usize>,
        w: &Tensor,
        r: &Tensor,
        b: Option<&Tensor>,
        p: Option<&Tensor>,
        w_scale: &Tensor,
        w_zp: &Tensor,
        r_scale: &Tensor,
        r_zp: &Tensor,
    ) -> Result<QuantWeights, NodeError> {
        let dirs = spec.dirs();
        let h = spec.hidden;
        let g = 4 * h;
        let expect = |name: &str, t: &Tensor, want: &[usize], what: &str| {
            if t.shape() == want {
                Ok(())
            } else {
                Err(spec.error(format!(
                    "input {name}: expected shape {} ({what}), found {}",
                    shape_string(want),
                    shape_string(t.shape())
                )))
            }
        };
        let input = match (x_input, w.shape()) {
            (Some(i), _) => i,
            (None, &[_, i, _]) => i,
            (None, other) => {
                return Err(spec.error(format!(
                    "input W: expected rank 3 [num_directions, input_size, 4·hidden_size], \
                     found shape {}",
                    shape_string(other)
                )))
            }
        };
        let from = format!(
            "direction '{}', hidden_size {h}",
            spec.lstm.direction.as_str()
        );
        expect(
            "W",
            w,
            &[dirs, input, g],
            &format!("[num_directions, input_size, 4·hidden_size]: {from}"),
        )?;
        expect(
            "R",
            r,
            &[dirs, h, g],
            &format!("[num_directions, hidden_size, 4·hidden_size]: {from}"),
        )?;
        if let Some(b) = b {
            expect("B", b, &[dirs, 8 * h], "[num_directions, 8·hidden_size]")?;
        }
        if let Some(p) = p {
            expect("P", p, &[dirs, 3 * h], "[num_directions, 3·hidden_size]")?;
        }
        let floats = |name: &str, t: &Tensor| -> Result<Vec<f32>, NodeError> {
            let view = t
                .to_plain_array_view::<f32>()
                .map_err(|e| spec.error(format!("input {name}: {e}")))?;
            Ok(view.iter().copied().collect())
        };
        let ints = |name: &str, t: &Tensor| -> Result<Vec<i16>, NodeError> {
            let fail = |e: TractError| spec.error(format!("input {name}: {e}"));
            Ok(match t.datum_type() {
                DatumType::I8 => t
                    .to_plain_array_view::<i8>()
                    .map_err(fail)?
                    .iter()
                    .map(|&v| v as i16)
                    .collect(),
                DatumType::U8 => t
                    .to_plain_array_view::<u8>()
                    .map_err(fail)?
                    .iter()
                    .map(|&v| v as i16)
                    .collect(),
                other => {
                    return Err(spec.error(format!(
                        "input {name}: expected int8 or uint8, found {other:?}"
                    )))
                }
            })
        };
        // Scale and zero point of one direction, as onnxruntime picks them.
        let quant = |which: &str,
                     scale: &Tensor,
                     zp: &Tensor,
                     signed: bool|
         -> Result<Vec<(Vec<f32>, i16)>, NodeError> {
            let (sname, zname) = (format!("{which}_scale"), format!("{which}_zero_point"));
            let per_column = |t: &Tensor, name: &str| match t.shape() {
                [d] if *d == dirs => Ok(false),
                [d, n] if *d == dirs && *n == g => Ok(true),
                other => Err(spec.error(format!(
                    "input {name}: expected shape [{dirs}] (per tensor) or [{dirs}, {g}] (per \
                     column: num_directions, 4·hidden_size), found {}",
                    shape_string(other)
                ))),
            };
            let scale_cols = per_column(scale, &sname)?;
            let zp_cols = per_column(zp, &zname)?;
            let scales = floats(&sname, scale)?;
            let zps = ints(&zname, zp)?;
            if zp_cols {
                if signed && zps.iter().any(|&z| z != 0) {
                    return Err(spec.error(format!(
                        "input {zname}: per-column zero points of int8 weights must all be 0 \
                         (onnxruntime refuses others), found {:?}",
                        zps.iter().find(|&&z| z != 0).unwrap_or(&0)
                    )));
                }
                if zps.iter().any(|&z| z != zps[0]) {
                    return Err(spec.error(format!(
                        "input {zname}: per-column zero points of uint8 weights must all be \
                         equal (onnxruntime refuses others), found {} and {}",
                        zps[0],
                        zps.iter().find(|&&z| z != zps[0]).unwrap_or(&0)
                    )));
                }
            } else if scale_cols && dirs == 2 {
                return Err(spec.error(format!(
                    "input {zname}: a per-tensor zero point with per-column scales in a \
                     bidirectional node (onnxruntime reads the reverse direction's zero point \
                     past the tensor's end); give {zname} the shape of {sname}"
                )));
            }
            let n = if scale_cols { g } else { 1 };
            Ok((0..dirs)
                .map(|d| {
                    // onnxruntime offsets the zero point by the scale's length per direction.
                    let z = if zp_cols { zps[0] } else { zps[d] };
                    (scales[d * n..(d + 1) * n].to_vec(), z)
                })
                .collect())
        };
        let signed = w.datum_type() == DatumType::I8;
        let wq = quant("W", w_scale, w_zp, signed)?;
        let rq = quant("R", r_scale, r_zp, r.datum_type() == DatumType::I8)?;
        let w_all = ints("W", w)?;
        let r_all = ints("R", r)?;
        let b_all = b.map(|b| floats("B", b)).transpose()?;
        let p_all = p.map(|p| floats("P", p)).transpose()?;
        let matrix = |all: &[i16], d: usize, k: usize, zp: i16| {
            let centered: Vec<i16> = all[d * k * g..(d + 1) * k * g]
                .iter()
                .map(|&v| v - zp)
                .collect();
            IntMatrix::new(k, g, &centered)
        };
        let dir_weights = (0..dirs)
            .map(|d| {
                let acts = spec.lstm.activations_of(d);
                DirWeights {
                    w: matrix(&w_all, d, input, wq[d].1),
                    r: matrix(&r_all, d, h, rq[d].1),
                    w_scale: wq[d].0.clone(),
                    r_scale: rq[d].0.clone(),
                    bias: b_all.as_ref().map(|b| {
                        let b = &b[d * 8 * h..(d + 1) * 8 * h];
                        (0..g).map(|j| b[j] + b[g + j]).collect()
                    }),
                    p: p_all
                        .as_ref()
                        .map(|p| p[d * 3 * h..(d + 1) * 3 * h].to_vec()),
                    f: GateAct::new(acts[0]),
                    g: GateAct::new(acts[1]),
                    h: GateAct::new(acts[2]),
                }
            })
            .collect();
        Ok(QuantWeights {
            input,
            dirs: dir_weights,
        })
    }
}

/// Packed weights shared by every plan holding the same constant tensors (see
/// [`crate::shared`]), keyed by the node and X's input size.
pub(super) static WEIGHTS: SharedBuilds<(Arc<QuantSpec>, Option<usize>), QuantWeights> =
    SharedBuilds::new();

/// The packed weights for these constant tensors (W, R, B, P, W_scale, W_zero_point,
/// R_scale, R_zero_point), built once.
pub(super) fn shared_weights(
    spec: &Arc<QuantSpec>,
    x_input: Option<usize>,
    tensors: Tensors,
) -> TractResult<Arc<QuantWeights>> {
    WEIGHTS.get_or_build(
        (spec.clone(), x_input),
        tensors,
        |(spec, x_input), tensors| {
            let get = |i: usize| tensors[i].as_deref();
            Ok(QuantWeights::build(
                spec,
                *x_input,
                get(0).context("W")?,
                get(1).context("R")?,
                get(2),
                get(3),
                get(4).context("W_scale")?,
                get(5).context("W_zero_point")?,
                get(6).context("R_scale")?,
                get(7).context("R_zero_point")?,
            )?)
        },
    )
}
