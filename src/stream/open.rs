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

/// Where no input axis reaches a recurrent node's time axis: a symbolic input axis that the
/// analysis follows to a node that changes its length or mixes its steps, said as the refusal
/// of that node. Every input carrying the axis's symbol is followed with it (a second input
/// `dvec[batch, d]` beside `x[batch, time, f]`). The axis most likely to be the time axis is
/// tried first, so that the refusal is about time, not about the batch: see [`axis_rank`].
pub(super) fn length_changing_node(typed: &TypedModel) -> Option<String> {
    use crate::passes::time_axis::analyse;
    let inputs = typed.input_outlets().ok()?.to_vec();
    let shapes: Vec<ShapeFact> = inputs
        .iter()
        .map(|o| typed.outlet_fact(*o).map(|f| f.shape.clone()))
        .collect::<TractResult<_>>()
        .ok()?;
    let signs = Signs::of(typed);
    let mut candidates: Vec<(usize, usize, usize, Symbol)> = vec![];
    for (ix, shape) in shapes.iter().enumerate() {
        for (axis, dim) in shape.iter().enumerate() {
            let TDim::Sym(sym) = dim else { continue };
            if candidates.iter().any(|c| c.3 == *sym) {
                continue;
            }
            if let Some(rank) = axis_rank(&signs, &shapes, sym) {
                candidates.push((rank, ix, axis, sym.clone()));
            }
        }
    }
    candidates.sort_by_key(|c| (c.0, c.1, c.2));
    for (_, ix, axis, sym) in candidates {
        let followed: Vec<(usize, usize)> = shapes
            .iter()
            .enumerate()
            .filter_map(|(i, shape)| match axes_of(shape, &sym)[..] {
                [a] => Some((i, a)),
                _ => None,
            })
            .collect();
        if let Ok(Err(refusal)) = analyse(typed, &followed, &sym) {
            return Some(format!(
                "the time axis cannot be found whole: input '{}' axis {axis} ({sym}) \
                 does not reach a recurrent node's time axis unchanged: {refusal}",
                typed.node(inputs[ix].node).name
            ));
        }
    }
    None
}

/// How likely the input dimension `sym` is the time axis, lower first, by every sign the graph
/// and its names give; `None` for a batch axis the graph shows (the batch axis a recurrent
/// node's X reaches, or `sym` in the batch dimension of a recurrent node's X):
/// 0. `sym` is in the time dimension of a recurrent node's X (`time - 2` after a convolution);
/// 1. its name says time (`time`, `seq_len`, `frames`, `T`...);
/// 2. nothing says;
/// 3. its name says batch (`batch`, `batch_size`, `N`...), or it is the one dimension that
///    every input (two or more) has once, as a batch is.
fn axis_rank(signs: &Signs, shapes: &[ShapeFact], sym: &Symbol) -> Option<usize> {
    let whole = TDim::Sym(sym.clone());
    let at_batch_axis = signs
        .batch_axes
        .iter()
        .zip(shapes)
        .any(|(a, shape)| a.is_some_and(|a| shape[a] == whole));
    let in_time = signs.x_time.iter().any(|d| d.symbols().contains(sym));
    let in_batch = signs.x_batch.iter().any(|d| d.symbols().contains(sym));
    if at_batch_axis || (in_batch && !in_time) {
        return None;
    }
    if in_time {
        return Some(0);
    }
    let name = sym.to_string().to_lowercase();
    let says = |words: &[&str], exact: &[&str]| {
        words.iter().any(|w| name.contains(w)) || exact.contains(&name.as_str())
    };
    if says(&["time", "seq", "len", "frame", "step"], &["t", "l", "s"]) {
        return Some(1);
    }
    let ranked: Vec<&ShapeFact> = shapes.iter().filter(|s| s.rank() > 0).collect();
    let once_everywhere = |s: &Symbol| ranked.iter().all(|shape| axes_of(shape, s).len() == 1);
    let shared: Vec<&Symbol> = ranked
        .first()
        .map(|first| {
            first
                .iter()
                .filter_map(|d| match d {
                    TDim::Sym(s) if once_everywhere(s) => Some(s),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let the_shared_one = ranked.len() >= 2 && shared == [sym];
    if says(&["batch"], &["n", "b", "bs", "bsz", "nb"]) || the_shared_one {
        return Some(3);
    }
    Some(2)
}

/// What the graph shows of time and batch: the batch axes the recurrent nodes' X reach, and
/// the time and batch dimensions of those X.
struct Signs {
    batch_axes: Vec<Option<usize>>,
    x_time: Vec<TDim>,
    x_batch: Vec<TDim>,
}

impl Signs {
    fn of(typed: &TypedModel) -> Signs {
        use crate::passes::time_axis::{find_batch_axes, recurrent_xs, seq_axis};
        let mut signs = Signs {
            batch_axes: find_batch_axes(typed).unwrap_or_default(),
            x_time: vec![],
            x_batch: vec![],
        };
        for (x, layout) in recurrent_xs(typed) {
            if let Ok(fact) = typed.outlet_fact(x) {
                if fact.rank() == 3 {
                    let t = seq_axis(layout);
                    signs.x_time.push(fact.shape[t].clone());
                    signs.x_batch.push(fact.shape[1 - t].clone());
                }
            }
        }
        signs
    }
}

/// The axes of `shape` that are the symbol `sym`.
fn axes_of(shape: &ShapeFact, sym: &Symbol) -> Vec<usize> {
    let whole = TDim::Sym(sym.clone());
    (0..shape.rank()).filter(|&a| shape[a] == whole).collect()
}
