//! One batched step: frames and states concatenated, run, outputs and states scattered back.

use super::*;

impl Engine {
    /// Runs one batched step; returns each stream's outputs and next states.
    #[allow(clippy::type_complexity)]
    pub(super) fn step(&self, batch: &[Item]) -> Result<(Vec<Vec<Tensor>>, Vec<Vec<TValue>>)> {
        let graph = self.graph(&batch[0])?;
        let n = batch.len();
        let steps = match &self.kind {
            Kind::Stream { time_axes, .. } => {
                let ix = (0..time_axes.len())
                    .find(|&i| time_axes[i].is_some())
                    .unwrap();
                let k = self.roles[..ix]
                    .iter()
                    .filter(|r| **r == Role::Pushed)
                    .count();
                batch[0].queued.frame[k].shape()[time_axes[ix].unwrap()]
            }
            Kind::Feedback { .. } => 1,
        };
        let plan = graph.plan((n, steps), &self.model.native)?;
        // Each stream's states: carried, or started now.
        let states: Vec<Vec<TValue>> = batch
            .iter()
            .map(|item| match &item.states {
                Some(s) => Ok(s.clone()),
                None => graph.first_states(&item.start, plan.model()),
            })
            .collect::<Result<_>>()?;
        let concat = |axis: usize, parts: Vec<Tensor>| -> Result<TValue> {
            if parts.len() == 1 {
                return Ok(parts.into_iter().next().unwrap().into_tvalue());
            }
            Tensor::stack_tensors(axis, &parts)
                .map(|t| t.into_tvalue())
                .map_err(|e| Error::Run(chain_message(&e)))
        };
        let fed: TVec<TValue> = graph
            .feeds
            .iter()
            .map(|feed| match feed {
                Feed::Pushed(k, axis) => concat(
                    *axis,
                    batch.iter().map(|i| i.queued.frame[*k].clone()).collect(),
                ),
                Feed::PerStream(k, axis) => {
                    concat(*axis, batch.iter().map(|i| i.start[*k].clone()).collect())
                }
                Feed::State(k, axis) => concat(
                    *axis,
                    states.iter().map(|s| s[*k].clone().into_tensor()).collect(),
                ),
                Feed::Shared(t) => Ok(t.clone().into_tvalue()),
            })
            .collect::<Result<_>>()?;
        let mut session = plan.spawn().map_err(|e| Error::Run(chain_message(&e)))?;
        let outputs = crate::guard::run_plan(&mut session, fed)
            .map_err(|e| Error::from_tract(e, Error::Run))?;
        let n_out = graph.output_axes.len();
        let split = |t: &TValue, axis: Option<usize>, i: usize| -> Result<Tensor> {
            match axis {
                Some(a) if n > 1 => t
                    .slice(a, i, i + 1)
                    .map_err(|e| Error::Run(chain_message(&e))),
                _ => Ok(t.clone().into_tensor()),
            }
        };
        let mut per_stream = Vec::with_capacity(n);
        let mut next_states = Vec::with_capacity(n);
        for i in 0..n {
            per_stream.push(
                outputs[..n_out]
                    .iter()
                    .zip(&graph.output_axes)
                    .map(|(t, a)| split(t, *a, i))
                    .collect::<Result<Vec<_>>>()?,
            );
            next_states.push(
                outputs[n_out..]
                    .iter()
                    .zip(&graph.state_axes)
                    .map(|(t, a)| split(t, Some(*a), i).map(|t| t.into_tvalue()))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        Ok((per_stream, next_states))
    }

    /// The batched graph for frames of this item's shape (a streaming model's time axis
    /// aside), built on first use.
    pub(super) fn graph(&self, item: &Item) -> Result<Arc<StepGraph>> {
        let mut key = self.frame_key(&item.queued.frame);
        key.extend(self.per_stream_shapes(&item.start, item.states.as_ref()));
        let mut graphs = self.graphs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = graphs.iter().position(|(k, _)| *k == key) {
            let entry = graphs.remove(pos).unwrap();
            let graph = entry.1.clone();
            graphs.push_back(entry);
            return Ok(graph);
        }
        let n_frame = item.queued.frame.len();
        let built = match self.build(item) {
            Ok(built) => Arc::new(built),
            // The first shape the pool meets: the refusal is the model's.
            Err(e) if graphs.is_empty() => return Err(e),
            Err(e) => {
                let runs: Vec<String> = graphs
                    .iter()
                    .map(|(k, _)| self.frame_shapes_text(&k[..n_frame]))
                    .collect();
                let why = match e {
                    Error::NotStreamable(m) | Error::Run(m) => m,
                    e => e.to_string(),
                };
                return Err(Error::Input {
                    name: self.model.inputs()[self.pushed_axes()[0].0].name.clone(),
                    message: format!(
                        "a frame of shape {} cannot run in this pool ({why}); it runs frames \
                         of shape {}",
                        self.frame_shapes_text(&key[..n_frame]),
                        runs.join(", ")
                    ),
                });
            }
        };
        graphs.push_back((key, built.clone()));
        if graphs.len() > POOL_GRAPHS {
            graphs.pop_front();
        }
        Ok(built)
    }
}

/// The same error again, for each frame of a failed step.
pub(super) fn same_error(e: &Error) -> Error {
    match e {
        Error::Input { name, message } => Error::Input {
            name: name.clone(),
            message: message.clone(),
        },
        Error::NotStreamable(m) => Error::NotStreamable(m.clone()),
        Error::Node(n) => Error::Node(n.clone()),
        e => Error::Run(e.to_string()),
    }
}
