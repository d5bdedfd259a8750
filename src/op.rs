//! The typed op that evaluates one ONNX `RNN`, `LSTM` or `GRU` node on the native cells (the
//! parsers that wire it in [`parse`], its cells in [`layers`], which inputs are its weights in
//! [`slots`]).
//!
//! Constant weights (the usual case, and the case after tract folds weight-computing nodes)
//! are turned into cells once, when the graph is typed, and the op then takes only X and the
//! per-run inputs. Weights that are still computed at run time are turned into cells per run,
//! unless they are the bytes of the previous run's ([`run_built`]).

use std::sync::Arc;

use tract_hir::internal::*;

use crate::attrs::{Layout, NodeSpec, OpKind};
use crate::kernels::WeightFormat;
use crate::layer::{Layer, OutputViews, RunInputs, Threads};

mod layers;
mod parse;
mod run_built;
pub(crate) mod slots;

use layers::{rebuilt_layer, shared_layer, Carried};
pub(crate) use layers::{AnyLayer, Carry};
pub use parse::register;
use run_built::RunBuilt;
use slots::{constant_inputs, per_run_inputs, run_positions};

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
    /// The cells last built from weights given at run time (shared by the op's copies).
    run_built: Arc<RunBuilt>,
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
                Some(rebuilt_layer(&self.spec, layer, format)?)
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
        let weight_slots = [Some(1), Some(2), slots.b, slots.p];
        let Some(weights) = constant_inputs(model, inputs, &weight_slots)? else {
            return Ok(None);
        };
        let x_dt = model.outlet_fact(inputs[0])?.datum_type;
        let layer = shared_layer(&self.spec, x_dt, weights, self.recurrent_weights)?;
        let op = NativeRecurrent {
            layer: Some(layer),
            ..self.clone()
        };
        Ok(Some((op, per_run_inputs(slots, inputs))))
    }

    /// Positions of (X, sequence_lens, initial_h, initial_c) among this op's inputs, and of
    /// the weights when they are inputs.
    fn input_positions(&self) -> (usize, Option<usize>, Option<usize>, Option<usize>) {
        let (sl, h0, c0) = run_positions(&self.spec.slots, self.layer.is_some());
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
                built = self.run_built.get_or_build(
                    &self.spec,
                    inputs[0].datum_type(),
                    [
                        Some(&*inputs[1]),
                        Some(&*inputs[2]),
                        get(slots.b),
                        get(slots.p),
                    ],
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
