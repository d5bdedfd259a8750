//! The typed `DynamicQuantizeLSTM` op: checks the run-time inputs, then runs each direction
//! on the shared (or per-run) weights.

use std::sync::Arc;

use ndarray::{ArrayView3, ArrayViewMut3, Ix3, Ix4};
use tract_hir::internal::*;

use super::kernels::DirOutputs;
use super::parse::QuantSpec;
use super::weights::{shared_weights, QuantWeights};
use super::OP_TYPE;
use crate::attrs::Layout;
use crate::cells::activation::Clip;
use crate::error::shape_string;
use crate::gates::{state_direction, state_direction_mut, y_directions_as_seq_major};
use crate::layer::MAX_TENSOR_BYTES;
use crate::op::slots::{constant_inputs, per_run_inputs, run_positions};

/// The typed op: one `DynamicQuantizeLSTM` node evaluated as onnxruntime does.
#[derive(Debug, Clone)]
pub struct QuantizedLstm {
    pub(super) spec: Arc<QuantSpec>,
    /// Built from constant weights; `None` when they arrive as inputs.
    pub(super) weights: Option<Arc<QuantWeights>>,
}

impl PartialEq for QuantizedLstm {
    fn eq(&self, other: &Self) -> bool {
        let same_weights = match (&self.weights, &other.weights) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.spec == other.spec && same_weights
    }
}
impl Eq for QuantizedLstm {}

impl QuantizedLstm {
    /// The node's description.
    pub fn spec(&self) -> &QuantSpec {
        &self.spec
    }

    /// Whether the weights were constant and prepared at load.
    pub fn weights_prepared(&self) -> bool {
        self.weights.is_some()
    }

    /// Slots of the weight-side inputs: W, R, B, P, W_scale, W_zero_point, R_scale,
    /// R_zero_point.
    pub(super) fn weight_slots(&self) -> [Option<usize>; 8] {
        let slots = &self.spec.lstm.slots;
        let [ws, wz, rs, rz] = self.spec.quant_slots;
        [
            Some(1),
            Some(2),
            slots.b,
            slots.p,
            Some(ws),
            Some(wz),
            Some(rs),
            Some(rz),
        ]
    }

