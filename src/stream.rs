//! Streaming: run a model a chunk of time steps at a time, the recurrent states kept inside
//! the library between calls.
//!
//! The stream is a second plan of the same graph in which (1) the sequence axis of every input
//! that reaches a recurrent node's X is a free symbol, so chunks of any length fit even when
//! the model was exported with a fixed length, and (2) the recurrent ops keep their final
//! states in the session and start the next chunk from them.

use std::sync::Arc;

use tract_core::axes::full_axis_tracking;
use tract_hir::internal::*;

use crate::attrs::{Direction, Layout};
use crate::error::{chain_message, Error, Result};
use crate::model::{check_inputs, describe_io, optimize, without_panics, IoInfo, Model};
use crate::op::NativeRecurrent;

/// A model being fed a sequence chunk by chunk. Made by [`Model::stream`].
#[derive(Debug)]
pub struct Stream {
    plan: Arc<TypedSimplePlan>,
    state: TypedSimpleState,
    inputs: Vec<IoInfo>,
    input_seq_axes: Vec<Option<usize>>,
    output_seq_axes: Vec<Option<usize>>,
}

/// The name given to the free sequence dimension of a stream's inputs.
pub const STREAM_SEQ: &str = "stream_seq";

impl Model {
    /// A stream over this model. Refused, with the node named, when a recurrent node runs
    /// backwards in time (reverse, bidirectional), takes `sequence_lens`, or an op mixes time
    /// steps (a reduction over the sequence axis).
    pub fn stream(&self) -> Result<Stream> {
        let refuse = |m: String| Error::NotStreamable(m);
        let typed = self
            .symbolic_model()
            .map_err(|why| refuse(why.to_string()))?;
        let seq_inputs = sequence_axes(typed).map_err(|e| refuse(chain_message(&e)))?;

        // Re-type with the sequence axes free and the recurrent ops stateful.
        let mut inference = InferenceModel::clone(&self.inference);
        let seq = inference.symbols.sym(STREAM_SEQ);
        let mut exported_lengths = vec![];
        for (ix, axis) in seq_inputs.iter().enumerate() {
            let Some(axis) = *axis else { continue };
            let mut fact = inference
                .input_fact(ix)
                .map_err(|e| refuse(chain_message(&e)))?
                .clone();
            if let Some(n) = fact.shape.dim(axis).and_then(|d| d.concretize()) {
                if let Ok(n) = n.to_i64() {
                    exported_lengths.push(n);
                }
            }
            if let Some(mut shape) = fact.shape.concretize() {
                shape[axis] = seq.clone().into();
                fact = fact.with_shape(ShapeFactoid::from(shape));
            } else {
                fact.shape.set_dim(axis, seq.clone().into());
            }
            inference
                .set_input_fact(ix, fact)
                .map_err(|e| refuse(chain_message(&e)))?;
        }
        free_reshape_lengths(&mut inference, &exported_lengths)
            .map_err(|e| refuse(chain_message(&e)))?;
        let typed = optimize(inference, true, self.threads.as_ref()).map_err(|e| {
            refuse(format!(
                "the graph does not accept a free sequence length ({})",
                chain_message(&e)
            ))
        })?;
        let (mut inputs, outputs) = describe_io(&typed).map_err(|e| refuse(chain_message(&e)))?;
        for (info, named) in inputs.iter_mut().zip(self.inputs()) {
            info.name = named.name.clone();
        }
        let input_seq_axes = seq_inputs;
        let output_seq_axes = outputs
            .iter()
            .map(|o| {
                o.shape.iter().position(
                    |d| matches!(d, crate::model::Dim::Symbol(s) if s.contains(STREAM_SEQ)),
                )
            })
            .collect();
        let plan = SimplePlan::new(typed).map_err(|e| refuse(chain_message(&e)))?;
        let state = plan.spawn().map_err(|e| refuse(chain_message(&e)))?;
        Ok(Stream {
            plan,
            state,
            inputs,
            input_seq_axes,
            output_seq_axes,
        })
    }
}

