//! The batched step graph: built from the stream graph or the fed-back model, its batch
//! checked, planned per shape.

use super::*;

impl Engine {
    pub(super) fn build(&self, item: &Item) -> Result<StepGraph> {
        let refuse = |m: String| Error::NotStreamable(m);
        match &self.kind {
            Kind::Stream { time_axes } => {
                // The stream graph, typed with the batch axis free as well as the time axis;
                // its stream-start inputs are this stream's per-stream values and the shared
                // ones, in the model's order.
                let mut per_stream = item.start.iter();
                let start: Vec<Tensor> = (0..self.roles.len())
                    .filter(|&ix| time_axes[ix].is_none())
                    .map(|ix| match self.roles[ix] {
                        Role::Shared => self.shared_value(ix),
                        _ => per_stream.next().expect("a per-stream value").clone(),
                    })
                    .collect();
                let template = Stream::for_pool(&self.model, time_axes.clone(), start);
                let (built, batch) = template
                    .build_batched(Some(&item.queued.frame), Some(&self.batch_axes))
                    .map_err(|b| match b {
                        Building::Refused(m) | Building::Untyped(m) => refuse(m),
                    })?;
                let batch = batch.expect("a batch symbol");
                let graph = built.graph;
                check_batch(&graph.model, &batch)?;
                let time = graph.model.symbols.sym(crate::stream::STREAM_SEQ);
                let n_time = graph.time_inputs;
                let mut feeds = vec![];
                let pushed: Vec<usize> = (0..self.roles.len())
                    .filter(|&i| time_axes[i].is_some())
                    .collect();
                let per_stream: Vec<usize> = (0..self.roles.len())
                    .filter(|&i| self.roles[i] == Role::PerStream)
                    .collect();
                for (k, &ix) in pushed.iter().enumerate() {
                    feeds.push(Feed::Pushed(k, self.batch_axes[ix].unwrap()));
                }
                for &k in &built.start_fed {
                    let ix = template.start_input(k);
                    match per_stream.iter().position(|&p| p == ix) {
                        Some(j) => feeds.push(Feed::PerStream(j, self.batch_axes[ix].unwrap())),
                        None => feeds.push(Feed::Shared(self.shared_value(ix))),
                    }
                }
                let inputs = graph
                    .model
                    .input_outlets()
                    .map_err(|e| refuse(chain_message(&e)))?;
                let first_state = n_time + built.start_fed.len();
                let axis_of = |outlet: OutletId| -> Result<Option<usize>> {
                    let fact = graph
                        .model
                        .outlet_fact(outlet)
                        .map_err(|e| refuse(chain_message(&e)))?;
                    Ok(fact
                        .shape
                        .iter()
                        .position(|d| *d == TDim::Sym(batch.clone())))
                };
                let mut state_axes = vec![];
                for (k, outlet) in inputs[first_state..].iter().enumerate() {
                    let axis = axis_of(*outlet)?
                        .ok_or_else(|| refuse(format!("state {k} has no batch axis")))?;
                    feeds.push(Feed::State(k, axis));
                    state_axes.push(axis);
                }
                let outputs = graph
                    .model
                    .output_outlets()
                    .map_err(|e| refuse(chain_message(&e)))?;
                let n_out = outputs.len() - state_axes.len();
                let output_axes = outputs[..n_out]
                    .iter()
                    .map(|o| axis_of(*o))
                    .collect::<Result<Vec<_>>>()?;
                let start_fed = built
                    .start_fed
                    .iter()
                    .filter_map(|&k| {
                        per_stream
                            .iter()
                            .position(|&p| p == template.start_input(k))
                    })
                    .collect();
                let step = StepGraph {
                    model: graph.model,
                    batch,
                    time: Some(time),
                    feeds,
                    output_axes,
                    state_axes,
                    state_starts: graph.states.iter().map(|(s, _)| s.clone()).collect(),
                    start_model: Some(graph.start),
                    start_fed,
                    states_from_start: None,
                    plans: Mutex::new(VecDeque::new()),
                };
                Ok(step)
            }
            Kind::Feedback { pairs } => self.build_feedback(pairs, item),
        }
    }

    pub(super) fn shared_value(&self, ix: usize) -> Tensor {
        let k = self.roles[..ix]
            .iter()
            .filter(|r| **r == Role::Shared)
            .count();
        self.shared[k].clone()
    }

