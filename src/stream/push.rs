//! Pushing chunks: a plan per chunk shape, the carried states fed from one chunk to the next.

use super::*;

impl Stream {
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
    pub(super) fn plan_for(&mut self, built: &Built, chunk: &[Tensor]) -> Result<Arc<StreamPlan>> {
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
    pub(super) fn first_states(&self, built: &Built, plan: &StreamPlan) -> Result<Vec<TValue>> {
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
}