/// PyTorch's dynamo exporter, without `dynamic_shapes`, writes the sequence length into
/// Reshape targets (`[320, 1, 192]` after a GRU), which then refuse any other length. An entry
/// equal to an exported length, the only such entry in its target and with no `-1` beside it,
/// becomes `-1`: the same reshape at the exported length (the volume fixes it), and the one
/// that follows the sequence at others. Targets shared with other ops, or ambiguous ones
/// (the length appearing twice), are left alone, and re-typing then refuses the stream.
fn free_reshape_lengths(model: &mut InferenceModel, lengths: &[i64]) -> TractResult<()> {
    if lengths.is_empty() {
        return Ok(());
    }
    let targets: Vec<usize> = model
        .nodes()
        .iter()
        .filter(|n| n.op.name() == "Reshape" && n.inputs.len() == 2)
        .map(|n| n.inputs[1].node)
        .collect();
    for id in targets {
        let node = model.node(id);
        let Some(konst) = node.op_as::<tract_core::ops::konst::Const>() else {
            continue;
        };
        let only_reshapes = model
            .outlet_successors(OutletId::new(id, 0))
            .iter()
            .all(|inlet| model.node(inlet.node).op.name() == "Reshape" && inlet.slot == 1);
        let Ok(shape) = konst.val().cast_to::<i64>() else {
            continue;
        };
        let Ok(shape) = shape.try_as_plain_ram().and_then(|t| t.as_slice::<i64>()) else {
            continue;
        };
        let hits: Vec<usize> = (0..shape.len())
            .filter(|&i| lengths.contains(&shape[i]))
            .collect();
        if !only_reshapes || hits.len() != 1 || shape.contains(&-1) || konst.val().rank() != 1 {
            continue;
        }
        let mut freed = shape.to_vec();
        freed[hits[0]] = -1;
        let tensor = tensor1(&freed);
        model.node_mut(id).op = Box::new(tract_core::ops::konst::Const::new(Arc::new(
            tensor.clone(),
        ))?);
        model.set_outlet_fact(OutletId::new(id, 0), InferenceFact::from(tensor))?;
    }
    Ok(())
}

/// For each graph input, the axis that becomes a recurrent node's time axis, after checking
/// that every recurrent node can run forward chunk by chunk.
fn sequence_axes(model: &TypedModel) -> TractResult<Vec<Option<usize>>> {
    let inputs = model.input_outlets()?.to_vec();
    let mut axes: Vec<Option<usize>> = vec![None; inputs.len()];
    let mut found = false;
    // Every axis of every wire, grouped into the sets that tract knows are the same axis.
    let tracks = full_axis_tracking(model)?;
    for node in model.nodes() {
        let Some(op) = node.op_as::<NativeRecurrent>() else {
            continue;
        };
        let spec = op.spec();
        let name = format!("node '{}' ({})", spec.name, spec.op.op_type());
        if spec.direction != Direction::Forward {
            bail!(
                "{name} runs direction '{}': a backward pass needs the whole sequence",
                spec.direction.as_str()
            );
        }
        if spec.slots.sequence_lens.is_some() {
            bail!("{name} takes sequence_lens, which describe whole sequences, not chunks");
        }
        found = true;
        let seq_axis = if spec.layout == Layout::BatchMajor {
            1
        } else {
            0
        };
        let x = node.inputs[0];
        let Some(tracking) = tracks.iter().find(|t| t.outlets.get(&x) == Some(&seq_axis)) else {
            bail!("{name}: its time axis cannot be followed back to the graph's inputs");
        };
        for d in &tracking.destructors {
            let consumer = model.node(d.node);
            if consumer.op_as::<NativeRecurrent>().is_none() {
                bail!(
                    "node '{}' ({}) mixes time steps: it consumes the sequence axis of {name}'s input",
                    consumer.name,
                    consumer.op.name()
                );
            }
        }
        for (ix, input) in inputs.iter().enumerate() {
            if let Some(&axis) = tracking.outlets.get(input) {
                axes[ix] = Some(axis);
            }
        }
    }
    if !found {
        bail!(
            "the model has no RNN, LSTM or GRU node to carry state (PyTorch's dynamo exporter \
             unrolls nn.RNN into fixed-length steps; export with dynamo=False to stream)"
        );
    }
    if axes.iter().all(Option::is_none) {
        bail!("no graph input reaches a recurrent node's time axis");
    }
    Ok(axes)
}

