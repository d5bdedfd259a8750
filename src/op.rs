//! The tract op: parsers registered for `RNN`, `LSTM` and `GRU` that replace tract's own, and
//! the typed op that evaluates a node on the native cells.
//!
//! Constant weights (the usual case, and the case after tract folds weight-computing nodes)
//! are turned into cells once, when the graph is typed, and the op then takes only X and the
//! per-run inputs. Weights that are still computed at run time are turned into cells per run.

use std::sync::Arc;

use tract_hir::internal::*;
use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;

use crate::attrs::{Layout, NodeSpec, OpKind};
use crate::error::shape_string;
use crate::kernels::{Float, WeightFormat};
use crate::layer::{Carry as LayerCarry, Layer, OutputViews, RunInputs, Threads};
use crate::shared::{SharedBuilds, Tensors};

/// Replaces tract's parsers for `RNN`, `LSTM` and `GRU` with the native ones.
pub fn register(onnx: &mut Onnx) {
    onnx.op_register.insert("RNN", parse_node);
    onnx.op_register.insert("LSTM", parse_node);
    onnx.op_register.insert("GRU", parse_node);
    crate::qlstm::register(onnx);
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
        };
        match op.prepared(model, inputs)? {
            Some((prepared, per_run)) => model.wire_node(prefix, prepared, &per_run),
            None => model.wire_node(prefix, op, inputs),
        }
    }
}

/// A [`Layer`] in the model's element type. Half precision runs in `f32`.
#[derive(Debug)]
pub(crate) enum AnyLayer {
    F32(Layer<f32>),
    F64(Layer<f64>),
}

impl AnyLayer {
    fn build(
        spec: &NodeSpec,
        dt: DatumType,
        w: &Tensor,
        r: &Tensor,
        b: Option<&Tensor>,
        p: Option<&Tensor>,
        recurrent: WeightFormat,
    ) -> TractResult<AnyLayer> {
        fn make<T: Float + Datum>(
            spec: &NodeSpec,
            w: &Tensor,
            r: &Tensor,
            b: Option<&Tensor>,
            p: Option<&Tensor>,
            recurrent: WeightFormat,
        ) -> TractResult<Layer<T>> {
            let w = w.cast_to::<T>()?;
            let r = r.cast_to::<T>()?;
            let b = b.map(|b| b.cast_to::<T>()).transpose()?;
            let p = p.map(|p| p.cast_to::<T>()).transpose()?;
            Ok(Layer::from_onnx_with(
                spec,
                w.to_plain_array_view::<T>()?,
                r.to_plain_array_view::<T>()?,
                b.as_ref()
                    .map(|b| b.to_plain_array_view::<T>())
                    .transpose()?,
                p.as_ref()
                    .map(|p| p.to_plain_array_view::<T>())
                    .transpose()?,
                recurrent,
            )?)
        }
        Ok(match dt {
            DatumType::F64 => AnyLayer::F64(make::<f64>(spec, w, r, b, p, recurrent)?),
            _ => AnyLayer::F32(make::<f32>(spec, w, r, b, p, recurrent)?),
        })
    }

    pub(crate) fn hidden_size(&self) -> usize {
        match self {
            AnyLayer::F32(l) => l.hidden_size(),
            AnyLayer::F64(l) => l.hidden_size(),
        }
    }
}

/// What the cells of a node depend on besides its weight tensors.
#[derive(Clone, PartialEq)]
struct LayerKey {
    spec: Arc<NodeSpec>,
    dt: DatumType,
    recurrent: WeightFormat,
}

/// Cells built from constant weights (W, R, B, P), shared by every plan holding the same
/// tensors (see [`crate::shared`]).
static LAYERS: SharedBuilds<LayerKey, AnyLayer> = SharedBuilds::new();

/// The cells for these weights (W, R, B, P) with Rᵀ stored as `recurrent`, built once.
fn shared_layer(
    spec: &Arc<NodeSpec>,
    dt: DatumType,
    weights: Tensors,
    recurrent: WeightFormat,
) -> TractResult<Arc<AnyLayer>> {
    let key = LayerKey {
        spec: spec.clone(),
        dt,
        recurrent,
    };
    LAYERS.get_or_build(key, weights, |key, weights| {
        let get = |i: usize| weights.get(i).and_then(|t| t.as_deref());
        AnyLayer::build(
            &key.spec,
            key.dt,
            get(0).context("W")?,
            get(1).context("R")?,
            get(2),
            get(3),
            key.recurrent,
        )
    })
}

