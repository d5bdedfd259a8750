//! Making a pool from a model: its options checked, the batch axes found, roles given.

use super::*;

impl Model {
    /// A pool of streams over this model whose pending frames run as one batched step.
    /// `shared` holds the values of the inputs every stream shares (a sample rate), in the
    /// model's input order; see [`PoolOptions`] for the rest.
    pub fn stream_pool(&self, options: PoolOptions, shared: Vec<Tensor>) -> Result<StreamPool> {
        let refuse = |m: String| Error::NotStreamable(m);
        if options.max_batch == 0 {
            return Err(Error::Run(
                "PoolOptions::max_batch is 0: a step must take at least 1 stream".into(),
            ));
        }
        let n = self.inputs().len();
        let position = |name: &str, of: &[IoInfo], what: &str| {
            of.iter().position(|i| i.name == name).ok_or_else(|| {
                refuse(format!(
                    "feedback names {what} '{name}', which the model does not have"
                ))
            })
        };
        let pairs: Vec<(usize, usize)> = options
            .feedback
            .iter()
            .map(|(i, o)| {
                Ok((
                    position(i, self.inputs(), "input")?,
                    position(o, self.outputs(), "output")?,
                ))
            })
            .collect::<Result<_>>()?;
        // A model that does not stream is refused for that first.
        let kind = if pairs.is_empty() {
            let time_axes = match &options.time_axes {
                Some(axes) if axes.len() == n => axes.clone(),
                Some(axes) => {
                    return Err(refuse(format!(
                        "time_axes names {} inputs, the model has {n}",
                        axes.len()
                    )))
                }
                None => self.time_axes()?,
            };
            Kind::Stream { time_axes }
        } else {
            Kind::Feedback { pairs }
        };
        let batch_axes = match &options.batch_axes {
            Some(axes) if axes.len() == n => axes.clone(),
            Some(axes) => {
                return Err(refuse(format!(
                    "batch_axes names {} inputs, the model has {n}",
                    axes.len()
                )))
            }
            None => self.find_batch_axes()?,
        };
        let roles: Vec<Role> = (0..n)
            .map(|ix| match (&kind, batch_axes[ix]) {
                (_, None) => Role::Shared,
                (Kind::Stream { time_axes, .. }, Some(_)) if time_axes[ix].is_some() => {
                    Role::Pushed
                }
                (Kind::Stream { .. }, Some(_)) => Role::PerStream,
                (Kind::Feedback { pairs }, Some(_)) if pairs.iter().any(|p| p.0 == ix) => {
                    Role::PerStream
                }
                (Kind::Feedback { .. }, Some(_)) => Role::Pushed,
            })
            .collect();
        let shared_infos: Vec<IoInfo> = (0..n)
            .filter(|&i| roles[i] == Role::Shared)
            .map(|i| self.inputs()[i].clone())
            .collect();
        if shared.len() != shared_infos.len() {
            return Err(Error::Input {
                name: shared_infos
                    .get(shared.len())
                    .map(|i| i.name.clone())
                    .unwrap_or_default(),
                message: format!(
                    "a pool over this model takes {}, found {}",
                    IoInfo::counted(&shared_infos, "shared input"),
                    shared.len()
                ),
            });
        }
        check_inputs(&shared_infos, &shared)?;
        let engine = Engine {
            model: self.clone(),
            kind,
            roles,
            batch_axes,
            shared,
            graphs: Mutex::new(VecDeque::new()),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(PoolState::default()),
            wake: Condvar::new(),
            engine,
            options,
        });
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("rnn-run pool".into())
                .spawn(move || shared.work())
                .map_err(|e| Error::Run(format!("cannot start the pool's thread: {e}")))?
        };
        Ok(StreamPool {
            shared,
            worker: Some(worker),
        })
    }

    /// For each input, its batch axis, from the graph (the axis that becomes a recurrent
    /// node's batch axis) or, where tract cannot type the graph before it sees inputs, from
    /// a dimension name every batched input shares.
    pub(super) fn find_batch_axes(&self) -> Result<Vec<Option<usize>>> {
        let refuse = |m: String| Error::NotStreamable(m);
        // Why the graph does not type with its dimensions free, when that is a node that
        // reverses or strides an axis: the likelier reason a pool cannot be made.
        let mut untyped = None;
        let mut axes = match self.symbolic_for_streams() {
            Ok(typed) => find_batch_axes(&typed).map_err(|e| refuse(chain_message(&e)))?,
            Err(why) => {
                untyped = crate::refusal::mixes_steps(why, "time");
                vec![None; self.inputs().len()]
            }
        };
        let name_at = |ix: usize, axis: usize| match &self.inputs()[ix].shape[axis] {
            Dim::Symbol(name) if name != "?" => Some(name.clone()),
            _ => None,
        };
        let mut names: Vec<String> = axes
            .iter()
            .enumerate()
            .filter_map(|(ix, a)| name_at(ix, (*a)?))
            .collect();
        if names.is_empty() {
            // A name present once in every input that has dimensions.
            let ranked: Vec<usize> = (0..axes.len())
                .filter(|&i| !self.inputs()[i].shape.is_empty())
                .collect();
            if let Some(&first) = ranked.first() {
                for axis in 0..self.inputs()[first].shape.len() {
                    if let Some(name) = name_at(first, axis) {
                        let everywhere = ranked.iter().all(|&i| {
                            self.inputs()[i]
                                .shape
                                .iter()
                                .filter(|d| matches!(d, Dim::Symbol(n) if *n == name))
                                .count()
                                == 1
                        });
                        if everywhere {
                            names.push(name);
                        }
                    }
                }
            }
        }
        for (ix, axis) in axes.iter_mut().enumerate() {
            if axis.is_none() {
                let same: Vec<usize> = (0..self.inputs()[ix].shape.len())
                    .filter(|&a| name_at(ix, a).is_some_and(|n| names.contains(&n)))
                    .collect();
                if let [a] = same[..] {
                    *axis = Some(a);
                }
            }
        }
        if axes.iter().all(Option::is_none) {
            if let Some(why) = untyped {
                return Err(refuse(why));
            }
            return Err(refuse(format!(
                "the batch axis cannot be found from the graph (no input's axis becomes a \
                 recurrent node's batch axis, and no dimension name is shared by the inputs: \
                 {}): give it with PoolOptions::batch_axes, or on the command line with \
                 --batch-axis INPUT=AXIS",
                self.inputs()
                    .iter()
                    .map(|i| format!("{} {}", i.name, crate::error::shape_string(&i.shape)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(axes)
    }
}
