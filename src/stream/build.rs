//! A stream's graph: typed with the chunk length free, analysed, its carried values made explicit.

use super::*;

impl Stream {
    /// Types the graph with the time axis free and the stream-start inputs as given, the
    /// time inputs' other dimensions as declared or, with `chunk`, as in these tensors; then
    /// analyses it and makes its states explicit.
    pub(super) fn build(&self, chunk: Option<&[Tensor]>) -> std::result::Result<Built, Building> {
        self.build_batched(chunk, None).map(|(built, _)| built)
    }

    /// [`Stream::build`], with, for a pool of streams, the batch axis of each model input
    /// (time inputs and stream-start inputs) made the symbol [`POOL_BATCH`], returned too.
    pub(crate) fn build_batched(
        &self,
        chunk: Option<&[Tensor]>,
        batch_axes: Option<&[Option<usize>]>,
    ) -> std::result::Result<(Built, Option<Symbol>), Building> {
        let untyped = |e: anyhow::Error| Building::Untyped(chain_message(&e));
        let model = &self.model;
        let mut inference = InferenceModel::clone(&model.inference);
        let seq = inference.symbols.sym(STREAM_SEQ);
        let batch = batch_axes.map(|_| inference.symbols.sym(POOL_BATCH));
        let batched = |ix: usize, mut shape: TVec<TDim>| -> TVec<TDim> {
            if let (Some(axes), Some(b)) = (batch_axes, &batch) {
                if let Some(axis) = axes[ix] {
                    shape[axis] = b.clone().into();
                }
            }
            shape
        };
        let mut exported_lengths = vec![];
        let mut start_fed = vec![];
        let outlets = inference.input_outlets().map_err(untyped)?.to_vec();
        for (k, &ix) in self.start_inputs.iter().enumerate() {
            let t = &self.start[k];
            if crate::passes::specialize::scalar_integer(t).is_some() {
                let value = Arc::new(t.clone());
                inference.node_mut(outlets[ix].node).op =
                    Box::new(tract_core::ops::konst::Const::new(value).map_err(untyped)?);
                inference
                    .set_outlet_fact(outlets[ix], InferenceFact::from(t.clone()))
                    .map_err(untyped)?;
            } else {
                let shape = batched(ix, t.shape().iter().map(|&d| d.to_dim()).collect());
                inference
                    .set_input_fact(ix, InferenceFact::dt_shape(t.datum_type(), shape))
                    .map_err(untyped)?;
                start_fed.push(k);
            }
        }
        for (k, &ix) in self.time_inputs.iter().enumerate() {
            let axis = self.time_axes[ix].unwrap();
            let info = &model.inputs()[ix];
            if let Dim::Fixed(n) = info.shape[axis] {
                exported_lengths.push(n as i64);
            }
            let shape: TVec<TDim> = match chunk {
                Some(chunk) => chunk[k].shape().iter().map(|&d| d.to_dim()).collect(),
                None => info
                    .shape
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => Ok(n.to_dim()),
                        Dim::Symbol(name) if name == "?" => {
                            Ok(inference.symbols.new_with_prefix("unnamed").into())
                        }
                        Dim::Symbol(name) => inference.symbols.parse_tdim(name),
                    })
                    .collect::<TractResult<_>>()
                    .map_err(untyped)?,
            };
            let mut shape = batched(ix, shape);
            shape[axis] = seq.clone().into();
            inference
                .set_input_fact(ix, InferenceFact::dt_shape(info.dtype, shape))
                .map_err(untyped)?;
        }
        free_reshape_lengths(&mut inference, &exported_lengths).map_err(untyped)?;
        crate::passes::tdim::symbolic_shape_casts(&mut inference).map_err(untyped)?;
        // The typed graph's inputs: the time inputs, then the start inputs not folded.
        let fed: Vec<usize> = self
            .time_inputs
            .iter()
            .copied()
            .chain(start_fed.iter().map(|&k| self.start_inputs[k]))
            .collect();
        inference.inputs = fed.iter().map(|&ix| outlets[ix]).collect();
        let typed = without_panics(|| type_for_analysis(inference))
            .map_err(|p| Building::Untyped(format!("tract failed while typing ({p})")))?
            .map_err(|e| {
                let text = chain_message(&e);
                // A strided or reversed time axis fails to type whatever the chunks' other
                // dimensions: that is final, not a matter of the shapes declared.
                if text.contains("with strides are not supported") {
                    Building::Refused(crate::refusal::plain(&text, "time"))
                } else {
                    Building::Untyped(crate::refusal::plain(&text, "time"))
                }
            })?;
        let time: Vec<(usize, usize)> = self
            .time_inputs
            .iter()
            .enumerate()
            .map(|(k, &ix)| (k, self.time_axes[ix].unwrap()))
            .collect();
        let streamable = analyse(&typed, &time, &seq)
            .map_err(untyped)?
            .map_err(|refusal| Building::Refused(refusal.to_string()))?;
        let n_time = self.time_inputs.len();
        let graph = explicit_states(
            &typed,
            &streamable,
            &(0..n_time).collect::<Vec<_>>(),
            &(n_time..fed.len()).collect::<Vec<_>>(),
            &seq,
        )
        .map_err(|e| Building::Refused(chain_message(&e)))?;
        let outputs = graph
            .output_flows
            .iter()
            .map(|f| match f {
                Flow::Step(axis) => StreamOutput::PerStep { axis: *axis },
                _ => StreamOutput::Final,
            })
            .collect();
        Ok((
            Built {
                graph,
                start_fed,
                outputs,
            },
            batch,
        ))
    }
}

/// Types a stream's graph for the time-axis analysis: constants folded and the recurrent
/// nodes' weights prepared, but nothing else rewritten, so that nodes keep their ONNX names
/// and ops their meaning (tract's clean-up merges slices, folds pads into convolutions and
/// renames nodes after their neighbours).
pub(crate) fn type_for_analysis(mut inference: InferenceModel) -> TractResult<TypedModel> {
    crate::passes::channel_pools::free_channel_pools(&mut inference)?;
    let mut typed = inference.into_typed()?;
    crate::passes::tdim::int64_for_tdim_less_ops(&mut typed)?;
    crate::passes::names::check(&typed, "int64 for TopK")?;
    typed.prop_consts()?;
    let recurrent: Vec<usize> = typed
        .nodes()
        .iter()
        .filter(|n| n.op_is::<crate::op::NativeRecurrent>())
        .map(|n| n.id)
        .collect();
    for id in recurrent {
        let node = typed.node(id).clone();
        if let Some(patch) = node.op.declutter(&typed, &node)? {
            patch.apply(&mut typed)?;
        }
    }
    Ok(typed)
}

/// PyTorch's dynamo exporter, without `dynamic_shapes`, writes the sequence length into
/// Reshape targets (`[320, 1, 192]` after a GRU), which then refuse any other length. An entry
/// equal to an exported length, the only such entry in its target and with no `-1` beside it,
/// becomes `-1`: the same reshape at the exported length (the volume fixes it), and the one
/// that follows the sequence at others. Targets shared with other ops, or ambiguous ones
/// (the length appearing twice), are left alone, and typing then refuses the stream.
pub(crate) fn free_reshape_lengths(model: &mut InferenceModel, lengths: &[i64]) -> TractResult<()> {
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