/// What a streaming op carries between calls, in the layer's element type.
#[derive(Debug, Clone, Default)]
pub(crate) enum Carry {
    #[default]
    Empty,
    F32(LayerCarry<f32>),
    F64(LayerCarry<f64>),
}

/// Moving a stream's carry in and out of [`Carry`] for one element type.
trait Carried: Float + Datum {
    /// Takes the carry out, leaving it empty (no copy per call).
    fn take(carry: &mut Carry) -> LayerCarry<Self>;
    fn carry(layer_carry: LayerCarry<Self>) -> Carry;
}

impl Carried for f32 {
    fn take(carry: &mut Carry) -> LayerCarry<f32> {
        match std::mem::take(carry) {
            Carry::F32(c) => c,
            _ => LayerCarry::default(),
        }
    }
    fn carry(layer_carry: LayerCarry<f32>) -> Carry {
        Carry::F32(layer_carry)
    }
}

impl Carried for f64 {
    fn take(carry: &mut Carry) -> LayerCarry<f64> {
        match std::mem::take(carry) {
            Carry::F64(c) => c,
            _ => LayerCarry::default(),
        }
    }
    fn carry(layer_carry: LayerCarry<f64>) -> Carry {
        Carry::F64(layer_carry)
    }
}

/// The typed op: one recurrent node evaluated by the native cells.
#[derive(Debug, Clone)]
pub struct NativeRecurrent {
    spec: Arc<NodeSpec>,
    /// Cells built from constant weights; `None` when the weights arrive as inputs.
    layer: Option<Arc<AnyLayer>>,
    /// Keep the time loop's buffers in the session from one call to the next (a stream's
    /// plan, run once per chunk); the states always come from the inputs.
    pub(crate) keep_buffers: bool,
    /// Worker threads, when the model was loaded with more than one.
    pub(crate) threads: Option<Arc<Threads>>,
    /// How the cells store Rᵀ ([`LoadOptions::recurrent_weights`](crate::LoadOptions)).
    recurrent_weights: WeightFormat,
}

impl PartialEq for NativeRecurrent {
    fn eq(&self, other: &Self) -> bool {
        let same_layer = match (&self.layer, &other.layer) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let same_threads = match (&self.threads, &other.threads) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.spec == other.spec
            && same_layer
            && self.recurrent_weights == other.recurrent_weights
            && self.keep_buffers == other.keep_buffers
            && same_threads
    }
}
impl Eq for NativeRecurrent {}

impl NativeRecurrent {
    /// The node's description.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// Whether the weights were constant and the cells built at load.
    pub fn weights_prepared(&self) -> bool {
        self.layer.is_some()
    }

    /// The same node taking its initial states as inputs and giving its final states as
    /// outputs, whether or not the model's node does: a stream feeds each chunk the states
    /// the last one ended with. Only for a node whose weights were prepared at load.
    pub(crate) fn with_state_io(&self) -> TractResult<NativeRecurrent> {
        ensure!(
            self.layer.is_some(),
            "the weights of {} are not prepared",
            self.spec.name
        );
        let mut spec = NodeSpec::clone(&self.spec);
        let lstm = spec.op == OpKind::Lstm;
        spec.slots = spec.slots.with_states(lstm);
        Ok(NativeRecurrent {
            spec: Arc::new(spec),
            keep_buffers: true,
            ..self.clone()
        })
    }

    /// The same node with Rᵀ stored as `format`: prepared cells are rebuilt from the
    /// weights they were made of (and shared with every other plan asking the same).
    pub(crate) fn with_recurrent_weights(&self, format: WeightFormat) -> TractResult<Self> {
        let layer = match &self.layer {
            Some(layer) if format != self.recurrent_weights => {
                let (key, weights) = LAYERS
                    .origin(layer)
                    .context("the weights of a prepared layer are not registered")?;
                Some(shared_layer(&self.spec, key.dt, weights, format)?)
            }
            other => other.clone(),
        };
        Ok(NativeRecurrent {
            layer,
            recurrent_weights: format,
            ..self.clone()
        })
    }