    /// A model with state pairs: the model itself, typed with its batch axis free, shared
    /// scalar integers folded in.
    pub(super) fn build_feedback(
        &self,
        pairs: &[(usize, usize)],
        item: &Item,
    ) -> Result<StepGraph> {
        let refuse = |m: String| Error::NotStreamable(m);
        let untyped = |e: anyhow::Error| refuse(chain_message(&e));
        let mut inference = InferenceModel::clone(&self.model.inference);
        let batch = inference.symbols.sym(crate::stream::POOL_BATCH);
        let outlets = inference.input_outlets().map_err(untyped)?.to_vec();
        let (mut pushed, mut per_stream) = (0, 0);
        let mut feeds = vec![];
        let mut fed = vec![];
        let per_stream_shapes = self.per_stream_shapes(&item.start, item.states.as_ref());
        for (ix, role) in self.roles.iter().enumerate() {
            let (dt, shape) = match role {
                Role::Pushed => {
                    pushed += 1;
                    let t = &item.queued.frame[pushed - 1];
                    (t.datum_type(), t.shape())
                }
                Role::PerStream => {
                    per_stream += 1;
                    (
                        item.start[per_stream - 1].datum_type(),
                        &per_stream_shapes[per_stream - 1][..],
                    )
                }
                Role::Shared => {
                    let t = self.shared_value(ix);
                    if crate::passes::specialize::scalar_integer(&t).is_some() {
                        inference.node_mut(outlets[ix].node).op = Box::new(
                            tract_core::ops::konst::Const::new(Arc::new(t.clone()))
                                .map_err(untyped)?,
                        );
                        inference
                            .set_outlet_fact(outlets[ix], InferenceFact::from(t))
                            .map_err(untyped)?;
                        continue;
                    }
                    inference
                        .set_input_fact(ix, InferenceFact::dt_shape(t.datum_type(), t.shape()))
                        .map_err(untyped)?;
                    fed.push(ix);
                    feeds.push(Feed::Shared(t));
                    continue;
                }
            };
            let axis = self.batch_axes[ix].unwrap();
            let mut shape: TVec<TDim> = shape.iter().map(|&d| d.to_dim()).collect();
            shape[axis] = batch.clone().into();
            inference
                .set_input_fact(ix, InferenceFact::dt_shape(dt, shape))
                .map_err(untyped)?;
            fed.push(ix);
            feeds.push(match role {
                Role::Pushed => Feed::Pushed(pushed - 1, axis),
                _ => {
                    // A fed-back input: its value is the stream's state after the first frame.
                    let k = pairs.iter().position(|p| p.0 == ix).unwrap();
                    Feed::State(k, axis)
                }
            });
        }
        inference.inputs = fed.iter().map(|&ix| outlets[ix]).collect();
        let typed = crate::model::without_panics(|| crate::stream::type_for_analysis(inference))
            .map_err(|p| refuse(format!("tract failed while typing ({p})")))?
            .map_err(|e| refuse(crate::refusal::plain(&chain_message(&e), "batch")))?;
        check_batch(&typed, &batch)?;
        // Outputs: the model's, then the fed-back ones again as states.
        let model_outputs = typed.output_outlets().map_err(untyped)?.to_vec();
        let mut model = typed;
        let mut outputs = model_outputs.clone();
        outputs.extend(pairs.iter().map(|p| model_outputs[p.1]));
        model.select_output_outlets(&outputs).map_err(untyped)?;
        let axis_of = |o: &OutletId| -> Option<usize> {
            model
                .outlet_fact(*o)
                .ok()?
                .shape
                .iter()
                .position(|d| *d == TDim::Sym(batch.clone()))
        };
        let output_axes: Vec<Option<usize>> = model_outputs.iter().map(axis_of).collect();
        let state_axes = pairs
            .iter()
            .map(|p| {
                axis_of(&model_outputs[p.1]).ok_or_else(|| {
                    refuse(format!(
                        "output '{}' has no batch axis to feed back",
                        self.model.outputs()[p.1].name
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let step = StepGraph {
            model,
            batch,
            time: None,
            feeds,
            output_axes,
            state_axes,
            // The first value of each fed-back state is the stream's own (given at open).
            state_starts: vec![StateStart::Zeros; pairs.len()],
            start_model: None,
            start_fed: vec![],
            states_from_start: Some(
                pairs
                    .iter()
                    .map(|p| {
                        self.roles[..p.0]
                            .iter()
                            .filter(|r| **r == Role::PerStream)
                            .count()
                    })
                    .collect(),
            ),
            plans: Mutex::new(VecDeque::new()),
        };
        Ok(step)
    }
}

/// Refuses a graph whose ops mix the entries of its batch (the symbol `batch`), naming the
/// node.
pub(super) fn check_batch(model: &TypedModel, batch: &Symbol) -> Result<()> {
    let inputs = model
        .input_outlets()
        .map_err(|e| Error::NotStreamable(chain_message(&e)))?;
    let batched: Vec<(usize, usize)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(ix, o)| {
            let fact = model.outlet_fact(*o).ok()?;
            let axis = fact
                .shape
                .iter()
                .position(|d| *d == TDim::Sym(batch.clone()))?;
            Some((ix, axis))
        })
        .collect();
    analyse_batch(model, &batched, batch)
        .map_err(|e| Error::NotStreamable(chain_message(&e)))?
        .map_err(|refusal| Error::NotStreamable(format!("cannot batch streams: {refusal}")))?;
    Ok(())
}

impl StepGraph {
    /// The plan for `n` streams and chunks of `steps` time steps.
    pub(super) fn plan(
        &self,
        (n, steps): (usize, usize),
        native: &crate::model::Native,
    ) -> Result<Arc<TypedSimplePlan>> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = plans.iter().position(|(k, _)| *k == (n, steps)) {
            let entry = plans.remove(pos).unwrap();
            let plan = entry.1.clone();
            plans.push_back(entry);
            return Ok(plan);
        }
        let mut values = HashMap::new();
        values.insert(self.batch.clone(), n.to_dim());
        if let Some(time) = &self.time {
            values.insert(time.clone(), steps.to_dim());
        }
        let invalid = |e: anyhow::Error| {
            Error::Run(format!(
                "cannot plan a step of {n} streams: {}",
                crate::refusal::plain(&chain_message(&e), "batch")
            ))
        };
        let plan = crate::model::without_panics(|| {
            let concrete = self.model.set_symbols(&values)?;
            SimplePlan::new(optimize_typed(concrete, native)?)
        })
        .map_err(|p| Error::Run(format!("tract failed while planning ({p})")))?
        .map_err(invalid)?;
        plans.push_back(((n, steps), plan.clone()));
        if plans.len() > POOL_PLANS {
            plans.pop_front();
        }
        Ok(plan)
    }

    /// A stream's first states (batch 1): for fed-back states, the values given at open;
    /// otherwise computed from its per-stream values where the model computes them (its
    /// initial states), zeros elsewhere.
    pub(super) fn first_states(
        &self,
        start: &[Tensor],
        plan_model: &TypedModel,
    ) -> Result<Vec<TValue>> {
        let err = |e: anyhow::Error| Error::Run(chain_message(&e));
        if let Some(from) = &self.states_from_start {
            return Ok(from
                .iter()
                .map(|&j| start[j].clone().into_tvalue())
                .collect());
        }
        let inputs = plan_model.input_outlets().map_err(err)?;
        let n_states = self.state_axes.len();
        let facts: Vec<TypedFact> = inputs[inputs.len() - n_states..]
            .iter()
            .map(|o| plan_model.outlet_fact(*o).cloned())
            .collect::<TractResult<_>>()
            .map_err(err)?;
        let computes = self
            .state_starts
            .iter()
            .any(|s| matches!(s, StateStart::Computed(_)));
        let computed = match &self.start_model {
            Some(model) if computes => {
                let mut values = HashMap::new();
                values.insert(self.batch.clone(), 1.to_dim());
                let plan =
                    SimplePlan::new(model.set_symbols(&values).map_err(err)?).map_err(err)?;
                let fed: TVec<TValue> = self
                    .start_fed
                    .iter()
                    .map(|&k| start[k].clone().into_tvalue())
                    .collect();
                plan.run(fed).map_err(err)?
            }
            _ => tvec![],
        };
        self.state_starts
            .iter()
            .zip(facts)
            .zip(&self.state_axes)
            .map(|((s, fact), &axis)| match s {
                StateStart::Computed(k) => Ok(computed[*k].clone()),
                StateStart::Zeros => {
                    // The plan's facts have the step's batch; one stream's state has 1.
                    let mut shape = fact
                        .shape
                        .as_concrete()
                        .map(|s| s.to_vec())
                        .ok_or_else(|| Error::Run("a state without a concrete shape".into()))?;
                    shape[axis] = 1;
                    Tensor::zero_dt(fact.datum_type, &shape)
                        .map(|t| t.into_tvalue())
                        .map_err(err)
                }
            })
            .collect()
    }
}
