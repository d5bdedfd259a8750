//! Streaming: run a model a chunk of time steps at a time, everything carried between chunks
//! (recurrent states, a causal convolution's last frames) kept by the stream.
//!
//! A stream is accepted only where the time-axis analysis (`src/passes/time_axis.rs`)
//! proves that the chunked run equals the whole run; everything else is refused with the node
//! named. The stream then runs a copy of the graph in which every carried value is an explicit
//! input and output (`src/passes/state_io.rs`), planned per chunk shape: so chunks of any
//! length fit, even on a model exported with a fixed length.

use std::collections::VecDeque;
use std::sync::Arc;

use tract_hir::internal::*;

use crate::error::{chain_message, shape_string, Error, Result};
use crate::model::{check_inputs, optimize_typed, without_panics, Dim, IoInfo, Model};
use crate::passes::state_io::{explicit_states, StateStart, StreamGraph};
use crate::passes::time_axis::{analyse, find_time_axes, Flow};

/// The name of the symbol that stands for a chunk's length while a stream's graph is typed.
pub const STREAM_SEQ: &str = "stream_seq";

/// The name of the symbol that stands for the number of streams a pool runs in one step.
pub const POOL_BATCH: &str = "pool_batch";

/// Stream plans kept per stream (one per chunk shape seen lately).
const STREAM_PLANS: usize = 4;

/// Options for [`Model::stream_with`].
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    /// For each model input, its time axis, or `None` for an input given once at the start
    /// of the stream (initial states, a sample rate). By default the time axis is found from
    /// the graph: the axis that becomes a recurrent node's time axis.
    pub time_axes: Option<Vec<Option<usize>>>,
}

/// What a stream output holds after each push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutput {
    /// One entry per step of the chunk along this axis: concatenating the pushes' outputs
    /// gives the whole run's.
    PerStep {
        /// The time axis.
        axis: usize,
    },
    /// The value after the chunk's last step (a final state, a read of the last step): the
    /// last push's is the whole run's.
    Final,
}

/// A model being fed a sequence chunk by chunk. Made by [`Model::stream`],
/// [`Model::stream_from`] or [`Model::stream_with`].
#[derive(Debug)]
pub struct Stream {
    model: Model,
    time_axes: Vec<Option<usize>>,
    /// The model's inputs split: those with a time axis, pushed; the others, given once.
    time_inputs: Vec<usize>,
    start_inputs: Vec<usize>,
    /// The stream-start values, in `start_inputs` order.
    start: Vec<Tensor>,
    /// What `push` takes: the time inputs, their time axis free.
    pushed: Vec<IoInfo>,
    /// The graph with explicit states, built at the first push for the chunks' shape (all
    /// but the time axis).
    graph: Option<Arc<Built>>,
    /// The shape of the first chunk, the time axis aside: later chunks must agree.
    chunk_shapes: Option<Vec<Vec<usize>>>,
    plans: VecDeque<(Vec<Vec<usize>>, Arc<StreamPlan>)>,
    /// The session of the last plan used (its ops keep buffers between chunks).
    session: Option<(Arc<StreamPlan>, TypedSimpleState)>,
    /// The carried values, once the first chunk ran.
    states: Option<Vec<TValue>>,
    pushes: usize,
}

/// A stream's graph, and which stream-start inputs it takes (scalar integers, such as a
/// sample rate, are folded into it as constants).
#[derive(Debug)]
pub(crate) struct Built {
    pub graph: StreamGraph,
    pub start_fed: Vec<usize>,
    pub outputs: Vec<StreamOutput>,
}