    /// The type of its states (initial_h, Y_h...) for an X of type `x`.
    pub(crate) fn state_fact(&self, x: &TypedFact) -> TractResult<TypedFact> {
        let batch_major = self.spec.layout == Layout::BatchMajor;
        let batch = x.shape[if batch_major { 0 } else { 1 }].clone();
        let hidden = self
            .layer
            .as_ref()
            .map(|l| l.hidden_size())
            .context("weights not prepared")?
            .to_dim();
        let dirs = self.spec.direction.num_directions().to_dim();
        let shape: TVec<TDim> = if batch_major {
            tvec![batch, dirs, hidden]
        } else {
            tvec![dirs, batch, hidden]
        };
        Ok(x.datum_type.fact(&*shape))
    }

    /// Positions of (X, sequence_lens, initial_h, initial_c) among the inputs the op takes
    /// once its weights are prepared.
    pub(crate) fn run_input_positions(
        &self,
    ) -> (usize, Option<usize>, Option<usize>, Option<usize>) {
        self.input_positions()
    }

    /// When every weight input (W, R, and B, P if present) is a constant, the same op with
    /// its cells built once, and the inputs it still takes per run (X, sequence_lens,
    /// initial_h, initial_c).
    fn prepared(
        &self,
        model: &TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<Option<(NativeRecurrent, TVec<OutletId>)>> {
        if self.layer.is_some() {
            return Ok(None);
        }
        let slots = &self.spec.slots;
        let konst = |slot: Option<usize>| -> TractResult<Option<Arc<Tensor>>> {
            match slot {
                None => Ok(None),
                Some(s) => Ok(model.outlet_fact(inputs[s])?.konst.clone()),
            }
        };
        let (Some(w), Some(r)) = (konst(Some(1))?, konst(Some(2))?) else {
            return Ok(None);
        };
        let b = konst(slots.b)?;
        let p = konst(slots.p)?;
        if (slots.b.is_some() && b.is_none()) || (slots.p.is_some() && p.is_none()) {
            return Ok(None);
        }
        let x_dt = model.outlet_fact(inputs[0])?.datum_type;
        let layer = shared_layer(
            &self.spec,
            x_dt,
            vec![Some(w), Some(r), b, p],
            self.recurrent_weights,
        )?;
        let per_run = [
            Some(0),
            slots.sequence_lens,
            slots.initial_h,
            slots.initial_c,
        ];
        let op = NativeRecurrent {
            layer: Some(layer),
            ..self.clone()
        };
        Ok(Some((
            op,
            per_run.into_iter().flatten().map(|s| inputs[s]).collect(),
        )))
    }

    /// Positions of (X, sequence_lens, initial_h, initial_c) among this op's inputs, and of
    /// the weights when they are inputs.
    fn input_positions(&self) -> (usize, Option<usize>, Option<usize>, Option<usize>) {
        let slots = &self.spec.slots;
        if self.layer.is_none() {
            return (0, slots.sequence_lens, slots.initial_h, slots.initial_c);
        }
        let mut next = 1;
        let mut take = |present: Option<usize>| {
            present.map(|_| {
                next += 1;
                next - 1
            })
        };
        let sl = take(slots.sequence_lens);
        let h0 = take(slots.initial_h);
        let c0 = take(slots.initial_c);
        (0, sl, h0, c0)
    }

    fn evaluate(
        &self,
        inputs: TVec<TValue>,
        carry: Option<&mut Carry>,
    ) -> TractResult<TVec<TValue>> {
        let built;
        let layer: &AnyLayer = match &self.layer {
            Some(l) => l,
            None => {
                let slots = &self.spec.slots;
                let get = |s: Option<usize>| s.map(|s| &*inputs[s]);
                built = AnyLayer::build(
                    &self.spec,
                    inputs[0].datum_type(),
                    &inputs[1],
                    &inputs[2],
                    get(slots.b),
                    get(slots.p),
                    self.recurrent_weights,
                )?;
                &built
            }
        };
        let (x_ix, sl_ix, h0_ix, c0_ix) = self.input_positions();
        let lens = match sl_ix {
            Some(i) => Some(inputs[i].cast_to::<i64>()?.into_owned()),
            None => None,
        };
        let lens = match &lens {
            Some(t) => Some(t.try_as_plain_ram()?.as_slice::<i64>()?.to_vec()),
            None => None,
        };
        let x_dt = inputs[x_ix].datum_type();

        /// Runs the layer in its element type, carrying states when streaming, and returns
        /// the node's requested outputs.
        fn go<T: Carried>(
            op: &NativeRecurrent,
            layer: &Layer<T>,
            inputs: &TVec<TValue>,
            (x_ix, h0_ix, c0_ix): (usize, Option<usize>, Option<usize>),
            lens: Option<&[i64]>,
            carry: Option<&mut Carry>,
        ) -> TractResult<TVec<Tensor>> {
            let x = inputs[x_ix].cast_to::<T>()?;
            let h0 = h0_ix.map(|i| inputs[i].cast_to::<T>()).transpose()?;
            let c0 = c0_ix.map(|i| inputs[i].cast_to::<T>()).transpose()?;
            let run = RunInputs {
                sequence_lens: lens,
                initial_h: h0
                    .as_ref()
                    .map(|t| t.to_plain_array_view::<T>())
                    .transpose()?,
                initial_c: c0
                    .as_ref()
                    .map(|t| t.to_plain_array_view::<T>())
                    .transpose()?,
                threads: op.threads.as_deref(),
            };
            // The outputs are made as tract tensors and the cells write into them: no copy
            // of Y afterwards, and nothing made for an output the node does not have.
            let x = x.to_plain_array_view::<T>()?;
            let (y_shape, state_shape) = layer.output_shapes(x.shape())?;
            let slots = &op.spec.slots;
            let make = |present: bool, shape: &[usize]| {
                present.then(|| Tensor::zero::<T>(shape)).transpose()
            };
            let mut y = make(slots.y.is_some(), &y_shape)?;
            let mut y_h = make(slots.y_h.is_some(), &state_shape)?;
            let lstm = op.spec.op == OpKind::Lstm;
            let mut y_c = make(lstm && slots.y_c.is_some(), &state_shape)?;
            fn view<T: Datum, D: ndarray::Dimension>(
                t: Option<&mut Tensor>,
            ) -> TractResult<Option<ndarray::ArrayViewMut<'_, T, D>>> {
                t.map(|t| Ok(t.to_plain_array_view_mut::<T>()?.into_dimensionality()?))
                    .transpose()
            }
            let views = OutputViews {
                y: view(y.as_mut())?,
                y_h: view(y_h.as_mut())?,
                y_c: view(y_c.as_mut())?,
            };
            let mut carry = carry;
            let mut kept = carry.as_deref_mut().map(T::take).unwrap_or_default();
            let o = layer.run_into(x, run, carry.is_some().then_some(&mut kept), views);
            // Put the states back even when the run was refused, so a bad chunk does not
            // lose the stream's place.
            if let Some(c) = carry {
                *c = T::carry(kept);
            }
            o?;
            Ok(op.collect(y, y_h, y_c))
        }
        let ix = (x_ix, h0_ix, c0_ix);
        let mut outs = match layer {
            AnyLayer::F32(l) => go(self, l, &inputs, ix, lens.as_deref(), carry)?,
            AnyLayer::F64(l) => go(self, l, &inputs, ix, lens.as_deref(), carry)?,
        };
        if x_dt == DatumType::F16 {
            for t in outs.iter_mut() {
                *t = t.cast_to::<f16>()?.into_owned();
            }
        }
        Ok(outs.into_iter().map(|t| t.into_tvalue()).collect())
    }