impl Stream {
    /// Runs the next chunk: inputs in graph order, each with any number of time steps along
    /// its sequence axis (see [`Stream::input_seq_axes`]). Inputs without a sequence axis
    /// (initial states) are read on the first chunk after a reset only. Returns the chunk's
    /// outputs.
    pub fn push(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        check_inputs(&self.inputs, &inputs)?;
        let inputs = inputs.into_iter().map(|t| t.into_tvalue()).collect();
        let outputs = without_panics(|| self.state.run(inputs))
            .map_err(|what| Error::Run(format!("tract failed while running the graph ({what})")))?
            .map_err(|e| Error::from_tract(e, Error::Run))?;
        Ok(outputs.into_iter().map(|t| t.into_tensor()).collect())
    }

    /// Runs whole inputs through the stream `chunk` time steps at a time, from a fresh state,
    /// and puts the outputs back together: outputs with a sequence axis are concatenated
    /// along it, the others are the last chunk's. The result equals [`Model::run`]'s.
    pub fn run_chunked(&mut self, inputs: Vec<Tensor>, chunk: usize) -> Result<Vec<Tensor>> {
        check_inputs(&self.inputs, &inputs)?;
        let chunk = chunk.max(1);
        let steps = inputs
            .iter()
            .zip(&self.input_seq_axes)
            .find_map(|(t, a)| a.map(|a| t.shape()[a]))
            .unwrap_or(0);
        self.reset()?;
        let run_err = |e: anyhow::Error| Error::Run(chain_message(&e));
        let mut pieces: Vec<Vec<Tensor>> = vec![];
        let mut start = 0;
        loop {
            let end = (start + chunk).min(steps);
            let part = inputs
                .iter()
                .zip(&self.input_seq_axes)
                .map(|(t, axis)| match axis {
                    Some(a) => t.slice(*a, start, end),
                    None => Ok(t.clone()),
                })
                .collect::<TractResult<Vec<_>>>()
                .map_err(run_err)?;
            let outs = self.push(part)?;
            if pieces.is_empty() {
                pieces = vec![vec![]; outs.len()];
            }
            for (k, o) in outs.into_iter().enumerate() {
                pieces[k].push(o);
            }
            start = end;
            if start >= steps {
                break;
            }
        }
        pieces
            .into_iter()
            .zip(&self.output_seq_axes)
            .map(|(mut parts, axis)| match axis {
                Some(a) => Tensor::stack_tensors(*a, &parts).map_err(run_err),
                None => parts
                    .pop()
                    .ok_or_else(|| Error::Run("no chunk was run".into())),
            })
            .collect()
    }

    /// Forgets the carried states: the next chunk starts a new sequence.
    pub fn reset(&mut self) -> Result<()> {
        self.state = self
            .plan
            .spawn()
            .map_err(|e| Error::Run(chain_message(&e)))?;
        Ok(())
    }

    /// The stream's inputs (the sequence axes are named [`STREAM_SEQ`]).
    pub fn inputs(&self) -> &[IoInfo] {
        &self.inputs
    }

    /// For each input, its sequence axis (None for inputs such as initial states).
    pub fn input_seq_axes(&self) -> &[Option<usize>] {
        &self.input_seq_axes
    }

    /// For each output, its sequence axis: chunks' outputs concatenate along it. Outputs
    /// without one (final states, heads on the last step) hold the latest chunk's value.
    pub fn output_seq_axes(&self) -> &[Option<usize>] {
        &self.output_seq_axes
    }
}