    /// With every weight-side input constant, the same op with its weights built, and the
    /// inputs it still takes per run (X, sequence_lens, initial_h, initial_c).
    pub(super) fn prepared(
        &self,
        model: &TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<Option<(QuantizedLstm, TVec<OutletId>)>> {
        if self.weights.is_some() {
            return Ok(None);
        }
        let Some(consts) = constant_inputs(model, inputs, &self.weight_slots())? else {
            return Ok(None);
        };
        let x_input = model
            .outlet_fact(inputs[0])?
            .shape
            .get(2)
            .and_then(|d| d.to_usize().ok());
        let weights = shared_weights(&self.spec, x_input, consts)?;
        let op = QuantizedLstm {
            weights: Some(weights),
            ..self.clone()
        };
        Ok(Some((op, per_run_inputs(&self.spec.lstm.slots, inputs))))
    }

    /// Positions of (sequence_lens, initial_h, initial_c) among this op's inputs (X is 0).
    pub(super) fn run_positions(&self) -> (Option<usize>, Option<usize>, Option<usize>) {
        run_positions(&self.spec.lstm.slots, self.weights.is_some())
    }

    pub(super) fn evaluate(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let spec = &*self.spec;
        let built;
        let weights: &QuantWeights = match &self.weights {
            Some(w) => w,
            None => {
                let get = |slot: Option<usize>| slot.map(|s| &*inputs[s]);
                let s = self.weight_slots();
                built = QuantWeights::build(
                    spec,
                    inputs[0].shape().get(2).copied(),
                    &inputs[1],
                    &inputs[2],
                    get(s[2]),
                    get(s[3]),
                    &inputs[s[4].expect("W_scale")],
                    &inputs[s[5].expect("W_zero_point")],
                    &inputs[s[6].expect("R_scale")],
                    &inputs[s[7].expect("R_zero_point")],
                )?;
                &built
            }
        };
        let (sl_ix, h0_ix, c0_ix) = self.run_positions();
        let x = inputs[0].to_plain_array_view::<f32>()?;
        let &[t_len, batch, input] = x.shape() else {
            return Err(spec
                .error(format!(
                    "input X: expected rank 3 [seq_length, batch_size, input_size], found shape {}",
                    shape_string(x.shape())
                ))
                .into());
        };
        if input != weights.input {
            return Err(spec
                .error(format!(
                    "input X: expected input size {} (from W), found {input} in shape {}",
                    weights.input,
                    shape_string(x.shape())
                ))
                .into());
        }
        let (dirs, h) = (spec.dirs(), spec.hidden);
        let largest = [dirs * h, 4 * h]
            .iter()
            .map(|&w| {
                [t_len, batch, w, 4]
                    .iter()
                    .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            })
            .try_fold(0u64, |acc, b| b.map(|b| acc.max(b)));
        if largest.is_none_or(|b| b > MAX_TENSOR_BYTES) {
            return Err(spec
                .error(format!(
                    "input X: shape {} asks for more than the {} GiB a tensor may take",
                    shape_string(x.shape()),
                    MAX_TENSOR_BYTES >> 30
                ))
                .into());
        }
        let lens: Vec<usize> = match sl_ix {
            None => vec![t_len; batch],
            Some(i) => {
                let l = inputs[i].cast_to::<i64>()?;
                let l = l.try_as_plain_ram()?.as_slice::<i64>()?.to_vec();
                if l.len() != batch {
                    return Err(spec
                        .error(format!(
                            "input sequence_lens: expected {batch} values (batch size), found {}",
                            l.len()
                        ))
                        .into());
                }
                if let Some((b, &bad)) = l
                    .iter()
                    .enumerate()
                    .find(|(_, &n)| n < 0 || n as u64 > t_len as u64)
                {
                    return Err(spec
                        .error(format!(
                            "input sequence_lens: entry {b} is {bad}, expected 0 ≤ length ≤ \
                             {t_len} (sequence length)"
                        ))
                        .into());
                }
                l.into_iter().map(|n| n as usize).collect()
            }
        };
        let state = |name: &str, ix: Option<usize>| -> TractResult<Option<ArrayView3<f32>>> {
            let Some(i) = ix else { return Ok(None) };
            let v = inputs[i].to_plain_array_view::<f32>()?;
            if v.shape() != [dirs, batch, h] {
                return Err(spec
                    .error(format!(
                        "input {name}: expected shape {} ([num_directions, batch, hidden_size]), \
                         found {}",
                        shape_string([dirs, batch, h]),
                        shape_string(v.shape())
                    ))
                    .into());
            }
            Ok(Some(v.into_dimensionality::<Ix3>()?))
        };
        let h0 = state("initial_h", h0_ix)?;
        let c0 = state("initial_c", c0_ix)?;
        let x = x.into_dimensionality::<Ix3>()?;

        let slots = &spec.lstm.slots;
        let mut y = slots
            .y
            .map(|_| Tensor::zero::<f32>(&[t_len, dirs, batch, h]))
            .transpose()?;
        let mut y_h = Tensor::zero::<f32>(&[dirs, batch, h])?;
        let mut y_c = Tensor::zero::<f32>(&[dirs, batch, h])?;
        {
            let mut y_view = match y.as_mut() {
                Some(t) => Some(
                    t.to_plain_array_view_mut::<f32>()?
                        .into_dimensionality::<Ix4>()?,
                ),
                None => None,
            };
            let mut y_dirs: Vec<Option<ArrayViewMut3<f32>>> = match y_view.as_mut() {
                Some(v) => y_directions_as_seq_major(v, Layout::SeqMajor)
                    .into_iter()
                    .map(Some)
                    .collect(),
                None => (0..dirs).map(|_| None).collect(),
            };
            let mut y_h_view = y_h
                .to_plain_array_view_mut::<f32>()?
                .into_dimensionality::<Ix3>()?;
            let mut y_c_view = y_c
                .to_plain_array_view_mut::<f32>()?
                .into_dimensionality::<Ix3>()?;
            let clip = Clip::new(spec.lstm.clip());
            for (d, dw) in weights.dirs.iter().enumerate() {
                dw.run(
                    x,
                    &lens,
                    spec.lstm.direction.is_reverse(d),
                    h0.map(|s| state_direction(s, Layout::SeqMajor, d)),
                    c0.map(|s| state_direction(s, Layout::SeqMajor, d)),
                    clip,
                    spec.lstm.input_forget,
                    DirOutputs {
                        y: y_dirs[d].take(),
                        y_h: state_direction_mut(y_h_view.view_mut(), Layout::SeqMajor, d),
                        y_c: state_direction_mut(y_c_view.view_mut(), Layout::SeqMajor, d),
                    },
                );
            }
        }
        let outs = [(slots.y, y), (slots.y_h, Some(y_h)), (slots.y_c, Some(y_c))];
        Ok(outs
            .into_iter()
            .filter_map(|(slot, t)| slot.and(t))
            .map(|t| t.into_tvalue())
            .collect())
    }
}

impl Op for QuantizedLstm {
    fn name(&self) -> StaticName {
        format!("Native{OP_TYPE}").into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "direction={} hidden={} weights={}",
            self.spec.lstm.direction.as_str(),
            self.spec.hidden,
            if self.weights.is_some() {
                "prepared"
            } else {
                "inputs"
            }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for QuantizedLstm {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.evaluate(inputs)
    }

    op_out_of_plan!();
}

impl TypedOp for QuantizedLstm {
    as_op!();

    /// Weights computed by nodes become constants once tract folds them; they are then
    /// prepared once, here, instead of on every run.
    fn declutter(
        &self,
        model: &TypedModel,
        node: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        let Some((op, per_run)) = self.prepared(model, &node.inputs)? else {
            return Ok(None);
        };
        Ok(Some(TypedModelPatch::replace_single_op(
            model, node, &per_run, op,
        )?))
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let spec = &self.spec;
        let x = inputs[0];
        if x.rank() != 3 {
            return Err(spec
                .error(format!(
                    "input X: expected rank 3, found shape {:?}",
                    x.shape
                ))
                .into());
        }
        let (t, b) = (&x.shape[0], &x.shape[1]);
        let d = spec.dirs().to_dim();
        let h = spec.hidden.to_dim();
        let slots = &spec.lstm.slots;
        let mut present: Vec<(usize, TypedFact)> = vec![];
        if let Some(s) = slots.y {
            let shape = tvec![t.clone(), d.clone(), b.clone(), h.clone()];
            present.push((s, f32::fact(&*shape)));
        }
        for s in [slots.y_h, slots.y_c].into_iter().flatten() {
            let shape = tvec![d.clone(), b.clone(), h.clone()];
            present.push((s, f32::fact(&*shape)));
        }
        present.sort_by_key(|(s, _)| *s);
        Ok(present.into_iter().map(|(_, f)| f).collect())
    }
}