    /// The requested outputs, in the node's output order (the slots number the present
    /// outputs in ONNX's order, Y, Y_h, Y_c).
    fn collect(&self, y: Option<Tensor>, y_h: Option<Tensor>, y_c: Option<Tensor>) -> TVec<Tensor> {
        let slots = &self.spec.slots;
        [(slots.y, y), (slots.y_h, y_h), (slots.y_c, y_c)]
            .into_iter()
            .filter_map(|(slot, t)| slot.and(t))
            .collect()
    }
}

impl Op for NativeRecurrent {
    fn name(&self) -> StaticName {
        format!("Native{}", self.spec.op.op_type()).into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "direction={} layout={:?} hidden={:?} weights={}",
            self.spec.direction.as_str(),
            self.spec.layout,
            self.layer
                .as_ref()
                .map(|l| l.hidden_size())
                .or(self.spec.hidden_size),
            if self.layer.is_some() {
                "prepared"
            } else {
                "inputs"
            }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for NativeRecurrent {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.evaluate(inputs, None)
    }

    op_out_of_plan!();

    fn state(&self, _ctx: &EvalContext) -> TractResult<Option<Box<dyn OpState>>> {
        Ok(self
            .keep_buffers
            .then(|| Box::new(StreamState::default()) as Box<dyn OpState>))
    }
}

/// A stream plan's op memory: the time loop's buffers of the last call.
#[derive(Debug, Clone, Default)]
struct StreamState {
    carry: Carry,
}

impl OpState for StreamState {
    fn eval(
        &mut self,
        _ctx: &EvalContext,
        op: &dyn Op,
        inputs: TVec<TValue>,
    ) -> TractResult<TVec<TValue>> {
        let op = op
            .downcast_ref::<NativeRecurrent>()
            .context("StreamState belongs to NativeRecurrent")?;
        // The states come from the inputs (the stream feeds back the last chunk's): only
        // the buffers are reused.
        match &mut self.carry {
            Carry::F32(c) => c.forget_states(),
            Carry::F64(c) => c.forget_states(),
            Carry::Empty => {}
        }
        op.evaluate(inputs, Some(&mut self.carry))
    }

