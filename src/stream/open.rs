//! Opening a stream: the time axes found (or given), the graph checked before the first push.

use super::*;

impl Model {
    /// A stream over a model whose inputs all have a time axis. See [`Model::stream_from`].
    pub fn stream(&self) -> Result<Stream> {
        self.stream_with(&StreamOptions::default(), vec![])
    }

    /// A stream over this model. `start` holds the inputs without a time axis (initial
    /// states, a sample rate), in the model's input order; they hold for the whole stream.
    /// Each [`Stream::push`] then takes the inputs with a time axis.
    ///
    /// Refused, with the node named, when the model cannot be cut into chunks exactly: a
    /// recurrent node running backward or taking `sequence_lens`, a reduction, pooling or
    /// softmax over time, a read of a step other than the last, a convolution that looks
    /// ahead, an op not known to keep time steps apart.
    pub fn stream_from(&self, start: Vec<Tensor>) -> Result<Stream> {
        self.stream_with(&StreamOptions::default(), start)
    }

    /// [`Model::stream_from`] with options.
    pub fn stream_with(&self, options: &StreamOptions, start: Vec<Tensor>) -> Result<Stream> {
        let refuse = |m: String| Error::NotStreamable(m);
        let time_axes = match &options.time_axes {
            Some(axes) => {
                if axes.len() != self.inputs().len() {
                    return Err(refuse(format!(
                        "time_axes names {} inputs, the model has {}",
                        axes.len(),
                        self.inputs().len()
                    )));
                }
                axes.clone()
            }
            None => self.time_axes()?,
        };
        let time_inputs: Vec<usize> = (0..time_axes.len())
            .filter(|&i| time_axes[i].is_some())
            .collect();
        let start_inputs: Vec<usize> = (0..time_axes.len())
            .filter(|&i| time_axes[i].is_none())
            .collect();
        if time_inputs.is_empty() {
            return Err(refuse("no input has a time axis".into()));
        }
        let start_infos: Vec<IoInfo> = start_inputs
            .iter()
            .map(|&i| self.inputs()[i].clone())
            .collect();
        if start.len() != start_infos.len() {
            return Err(Error::Input {
                name: start_infos
                    .get(start.len())
                    .map(|i| i.name.clone())
                    .unwrap_or_default(),
                message: format!(
                    "a stream over this model takes at its start {}, found {}; \
                     the others ({}) are pushed chunk by chunk",
                    IoInfo::counted(&start_infos, "input"),
                    start.len(),
                    time_inputs
                        .iter()
                        .map(|&i| self.inputs()[i].name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        check_inputs(&start_infos, &start)?;
        for (ix, axis) in time_axes.iter().enumerate() {
            if let Some(axis) = axis {
                if *axis >= self.inputs()[ix].shape.len() {
                    return Err(refuse(format!(
                        "input '{}' has no axis {axis}",
                        self.inputs()[ix].name
                    )));
                }
            }
        }
        let pushed = time_inputs
            .iter()
            .map(|&i| {
                let mut info = self.inputs()[i].clone();
                info.shape[time_axes[i].unwrap()] = Dim::Symbol(STREAM_SEQ.into());
                info
            })
            .collect();
        let stream = Stream {
            model: self.clone(),
            time_axes,
            time_inputs,
            start_inputs,
            start,
            pushed,
            graph: None,
            chunk_shapes: None,
            plans: VecDeque::new(),
            session: None,
            states: None,
            pushes: 0,
        };
        // An early look with the chunks' other dimensions as declared, so that a model that
        // mixes time steps is refused now. The graph that runs is built at the first push,
        // with those dimensions as the chunks have them: ONNX semantics can depend on them
        // (a `Squeeze` without axes drops a batch of 1, not a symbolic batch).
        if let Err(Building::Refused(why)) = stream.build(None) {
            return Err(refuse(why));
        }
        Ok(stream)
    }

    /// For each input, the time axis a stream would use (see [`StreamOptions::time_axes`]).
    pub fn time_axes(&self) -> Result<Vec<Option<usize>>> {
        self.find_time_axes(None)
    }

    /// The time axes, followed on the graph typed with its declared shapes or, when tract
    /// cannot type it so, specialized to `inputs` (or to probe shapes without them); then
    /// extended to inputs whose declared time dimension has the same name.
    pub(super) fn find_time_axes(&self, inputs: Option<&[Tensor]>) -> Result<Vec<Option<usize>>> {
        let refuse = |m: String| Error::NotStreamable(m);
        if self.recurrent_nodes().is_empty() {
            return Err(refuse(
                "the model has no RNN, LSTM or GRU node to carry state between chunks (an \
                 exporter may have unrolled the recurrence into per-step ops, as PyTorch's \
                 dynamo exporter does with nn.RNN: export with dynamo=False to stream)"
                    .into(),
            ));
        }
        let typed = match (self.symbolic_for_streams(), inputs) {
            (Ok(typed), _) => typed.into_owned(),
            (Err(why), Some(inputs)) => {
                let (model, _) =
                    crate::passes::specialize::specialize(&self.inference, inputs, true)
                        .map_err(|e| refuse(chain_message(&e)))?;
                without_panics(|| crate::model::type_graph(model, &Default::default()))
                    .map_err(|p| refuse(format!("tract failed while typing the graph ({p})")))?
                    .map_err(|e| {
                        refuse(format!(
                            "the time axis cannot be found: the graph does not type for these \
                             inputs: {} (with its declared shapes: {})",
                            crate::refusal::plain(&chain_message(&e), "time"),
                            crate::refusal::plain(why, "time")
                        ))
                    })?
            }
            (Err(why), None) => self.probe_model().map_err(|e| {
                refuse(format!(
                    "the time axis cannot be found: the graph types only for actual input \
                     shapes ({}; with probe shapes: {}); give the time axes with \
                     StreamOptions::time_axes (on the command line: --time-axis \
                     INPUT=AXIS), or start the stream from actual inputs",
                    crate::refusal::plain(why, "time"),
                    crate::refusal::plain(&chain_message(&e), "time")
                ))
            })?,
        };
        // With scalar inputs folded, the typed graph may take fewer inputs: map by name.
        let found = find_time_axes(&typed).map_err(|e| refuse(chain_message(&e)))?;
        let typed_inputs = typed
            .input_outlets()
            .map_err(|e| refuse(chain_message(&e)))?;
        let mut axes: Vec<Option<usize>> = self
            .inputs()
            .iter()
            .map(|info| {
                typed_inputs
                    .iter()
                    .position(|o| typed.node(o.node).name == info.name)
                    .and_then(|k| found.get(k).copied().flatten())
            })
            .collect();
        // Tracking stops at ops whose axes do not map one to one (a convolution over time):
        // an input declaring the same named length as a time input has its time axis there
        // too (a second input `y[batch, time, c]` beside `x[batch, time, f]`).
        let named: Vec<&str> = axes
            .iter()
            .zip(self.inputs())
            .filter_map(|(a, info)| match &info.shape[(*a)?] {
                Dim::Symbol(name) if name != "?" => Some(name.as_str()),
                _ => None,
            })
            .collect();
        for (axis, info) in axes.iter_mut().zip(self.inputs()) {
            if axis.is_none() {
                let same: Vec<usize> = (0..info.shape.len())
                    .filter(|&a| matches!(&info.shape[a], Dim::Symbol(n) if named.contains(&n.as_str())))
                    .collect();
                if let [a] = same[..] {
                    *axis = Some(a);
                }
            }
        }
        if axes.iter().all(Option::is_none) {
            // The graph did not type with its declared dimensions free because an op mixes
            // the steps of one of them (a flip): that is the answer.
            if let Err(why) = self.symbolic_for_streams() {
                if let Some(plain) = crate::refusal::mixes_steps(why, "time (or batch)") {
                    return Err(refuse(plain));
                }
            }
            // A fixed-length export: try its axes.
            let (found, considered) = super::fixed_length::find(&self.inference, self.inputs());
            match found {
                Some((ix, axis)) => axes[ix] = Some(axis),
                None => {
                    if let Some(why) = length_changing_node(&typed) {
                        return Err(refuse(why));
                    }
                    return Err(refuse(format!(
                        "the time axis cannot be found: no input axis becomes a recurrent \
                         node's time axis (considered: {}). Name it with \
                         StreamOptions::time_axes (on the command line: --time-axis \
                         INPUT=AXIS). A model that takes one frame per call and carries its \
                         state through its inputs and outputs (Silero VAD) does not stream: \
                         run it with Model::run, feeding the state back, or pool it with \
                         PoolOptions::feedback (--feedback IN=OUT)",
                        if considered.is_empty() {
                            "no input has an axis of fixed size above 1".to_string()
                        } else {
                            considered.join(", ")
                        }
                    )));
                }
            }
        }
        Ok(axes)
    }

    /// The graph typed with its declared shapes, every unknown dimension given a distinct
    /// small size: enough to follow the time axis when symbolic dimensions defeat typing.
    pub(super) fn probe_model(&self) -> TractResult<TypedModel> {
        let mut model = InferenceModel::clone(&self.inference);
        let primes = [3usize, 5, 7, 11, 13, 17, 19, 23, 29, 31];
        let mut names: Vec<String> = vec![];
        let mut unnamed = 0;
        for (ix, info) in self.inputs().iter().enumerate() {
            let shape: TVec<usize> = info
                .shape
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Symbol(name) => {
                        let k = if name == "?" {
                            unnamed += 1;
                            names.len() + unnamed
                        } else {
                            names.iter().position(|n| n == name).unwrap_or_else(|| {
                                names.push(name.clone());
                                names.len() - 1
                            })
                        };
                        primes[k % primes.len()]
                    }
                })
                .collect();
            model.set_input_fact(ix, InferenceFact::dt_shape(info.dtype, shape))?;
        }
        crate::model::type_graph(model, &Default::default())
    }
}

impl Model {
    /// The graph typed with its declared (symbolic) shapes, for finding time and batch axes:
    /// [`Model::symbolic_model`], or where tract could not type that, the graph typed as a
    /// stream types it (with [`crate::passes::channel_pools`]: a pool whose channel axis is a
    /// free dimension).
    pub(crate) fn symbolic_for_streams(
        &self,
    ) -> std::result::Result<std::borrow::Cow<'_, TypedModel>, &str> {
        match self.symbolic_model() {
            Ok(typed) => Ok(std::borrow::Cow::Borrowed(typed)),
            Err(why) => {
                without_panics(|| type_for_analysis(InferenceModel::clone(&self.inference)))
                    .ok()
                    .and_then(|t| t.ok())
                    .map(std::borrow::Cow::Owned)
                    .ok_or(why)
            }
        }
    }
}

/// Where no input axis reaches a recurrent node's time axis: the first symbolic input axis
/// (not a batch axis) that the analysis follows to a node that changes its length or mixes its
/// steps (a pooling over time), said as the refusal of that node.
pub(super) fn length_changing_node(typed: &TypedModel) -> Option<String> {
    use crate::passes::time_axis::{analyse, find_batch_axes};
    let batch = find_batch_axes(typed).ok()?;
    for (ix, outlet) in typed.input_outlets().ok()?.iter().enumerate() {
        let fact = typed.outlet_fact(*outlet).ok()?;
        for (axis, dim) in fact.shape.iter().enumerate() {
            let TDim::Sym(sym) = dim else { continue };
            if batch.get(ix).copied().flatten() == Some(axis) {
                continue;
            }
            if let Ok(Err(refusal)) = analyse(typed, &[(ix, axis)], sym) {
                return Some(format!(
                    "the time axis cannot be found whole: input '{}' axis {axis} ({sym}) \
                     does not reach a recurrent node's time axis unchanged: {refusal}",
                    typed.node(outlet.node).name
                ));
            }
        }
    }
    None
}
