//! The parsers registered for ONNX `RNN`, `LSTM` and `GRU` in place of tract's, and the
//! inference-time op that checks a node's inputs and wires [`NativeRecurrent`].

use std::sync::Arc;

use tract_hir::internal::*;
use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;

use super::NativeRecurrent;
use crate::attrs::{Layout, NodeSpec, OpKind};
use crate::error::shape_string;
use crate::kernels::WeightFormat;

/// Replaces tract's parsers for `RNN`, `LSTM` and `GRU` with the native ones.
pub fn register(onnx: &mut Onnx) {
    onnx.op_register.insert("RNN", parse_node);
    onnx.op_register.insert("LSTM", parse_node);
    onnx.op_register.insert("GRU", parse_node);
}

fn parse_node(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let spec = NodeSpec::from_node(node, ctx.onnx_operator_set_version)?;
    if spec.slots.output_count() == 0 {
        return Err(spec.error("the node has no outputs").into());
    }
    Ok((
        expand(RecurrentExpansion {
            spec: Arc::new(spec),
        }),
        vec![],
    ))
}

/// The inference-time face of a recurrent node: shape rules, then wiring of [`NativeRecurrent`].
#[derive(Debug, Clone)]
struct RecurrentExpansion {
    spec: Arc<NodeSpec>,
}