    fn reset_lanes(&mut self, _lanes: &[LaneId]) -> TractResult<()> {
        self.carry = Carry::Empty;
        Ok(())
    }
}

impl TypedOp for NativeRecurrent {
    as_op!();

    /// Weights computed by nodes (exports without constant folding) become constants once
    /// tract folds them; the cells are then built once, here, instead of on every run.
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

    /// The batch axes of X, the states and the outputs are one; nothing else is.
    ///
    /// tract reads a linked axis as one the node maps entry for entry: it moves slices and
    /// strides (`Downsample`) from the output side to the input side of the node across it.
    /// That holds for the batch, whose entries never meet, and is false for time: a
    /// recurrence reads every earlier step, so a reversing `Slice` of Y moved onto X turned a
    /// forward pass into a reverse one. The time axis is therefore left unlinked (the
    /// time-axis analysis of a stream has its own rule for these nodes).
    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        let mut mapping = AxesMapping::disconnected(inputs, outputs)?;
        if inputs[0].rank() != 3 {
            return Ok(mapping);
        }
        let batch_major = self.spec.layout == Layout::BatchMajor;
        let x_batch = if batch_major { 0 } else { 1 };
        let x = |axis| (InOut::In(0), axis);
        let slots = &self.spec.slots;
        if let Some(y) = slots.y {
            let y_batch = if batch_major { 0 } else { 2 };
            mapping = mapping.linking(x(x_batch), (InOut::Out(y), y_batch))?;
        }
        let state_batch = if batch_major { 0 } else { 1 };
        for slot in [slots.y_h, slots.y_c].into_iter().flatten() {
            if slot < outputs.len() && outputs[slot].rank() == 3 {
                mapping = mapping.linking(x(x_batch), (InOut::Out(slot), state_batch))?;
            }
        }
        let (_, _, h0, c0) = self.input_positions();
        for slot in [h0, c0].into_iter().flatten() {
            if slot < inputs.len() && inputs[slot].rank() == 3 {
                mapping = mapping.linking(x(x_batch), (InOut::In(slot), state_batch))?;
            }
        }
        Ok(mapping)
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
        let batch_major = spec.layout == Layout::BatchMajor;
        let (t, b) = if batch_major {
            (&x.shape[1], &x.shape[0])
        } else {
            (&x.shape[0], &x.shape[1])
        };
        let h: TDim = match (&self.layer, spec.hidden_size) {
            (Some(l), _) => l.hidden_size().to_dim(),
            (None, Some(h)) => h.to_dim(),
            (None, None) => inputs
                .get(2)
                .filter(|r| r.rank() == 3)
                .map(|r| r.shape[2].clone())
                .ok_or_else(|| spec.error("input R: expected rank 3"))?,
        };
        let d = spec.direction.num_directions().to_dim();
        let dt = x.datum_type;
        let y_shape: TVec<TDim> = if batch_major {
            tvec![b.clone(), t.clone(), d.clone(), h.clone()]
        } else {
            tvec![t.clone(), d.clone(), b.clone(), h.clone()]
        };
        let s_shape: TVec<TDim> = if batch_major {
            tvec![b.clone(), d, h]
        } else {
            tvec![d, b.clone(), h]
        };
        let mut facts = tvec![];
        let slots = &spec.slots;
        let mut present: Vec<(usize, TypedFact)> = vec![];
        if let Some(s) = slots.y {
            present.push((s, dt.fact(&*y_shape)));
        }
        if let Some(s) = slots.y_h {
            present.push((s, dt.fact(&*s_shape)));
        }
        if let Some(s) = slots.y_c {
            if spec.op == OpKind::Lstm {
                present.push((s, dt.fact(&*s_shape)));
            }
        }
        present.sort_by_key(|(s, _)| *s);
        facts.extend(present.into_iter().map(|(_, f)| f));
        Ok(facts)
    }
}