/// A stream's graph planned for one chunk shape.
#[derive(Debug)]
struct StreamPlan {
    plan: Arc<TypedSimplePlan>,
    /// Computes the states' first values, when some are computed.
    start: Option<Arc<TypedSimplePlan>>,
    /// The states' concrete types, for the zeros they start from.
    state_facts: Vec<TypedFact>,
}

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
            let names: Vec<&str> = start_infos.iter().map(|i| i.name.as_str()).collect();
            return Err(Error::Input {
                name: names.get(start.len()).unwrap_or(&"").to_string(),
                message: format!(
                    "a stream over this model takes {} input{} at its start ({}), found {}; \
                     the others ({}) are pushed chunk by chunk",
                    start_infos.len(),
                    if start_infos.len() == 1 { "" } else { "s" },
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    },
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
    fn find_time_axes(&self, inputs: Option<&[Tensor]>) -> Result<Vec<Option<usize>>> {
        let refuse = |m: String| Error::NotStreamable(m);
        if self.recurrent_nodes().is_empty() {
            return Err(refuse(
                "the model has no RNN, LSTM or GRU node to carry state between chunks (an \
                 exporter may have unrolled the recurrence into per-step ops, as PyTorch's \
                 dynamo exporter does with nn.RNN: export with dynamo=False to stream)"
                    .into(),
            ));
        }
        let typed = match (self.symbolic_model(), inputs) {
            (Ok(typed), _) => typed.clone(),
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
            if let Err(why) = self.symbolic_model() {
                if let Some(plain) = crate::refusal::mixes_steps(why, "time (or batch)") {
                    return Err(refuse(plain));
                }
            }
            // A fixed-length export: try its axes.
            let (found, considered) =
                crate::passes::fixed_length::find(&self.inference, self.inputs());
            match found {
                Some((ix, axis)) => axes[ix] = Some(axis),
                None => {
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
    fn probe_model(&self) -> TractResult<TypedModel> {
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

/// Why a stream's graph was not built.
pub(crate) enum Building {
    /// The analysis refused it (final).
    Refused(String),
    /// tract could not type it with these shapes.
    Untyped(String),
}

impl Stream {
    /// Types the graph with the time axis free and the stream-start inputs as given, the
    /// time inputs' other dimensions as declared or, with `chunk`, as in these tensors; then
    /// analyses it and makes its states explicit.
    fn build(&self, chunk: Option<&[Tensor]>) -> std::result::Result<Built, Building> {
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

    /// Runs the next chunk: the inputs with a time axis (see [`Stream::time_inputs`]), in
    /// the model's input order, each with the same number (one or more) of time steps.
    /// Returns the chunk's outputs: per-step outputs for its steps, final ones after its
    /// last step (see [`Stream::outputs`]).
    pub fn push(&mut self, chunk: Vec<Tensor>) -> Result<Vec<Tensor>> {
        check_inputs(&self.pushed, &chunk).map_err(|e| match e {
            Error::Input { name, message } if chunk.len() != self.pushed.len() => Error::Input {
                name,
                message: format!(
                    "{message}: a push takes the inputs with a time axis; the others were \
                     given when the stream started"
                ),
            },
            e => e,
        })?;
        let mut steps = None;
        for (k, t) in chunk.iter().enumerate() {
            let axis = self.time_axes[self.time_inputs[k]].unwrap();
            let n = t.shape()[axis];
            let name = &self.pushed[k].name;
            if n == 0 {
                return Err(Error::Input {
                    name: name.clone(),
                    message: "a push needs at least one time step".into(),
                });
            }
            match steps {
                None => steps = Some(n),
                Some(m) if m != n => {
                    return Err(Error::Input {
                        name: name.clone(),
                        message: format!(
                            "{n} time steps along axis {axis}, but '{}' has {m}: the time \
                             inputs of a chunk must have the same length",
                            self.pushed[0].name
                        ),
                    })
                }
                _ => {}
            }
        }
        let shapes: Vec<Vec<usize>> = chunk
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let mut shape = t.shape().to_vec();
                shape[self.time_axes[self.time_inputs[k]].unwrap()] = 0;
                shape
            })
            .collect();
        if let Some(first) = &self.chunk_shapes {
            if let Some(k) = (0..shapes.len()).find(|&k| shapes[k] != first[k]) {
                return Err(Error::Input {
                    name: self.pushed[k].name.clone(),
                    message: format!(
                        "shape {}, but the stream's first chunk had {} (time axis aside): a \
                         stream keeps its batch and feature sizes",
                        shape_string(chunk[k].shape()),
                        shape_string(first[k].iter().enumerate().map(|(a, d)| {
                            if a == self.time_axes[self.time_inputs[k]].unwrap() {
                                "time".to_string()
                            } else {
                                d.to_string()
                            }
                        }))
                    ),
                });
            }
        }
        let built = match &self.graph {
            Some(g) => g.clone(),
            None => {
                let built = self.build(Some(&chunk)).map_err(|b| match b {
                    Building::Refused(m) | Building::Untyped(m) => Error::NotStreamable(m),
                })?;
                let built = Arc::new(built);
                self.graph = Some(built.clone());
                self.chunk_shapes = Some(shapes);
                built
            }
        };
        let plan = self.plan_for(&built, &chunk)?;
        let states = match self.states.take() {
            Some(s) => s,
            None => self.first_states(&built, &plan)?,
        };
        let n_out = built.outputs.len();
        let mut fed: TVec<TValue> = chunk.into_iter().map(|t| t.into_tvalue()).collect();
        fed.extend(
            built
                .start_fed
                .iter()
                .map(|&k| self.start[k].clone().into_tvalue()),
        );
        fed.extend(states.iter().cloned());
        let session = match self.session.take() {
            Some((p, s)) if Arc::ptr_eq(&p, &plan) => s,
            _ => plan
                .plan
                .spawn()
                .map_err(|e| Error::Run(chain_message(&e)))?,
        };
        let mut session = session;
        let result = crate::guard::run_plan(&mut session, fed);
        self.session = Some((plan.clone(), session));
        let mut outputs = match result {
            Ok(o) => o,
            Err(e) => {
                // A failed chunk leaves the stream where it was.
                self.states = Some(states);
                return Err(Error::from_tract(e, Error::Run));
            }
        };
        let next: Vec<TValue> = outputs.drain(n_out..).collect();
        self.states = Some(next);
        self.pushes += 1;
        Ok(outputs.into_iter().map(|t| t.into_tensor()).collect())
    }

    /// The plan for a chunk of these shapes, made on first use.
    fn plan_for(&mut self, built: &Built, chunk: &[Tensor]) -> Result<Arc<StreamPlan>> {
        let shapes: Vec<Vec<usize>> = chunk.iter().map(|t| t.shape().to_vec()).collect();
        if let Some(pos) = self.plans.iter().position(|(s, _)| *s == shapes) {
            let entry = self.plans.remove(pos).unwrap();
            let plan = entry.1.clone();
            self.plans.push_back(entry);
            return Ok(plan);
        }
        let graph = &built.graph;
        let invalid = |e: anyhow::Error| {
            Error::Run(format!(
                "cannot plan the stream for chunks of shapes {}: {}",
                shapes
                    .iter()
                    .map(shape_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                crate::refusal::plain(&chain_message(&e), "time")
            ))
        };
        // Bind the graph's symbols (the chunk length, a batch) from the tensors fed.
        let mut values: HashMap<Symbol, TDim> = HashMap::new();
        let fed_shapes = chunk.iter().map(|t| t.shape().to_vec()).chain(
            built
                .start_fed
                .iter()
                .map(|&k| self.start[k].shape().to_vec()),
        );
        let inputs = graph.model.input_outlets().map_err(invalid)?;
        for (outlet, shape) in inputs.iter().zip(fed_shapes) {
            let fact = graph.model.outlet_fact(*outlet).map_err(invalid)?;
            for (dim, &n) in fact.shape.iter().zip(&shape) {
                if let TDim::Sym(sym) = dim {
                    values.insert(sym.clone(), n.to_dim());
                }
            }
        }
        let make = |model: &TypedModel| -> TractResult<Arc<TypedSimplePlan>> {
            let concrete = model.set_symbols(&values)?;
            let optimized = optimize_typed(concrete, &self.model.native)?;
            SimplePlan::new(optimized)
        };
        let plan = without_panics(|| make(&graph.model))
            .map_err(|p| Error::Run(format!("tract failed while planning the stream ({p})")))?
            .map_err(invalid)?;
        let computes = graph
            .states
            .iter()
            .any(|(s, _)| matches!(s, StateStart::Computed(_)));
        let start = if computes {
            Some(
                without_panics(|| make(&graph.start))
                    .map_err(|p| Error::Run(format!("tract failed while planning ({p})")))?
                    .map_err(invalid)?,
            )
        } else {
            None
        };
        let first_state = graph.time_inputs + graph.start_inputs;
        let state_facts = plan.model().input_outlets().map_err(invalid)?[first_state..]
            .iter()
            .map(|o| plan.model().outlet_fact(*o).cloned())
            .collect::<TractResult<Vec<_>>>()
            .map_err(invalid)?;
        let plan = Arc::new(StreamPlan {
            plan,
            start,
            state_facts,
        });
        self.plans.push_back((shapes, plan.clone()));
        if self.plans.len() > STREAM_PLANS {
            self.plans.pop_front();
        }
        Ok(plan)
    }

    /// The states a stream starts from: the recurrent nodes' initial states computed from
    /// the stream-start inputs, zeros elsewhere.
    fn first_states(&self, built: &Built, plan: &StreamPlan) -> Result<Vec<TValue>> {
        let computed = match &plan.start {
            None => tvec![],
            Some(start) => {
                let fed: TVec<TValue> = built
                    .start_fed
                    .iter()
                    .map(|&k| self.start[k].clone().into_tvalue())
                    .collect();
                without_panics(|| start.run(fed))
                    .map_err(|p| {
                        Error::Run(format!("tract failed while starting the stream ({p})"))
                    })?
                    .map_err(|e| Error::from_tract(e, Error::Run))?
            }
        };
        built
            .graph
            .states
            .iter()
            .zip(&plan.state_facts)
            .map(|((start, name), fact)| {
                let shape = fact
                    .shape
                    .as_concrete()
                    .ok_or_else(|| Error::Run(format!("state {name} has no concrete shape")))?;
                match start {
                    StateStart::Computed(k) => {
                        let t = computed[*k].clone();
                        if t.shape() != shape {
                            return Err(Error::Input {
                                name: name.clone(),
                                message: format!(
                                    "the initial state has shape {:?}, the stream's chunks \
                                     call for {shape:?}",
                                    t.shape()
                                ),
                            });
                        }
                        Ok(t)
                    }
                    StateStart::Zeros => Tensor::zero_dt(fact.datum_type, shape)
                        .map(|t| t.into_tvalue())
                        .map_err(|e| Error::Run(chain_message(&e))),
                }
            })
            .collect()
    }

    /// Runs whole time inputs through the stream `chunk` time steps at a time, from a fresh
    /// state, and puts the outputs back together: per-step outputs are concatenated, final
    /// ones are the last chunk's. The result equals [`Model::run`]'s.
    pub fn run_chunked(&mut self, time_inputs: Vec<Tensor>, chunk: usize) -> Result<Vec<Tensor>> {
        check_inputs(&self.pushed, &time_inputs)?;
        let chunk = chunk.max(1);
        let axis0 = self.time_axes[self.time_inputs[0]].unwrap();
        let steps = time_inputs[0].shape()[axis0];
        self.reset()?;
        let run_err = |e: anyhow::Error| Error::Run(chain_message(&e));
        let mut pieces: Vec<Vec<Tensor>> = vec![];
        let mut start = 0;
        while start < steps {
            let end = (start + chunk).min(steps);
            let part = time_inputs
                .iter()
                .enumerate()
                .map(|(k, t)| t.slice(self.time_axes[self.time_inputs[k]].unwrap(), start, end))
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
        }
        if pieces.is_empty() {
            return Err(Error::Input {
                name: self.pushed[0].name.clone(),
                message: "no time steps to run".into(),
            });
        }
        let outputs = self.outputs().to_vec();
        pieces
            .into_iter()
            .zip(outputs)
            .map(|(mut parts, kind)| match kind {
                StreamOutput::PerStep { axis } => {
                    Tensor::stack_tensors(axis, &parts).map_err(run_err)
                }
                StreamOutput::Final => parts
                    .pop()
                    .ok_or_else(|| Error::Run("no chunk was run".into())),
            })
            .collect()
    }

    /// Forgets the carried states: the next chunk starts a new sequence (from the same
    /// stream-start inputs).
    pub fn reset(&mut self) -> Result<()> {
        self.states = None;
        self.pushes = 0;
        Ok(())
    }

    /// How many chunks were pushed since the stream started or was reset.
    pub fn pushes(&self) -> usize {
        self.pushes
    }

    /// What [`Stream::push`] takes: the model's inputs that have a time axis (named
    /// [`STREAM_SEQ`] there, any length fits), in the model's order.
    pub fn time_inputs(&self) -> &[IoInfo] {
        &self.pushed
    }

    /// A stream over `model` with these time axes and stream-start values, unchecked and not
    /// analysed: what a pool of streams builds its batched graph from.
    pub(crate) fn for_pool(
        model: &Model,
        time_axes: Vec<Option<usize>>,
        start: Vec<Tensor>,
    ) -> Stream {
        let time_inputs = (0..time_axes.len())
            .filter(|&i| time_axes[i].is_some())
            .collect();
        let start_inputs = (0..time_axes.len())
            .filter(|&i| time_axes[i].is_none())
            .collect();
        Stream {
            model: model.clone(),
            time_axes,
            time_inputs,
            start_inputs,
            start,
            pushed: vec![],
            graph: None,
            chunk_shapes: None,
            plans: VecDeque::new(),
            session: None,
            states: None,
            pushes: 0,
        }
    }

    /// The model input position of the k-th stream-start input.
    pub(crate) fn start_input(&self, k: usize) -> usize {
        self.start_inputs[k]
    }

    /// The names of the inputs given when the stream started.
    pub fn start_inputs(&self) -> Vec<&str> {
        self.start_inputs
            .iter()
            .map(|&i| self.model.inputs()[i].name.as_str())
            .collect()
    }

    /// For each model input, its time axis (None for the stream-start inputs).
    pub fn input_seq_axes(&self) -> &[Option<usize>] {
        &self.time_axes
    }

    /// What each output holds after a push. Known once the stream's graph is typed, at the
    /// latest after the first push; empty before.
    pub fn outputs(&self) -> &[StreamOutput] {
        self.graph.as_ref().map(|g| &g.outputs[..]).unwrap_or(&[])
    }

    /// For each output, its time axis: chunks' outputs concatenate along it. Outputs
    /// without one (final states, heads on the last step) hold the latest chunk's value.
    pub fn output_seq_axes(&self) -> Vec<Option<usize>> {
        self.outputs()
            .iter()
            .map(|o| match o {
                StreamOutput::PerStep { axis } => Some(*axis),
                StreamOutput::Final => None,
            })
            .collect()
    }
}

impl Model {
    /// Runs the model through a stream, `chunk` time steps per push, and puts the outputs
    /// back together; also returns the number of pushes. The inputs are the model's, in its
    /// order: those without a time axis start the stream.
    pub fn run_chunked(&self, inputs: Vec<Tensor>, chunk: usize) -> Result<(Vec<Tensor>, usize)> {
        self.run_chunked_with(&StreamOptions::default(), inputs, chunk)
    }

    /// [`Model::run_chunked`] with options (the time axes, when the graph does not show
    /// them).
    pub fn run_chunked_with(
        &self,
        options: &StreamOptions,
        inputs: Vec<Tensor>,
        chunk: usize,
    ) -> Result<(Vec<Tensor>, usize)> {
        // Element types and ranks now; the stream checks the sizes once it knows the time axes.
        let any_size: Vec<IoInfo> = self
            .inputs()
            .iter()
            .map(|info| IoInfo {
                shape: vec![Dim::Symbol("any".into()); info.shape.len()],
                ..info.clone()
            })
            .collect();
        check_inputs(&any_size, &inputs)?;
        let axes = match &options.time_axes {
            Some(axes) => axes.clone(),
            None => self.find_time_axes(Some(&inputs))?,
        };
        let (mut time, mut start) = (vec![], vec![]);
        for (t, axis) in inputs.into_iter().zip(&axes) {
            match axis {
                Some(_) => time.push(t),
                None => start.push(t),
            }
        }
        let mut stream = self.stream_with(
            &StreamOptions {
                time_axes: Some(axes),
            },
            start,
        )?;
        let outputs = stream.run_chunked(time, chunk)?;
        Ok((outputs, stream.pushes()))
    }
}

/// Types a stream's graph for the time-axis analysis: constants folded and the recurrent
/// nodes' weights prepared, but nothing else rewritten, so that nodes keep their ONNX names
/// and ops their meaning (tract's clean-up merges slices, folds pads into convolutions and
/// renames nodes after their neighbours).
pub(crate) fn type_for_analysis(inference: InferenceModel) -> TractResult<TypedModel> {
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