impl Expansion for RecurrentExpansion {
    fn name(&self) -> StaticName {
        format!("Native{}", self.spec.op.op_type()).into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.spec.slots.output_count())
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let spec = &self.spec;
        check_input_arity(inputs, spec.slots.input_count())?;
        check_output_arity(outputs, spec.slots.output_count())?;
        let batch_major = spec.layout == Layout::BatchMajor;
        let (seq_ax, batch_ax) = if batch_major { (1, 0) } else { (0, 1) };
        let dirs = spec.direction.num_directions() as i64;
        // Only what the outputs need: shape disagreements among the inputs are reported by
        // the op itself, with messages naming the node and the input.
        let hidden =
            |s: &mut Solver<'r>, dim: &'p tract_hir::infer::rules::DimProxy| -> InferenceResult {
                match spec.hidden_size {
                    Some(h) => s.equals(dim, h.to_dim()),
                    None => s.equals(dim, &inputs[2].shape[2]),
                }
            };
        for o in outputs {
            s.equals(&o.datum_type, &inputs[0].datum_type)?;
        }
        s.equals(&inputs[0].rank, 3)?;
        s.equals(&inputs[2].rank, 3)?;
        if let Some(y) = spec.slots.y {
            let y = &outputs[y];
            s.equals(&y.rank, 4)?;
            let (t, d, b) = if batch_major { (1, 2, 0) } else { (0, 1, 2) };
            s.equals(&y.shape[t], &inputs[0].shape[seq_ax])?;
            s.equals(&y.shape[d], dirs.to_dim())?;
            s.equals(&y.shape[b], &inputs[0].shape[batch_ax])?;
            hidden(s, &y.shape[3])?;
        }
        for slot in [spec.slots.y_h, spec.slots.y_c].into_iter().flatten() {
            let o = &outputs[slot];
            s.equals(&o.rank, 3)?;
            let (d, b) = if batch_major { (1, 0) } else { (0, 1) };
            s.equals(&o.shape[d], dirs.to_dim())?;
            s.equals(&o.shape[b], &inputs[0].shape[batch_ax])?;
            hidden(s, &o.shape[2])?;
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let spec = &self.spec;
        let slots = &spec.slots;
        let x_dt = model.outlet_fact(inputs[0])?.datum_type;
        if !matches!(x_dt, DatumType::F32 | DatumType::F64 | DatumType::F16) {
            return Err(spec
                .error(format!(
                    "input X: expected float32, float64 or float16, found {x_dt:?}"
                ))
                .into());
        }
        let weight_slots: Vec<(&str, usize)> = [
            ("W", Some(1)),
            ("R", Some(2)),
            ("B", slots.b),
            ("P", slots.p),
        ]
        .into_iter()
        .filter_map(|(n, s)| s.map(|s| (n, s)))
        .collect();
        for &(name, slot) in &weight_slots {
            let dt = model.outlet_fact(inputs[slot])?.datum_type;
            if dt != x_dt {
                return Err(spec
                    .error(format!(
                        "input {name}: expected {x_dt:?} like X, found {dt:?}"
                    ))
                    .into());
            }
        }
        for (name, slot) in [
            ("initial_h", slots.initial_h),
            ("initial_c", slots.initial_c),
        ] {
            if let Some(slot) = slot {
                let dt = model.outlet_fact(inputs[slot])?.datum_type;
                if dt != x_dt {
                    return Err(spec
                        .error(format!(
                            "input {name}: expected {x_dt:?} like X, found {dt:?}"
                        ))
                        .into());
                }
            }
        }
        // Exporters have been known to write initial states whose shape contradicts the
        // weights (PyTorch's dynamo export of `LSTM(proj_size=..)`): refuse at load.
        let x_fact = model.outlet_fact(inputs[0])?.clone();
        let r_fact = model.outlet_fact(inputs[2])?.clone();
        let hidden = spec
            .hidden_size
            .map(|h| h.to_dim())
            .or_else(|| r_fact.shape.get(2).cloned());
        let batch_major = spec.layout == Layout::BatchMajor;
        for (name, slot) in [
            ("initial_h", slots.initial_h),
            ("initial_c", slots.initial_c),
        ] {
            let (Some(slot), Some(hidden)) = (slot, hidden.as_ref()) else {
                continue;
            };
            let fact = model.outlet_fact(inputs[slot])?;
            let batch = x_fact.shape.get(if batch_major { 0 } else { 1 });
            let dirs = spec.direction.num_directions().to_dim();
            let want: Vec<Option<TDim>> = if batch_major {
                vec![batch.cloned(), Some(dirs), Some(hidden.clone())]
            } else {
                vec![Some(dirs), batch.cloned(), Some(hidden.clone())]
            };
            let clash = fact.rank() != 3
                || want.iter().zip(fact.shape.iter()).any(|(w, f)| {
                    matches!((w.as_ref().and_then(|w| w.to_i64().ok()), f.to_i64().ok()), (Some(a), Some(b)) if a != b)
                });
            if clash {
                let show = |v: &[Option<TDim>]| {
                    v.iter()
                        .map(|d| d.as_ref().map(|d| d.to_string()).unwrap_or("?".into()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                // PyTorch's nn.LSTM(proj_size=P) keeps the cell state hidden_size wide and
                // projects the hidden state to P: its exports carry an initial_c wider than
                // the node's hidden size (taken from the projected state).
                let c_width = fact.shape.last().and_then(|d| d.to_i64().ok());
                let projected = match (c_width, hidden.to_i64()) {
                    (Some(c), Ok(h)) if name == "initial_c" && spec.op == OpKind::Lstm && c > h => {
                        format!(
                            ". This looks like an export of nn.LSTM(hidden_size={c}, \
                             proj_size={h}): LSTM projections (proj_size) are not expressible \
                             in ONNX's LSTM, so no export of such a module computes PyTorch's \
                             numbers; run its state dict with rnn_run::torch::TorchRecurrent \
                             (which supports proj_size), or use an nn.LSTM without proj_size"
                        )
                    }
                    _ => String::new(),
                };
                return Err(spec
                    .error(format!(
                        "input {name}: shape {} does not fit the node: expected [{}] ({}; hidden size {hidden} from {}; W is {}, R is {}){projected}",
                        shape_string(fact.shape.iter()),
                        show(&want),
                        if batch_major { "[batch, num_directions, hidden]" } else { "[num_directions, batch, hidden]" },
                        if spec.hidden_size.is_some() { "the hidden_size attribute" } else { "R" },
                        shape_string(model.outlet_fact(inputs[1])?.shape.iter()),
                        shape_string(r_fact.shape.iter()),
                    ))
                    .into());
            }
        }
        if let Some(slot) = slots.sequence_lens {
            let dt = model.outlet_fact(inputs[slot])?.datum_type;
            if !dt.is_integer() {
                return Err(spec
                    .error(format!("input sequence_lens: expected int32, found {dt:?}"))
                    .into());
            }
        }

        let op = NativeRecurrent {
            spec: spec.clone(),
            layer: None,
            keep_buffers: false,
            threads: None,
            recurrent_weights: WeightFormat::Full,
            run_built: Default::default(),
        };
        match op.prepared(model, inputs)? {
            Some((prepared, per_run)) => model.wire_node(prefix, prepared, &per_run),
            None => model.wire_node(prefix, op, inputs),
        }
    }
}
