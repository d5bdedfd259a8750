//! Many streams, one step: the pending frames of concurrent streams of one model run as one
//! batched step.
//!
//! A server that runs voice-activity detection or denoising for many calls holds one stream per
//! call, and each frame is then a batch-1 step, bound by streaming the weights from memory: a
//! batch of 16 costs far less than 16 batches of 1. A [`StreamPool`] gathers the frames that
//! are pending, concatenates them (and each stream's carried states) along the batch axis, runs
//! one step, and scatters the outputs and states back.
//!
//! Two kinds of model are pooled:
//! - a model that streams ([`crate::Model::stream`]): the pool runs its stream graph, states
//!   carried inside (recurrent states, a causal convolution's last frames);
//! - a model that carries its state through its inputs and outputs, one frame per call (Silero
//!   VAD: `state` in, `stateN` out), named in [`PoolOptions::feedback`]: the pool feeds each
//!   stream's output back.
//!
//! The batch axis of every input, output and state is followed through the graph by the same
//! analysis as the time axis (`analyse_batch` in `src/passes/time_axis.rs`): a model whose ops mix
//! the entries of a batch (a reduction over it, a fixed batch of 1 written into a reshape) is
//! refused with the node named. A stream's result never depends on which others shared its
//! step; the tests check it bit for bit.

use std::collections::{HashMap, VecDeque};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tract_hir::internal::*;

use crate::error::{chain_message, shape_string, Error, Result};
use crate::model::{check_inputs, optimize_typed, Dim, IoInfo, Model};
use crate::passes::state_io::StateStart;
use crate::passes::time_axis::{analyse_batch, find_batch_axes};
use crate::stream::{Building, Stream};

/// How a pool batches.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// The most streams in one step.
    pub max_batch: usize,
    /// The longest a frame waits for others before a partial batch runs (a batch with every
    /// open stream in it runs at once).
    pub max_wait: Duration,
    /// For a model that carries its state through its inputs and outputs: (input, output)
    /// pairs, the output of one frame fed back as the input of the next (Silero VAD:
    /// `("state", "stateN")`). Empty for a model that streams.
    pub feedback: Vec<(String, String)>,
    /// For each model input, its batch axis, or `None` for an input shared by every stream
    /// (a sample rate). By default found from the graph. CLI: `--batch-axis INPUT=AXIS`.
    pub batch_axes: Option<Vec<Option<usize>>>,
    /// For a model that streams: each input's time axis, as [`crate::StreamOptions::time_axes`].
    /// By default found from the graph. CLI: `--time-axis INPUT=AXIS`.
    pub time_axes: Option<Vec<Option<usize>>>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_batch: 64,
            max_wait: Duration::from_millis(2),
            feedback: vec![],
            batch_axes: None,
            time_axes: None,
        }
    }
}

/// A stream of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(u64);

/// One frame's result.
#[derive(Debug)]
pub struct Frame {
    /// The model's outputs for this stream (batch 1).
    pub outputs: Vec<Tensor>,
    /// How long the frame waited before its step started.
    pub queued: Duration,
    /// How many streams shared its step.
    pub batch: usize,
}

/// A frame pushed and not yet run; [`Pending::wait`] blocks until it has.
#[derive(Debug)]
pub struct Pending(mpsc::Receiver<Result<Frame>>);

impl Pending {
    /// The frame's result, once its step has run.
    pub fn wait(self) -> Result<Frame> {
        self.0
            .recv()
            .unwrap_or_else(|_| Err(Error::Run("the pool stopped before the frame ran".into())))
    }

    /// The frame's result if its step has run, without blocking.
    pub fn try_wait(&self) -> Option<Result<Frame>> {
        self.0.try_recv().ok()
    }
}

/// How the pool has run, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Frames run.
    pub frames: usize,
    /// Steps run.
    pub steps: usize,
    /// Streams open now.
    pub open: usize,
}

/// Streams of one model whose frames run batched. Made by [`Model::stream_pool`].
pub struct StreamPool {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("StreamPool")
            .field("stats", &self.stats())
            .finish()
    }
}

struct Shared {
    state: Mutex<PoolState>,
    wake: Condvar,
    engine: Engine,
    options: PoolOptions,
}

#[derive(Default)]
struct PoolState {
    streams: HashMap<StreamId, Slot>,
    next: u64,
    shutdown: bool,
    stats: PoolStats,
}

struct Slot {
    /// The stream's own values of the inputs given once (initial states), batch 1.
    start: Vec<Tensor>,
    /// Its carried states (batch 1), once it has them.
    states: Option<Vec<TValue>>,
    /// For a streaming model, the shape of the stream's first frame (time axis aside): its
    /// carried states are shaped by it, so its later frames must agree.
    first_frame: Option<Vec<Vec<usize>>>,
    queue: VecDeque<Queued>,
}

struct Queued {
    frame: Vec<Tensor>,
    since: Instant,
    reply: mpsc::Sender<Result<Frame>>,
}

/// What runs the steps: the model's inputs sorted out, and the batched graph once built.
struct Engine {
    model: Model,
    kind: Kind,
    /// Per model input: pushed with each frame, given per stream at open, or shared.
    roles: Vec<Role>,
    batch_axes: Vec<Option<usize>>,
    /// The values of the shared inputs, in model order.
    shared: Vec<Tensor>,
    /// The batched graphs built so far, one per frame shape (see [`Engine::shape_key`]),
    /// most recently used last: a frame of another shape gets its own graph, so that it
    /// cannot break the steps of the others.
    graphs: Mutex<VecDeque<(ShapeKey, Arc<StepGraph>)>>,
}

/// What a step's graph depends on: the shapes of a frame's tensors (a stream's time axis
/// aside) and of the stream's per-stream values or carried fed-back states.
type ShapeKey = Vec<Vec<usize>>;

/// Step graphs kept per pool (one per frame shape seen lately).
const POOL_GRAPHS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// In every frame.
    Pushed,
    /// Per stream, given at open (initial states; a fed-back state's first value).
    PerStream,
    /// The same for every stream, given when the pool is made.
    Shared,
}

enum Kind {
    /// A streaming model, its time axes.
    Stream { time_axes: Vec<Option<usize>> },
    /// A model with (input, output) state pairs fed back.
    Feedback { pairs: Vec<(usize, usize)> },
}

/// Where each input of the batched graph comes from.
#[derive(Debug, Clone)]
enum Feed {
    /// A frame's k-th pushed tensor, batched along `axis`.
    Pushed(usize, usize),
    /// The stream's k-th per-stream value, batched along `axis`.
    PerStream(usize, usize),
    /// A shared value.
    Shared(Tensor),
    /// The stream's k-th carried state, batched along `axis`.
    State(usize, usize),
}

/// The batched step: a graph with the batch (and, for a stream, the chunk length) as symbols.
struct StepGraph {
    model: TypedModel,
    batch: Symbol,
    time: Option<Symbol>,
    feeds: Vec<Feed>,
    /// The model's outputs: their batch axes (None: the same for every stream).
    output_axes: Vec<Option<usize>>,
    /// The states' batch axes, in order; they follow the model's outputs among the graph's.
    state_axes: Vec<usize>,
    /// What each state starts from, and the graph computing the computed ones per stream.
    state_starts: Vec<StateStart>,
    start_model: Option<TypedModel>,
    /// Which per-stream values the start model takes, in order.
    start_fed: Vec<usize>,
    /// For fed-back states: each state's first value is the per-stream value at this index.
    states_from_start: Option<Vec<usize>>,
    plans: Mutex<VecDeque<(StepShape, Arc<TypedSimplePlan>)>>,
}

/// A step's shape: (streams, time steps per frame).
type StepShape = (usize, usize);

/// Plans kept per pool (one per batch size and chunk length seen lately).
const POOL_PLANS: usize = 16;

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
                    "a pool over this model takes {} shared input{} ({}), found {}",
                    shared_infos.len(),
                    if shared_infos.len() == 1 { "" } else { "s" },
                    shared_infos
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
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
    fn find_batch_axes(&self) -> Result<Vec<Option<usize>>> {
        let refuse = |m: String| Error::NotStreamable(m);
        // Why the graph does not type with its dimensions free, when that is a node that
        // reverses or strides an axis: the likelier reason a pool cannot be made.
        let mut untyped = None;
        let mut axes = match self.symbolic_model() {
            Ok(typed) => find_batch_axes(typed).map_err(|e| refuse(chain_message(&e)))?,
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

impl StreamPool {
    /// Opens a stream whose states start as the model's own (zeros, or initial states the
    /// model computes). Fails when the model takes per-stream values (see
    /// [`StreamPool::open_from`]).
    pub fn open(&self) -> Result<StreamId> {
        self.open_from(vec![])
    }

    /// Opens a stream with its own values of the per-stream inputs (initial states; a
    /// fed-back state's first value), batch 1, in the model's input order.
    pub fn open_from(&self, start: Vec<Tensor>) -> Result<StreamId> {
        let engine = &self.shared.engine;
        let infos: Vec<IoInfo> = engine.infos(Role::PerStream);
        let start = if start.is_empty() && !infos.is_empty() {
            // Zeros, batch 1: a fed-back state's usual first value.
            infos
                .iter()
                .map(|i| {
                    let shape = batch_one(i, engine.axis_of(&i.name));
                    Tensor::zero_dt(i.dtype, &shape).map_err(|e| Error::Run(chain_message(&e)))
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            start
        };
        if start.len() != infos.len() {
            return Err(Error::Input {
                name: infos
                    .get(start.len())
                    .map(|i| i.name.clone())
                    .unwrap_or_default(),
                message: format!(
                    "a stream of this pool starts from {} input{} ({}), found {}",
                    infos.len(),
                    if infos.len() == 1 { "" } else { "s" },
                    infos
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    start.len()
                ),
            });
        }
        check_inputs(&engine.batch_one_infos(Role::PerStream), &start)?;
        let mut state = self.shared.lock();
        state.next += 1;
        let id = StreamId(state.next);
        state.streams.insert(
            id,
            Slot {
                start,
                states: None,
                first_frame: None,
                queue: VecDeque::new(),
            },
        );
        state.stats.open = state.streams.len();
        Ok(id)
    }

    /// Queues a frame of stream `id`: the inputs pushed with every frame, batch 1, in the
    /// model's input order. Frames of one stream run in the order they are pushed.
    pub fn push(&self, id: StreamId, frame: Vec<Tensor>) -> Result<Pending> {
        let engine = &self.shared.engine;
        engine.check_frame(&frame)?;
        let (reply, receive) = mpsc::channel();
        let mut state = self.shared.lock();
        let slot = state.streams.get_mut(&id).ok_or_else(|| not_open(id))?;
        if let Some(first) = &slot.first_frame {
            engine.check_same_frame(first, &frame)?;
        }
        slot.queue.push_back(Queued {
            frame,
            since: Instant::now(),
            reply,
        });
        drop(state);
        self.shared.wake.notify_one();
        Ok(Pending(receive))
    }

    /// Closes stream `id`; its frames not yet run are answered with an error.
    pub fn close(&self, id: StreamId) -> Result<()> {
        let mut state = self.shared.lock();
        let slot = state.streams.remove(&id).ok_or_else(|| not_open(id))?;
        state.stats.open = state.streams.len();
        drop(state);
        for q in slot.queue {
            let _ = q
                .reply
                .send(Err(Error::Run("the stream was closed".into())));
        }
        Ok(())
    }

    /// How the pool has run.
    pub fn stats(&self) -> PoolStats {
        self.shared.lock().stats
    }

    /// The inputs a frame holds, in order (batch axis of size 1).
    pub fn frame_inputs(&self) -> Vec<IoInfo> {
        self.shared.engine.batch_one_infos(Role::Pushed)
    }
}

impl Drop for StreamPool {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The refusal of a stream id the pool does not hold.
fn not_open(id: StreamId) -> Error {
    Error::Run(format!(
        "{id} is not open in this pool (closed, or opened by another pool)"
    ))
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "stream {}", self.0)
    }
}

/// A shape with its batch axis set to 1 and other symbolic dimensions left open.
fn batch_one(info: &IoInfo, axis: Option<usize>) -> Vec<usize> {
    info.shape
        .iter()
        .enumerate()
        .map(|(a, d)| match d {
            _ if Some(a) == axis => 1,
            Dim::Fixed(n) => *n,
            Dim::Symbol(_) => 1,
        })
        .collect()
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker: waits for a full batch or the oldest frame's deadline, runs the step.
    fn work(&self) {
        loop {
            let mut state = self.lock();
            let batch = loop {
                if state.shutdown {
                    return;
                }
                let ready: Vec<(Instant, StreamId)> = state
                    .streams
                    .iter()
                    .filter_map(|(id, s)| s.queue.front().map(|q| (q.since, *id)))
                    .collect();
                let oldest = ready.iter().map(|r| r.0).min();
                // A full batch runs at once; so does one with every open stream in it, since
                // waiting could not add to it.
                let full = ready.len() >= self.options.max_batch.min(state.streams.len());
                match oldest {
                    Some(t) if full || t.elapsed() >= self.options.max_wait => {
                        break self.take(&mut state, ready);
                    }
                    Some(t) => {
                        let left = self.options.max_wait.saturating_sub(t.elapsed());
                        state = self
                            .wake
                            .wait_timeout(state, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    None => {
                        state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                    }
                }
            };
            drop(state);
            if batch.is_empty() {
                continue;
            }
            let n = batch.len();
            let started = Instant::now();
            let result = self.engine.step(&batch);
            let mut state = self.lock();
            match result {
                Ok((outputs, states)) => {
                    state.stats.frames += n;
                    state.stats.steps += 1;
                    for ((item, outs), next) in batch.into_iter().zip(outputs).zip(states) {
                        if let Some(slot) = state.streams.get_mut(&item.id) {
                            slot.states = Some(next);
                            if slot.first_frame.is_none() {
                                slot.first_frame = Some(self.engine.frame_key(&item.queued.frame));
                            }
                        }
                        let _ = item.queued.reply.send(Ok(Frame {
                            outputs: outs,
                            queued: started.duration_since(item.queued.since),
                            batch: n,
                        }));
                    }
                }
                Err(e) => {
                    // The frames of one step share their shapes: a failure is theirs alone,
                    // and their streams stay where they were.
                    for item in batch {
                        let _ = item.queued.reply.send(Err(same_error(&e)));
                    }
                }
            }
        }
    }

    /// The head frames of the streams that waited longest, up to a batch, whose frames have
    /// the same shapes; each stream's states go with its frame.
    fn take(&self, state: &mut PoolState, mut ready: Vec<(Instant, StreamId)>) -> Vec<Item> {
        ready.sort();
        let mut key = None;
        let mut batch = vec![];
        for (_, id) in ready {
            if batch.len() == self.options.max_batch {
                break;
            }
            let slot = state.streams.get_mut(&id).unwrap();
            // A frame pushed before its stream's first step ran may disagree with it.
            if let Some(first) = &slot.first_frame {
                if let Err(e) = self.engine.check_same_frame(first, &slot.queue[0].frame) {
                    let queued = slot.queue.pop_front().unwrap();
                    let _ = queued.reply.send(Err(e));
                    continue;
                }
            }
            let this = self.engine.batch_key(slot);
            if *key.get_or_insert_with(|| this.clone()) != this {
                continue;
            }
            let queued = slot.queue.pop_front().unwrap();
            batch.push(Item {
                id,
                queued,
                start: slot.start.clone(),
                states: slot.states.clone(),
            });
        }
        batch
    }
}

/// A stream's frame in a step.
struct Item {
    id: StreamId,
    queued: Queued,
    start: Vec<Tensor>,
    states: Option<Vec<TValue>>,
}

impl Engine {
    fn infos(&self, role: Role) -> Vec<IoInfo> {
        self.model
            .inputs()
            .iter()
            .zip(&self.roles)
            .filter(|(_, r)| **r == role)
            .map(|(i, _)| i.clone())
            .collect()
    }

    fn axis_of(&self, name: &str) -> Option<usize> {
        let ix = self.model.inputs().iter().position(|i| i.name == name)?;
        self.batch_axes[ix]
    }

    /// The inputs of a role as one stream gives them: batch axis of size 1.
    fn batch_one_infos(&self, role: Role) -> Vec<IoInfo> {
        self.infos(role)
            .into_iter()
            .map(|mut info| {
                if let Some(axis) = self.axis_of(&info.name) {
                    info.shape[axis] = Dim::Fixed(1);
                }
                if let Kind::Stream { time_axes, .. } = &self.kind {
                    let ix = self.model.inputs().iter().position(|i| i.name == info.name);
                    if let Some(axis) = ix.and_then(|ix| time_axes[ix]) {
                        info.shape[axis] = Dim::Symbol(crate::stream::STREAM_SEQ.into());
                    }
                }
                info
            })
            .collect()
    }

    /// Checks a pushed frame against what the pool takes.
    fn check_frame(&self, frame: &[Tensor]) -> Result<()> {
        let infos = self.batch_one_infos(Role::Pushed);
        check_inputs(&infos, frame).map_err(|e| match e {
            Error::Input { .. } if frame.len() != infos.len() => {
                let per_stream = self.infos(Role::PerStream);
                let given = if per_stream.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} {} given once per stream (with open_from) and then carried by \
                         the pool",
                        per_stream
                            .iter()
                            .map(|i| format!("'{}'", i.name))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if per_stream.len() == 1 { "is" } else { "are" }
                    )
                };
                Error::Input {
                    name: infos
                        .first()
                        .map(|i| i.name.clone())
                        .unwrap_or_else(|| "frame".into()),
                    message: format!(
                        "a frame of this pool holds {} tensor{} ({}), found {}{given}",
                        infos.len(),
                        if infos.len() == 1 { "" } else { "s" },
                        infos
                            .iter()
                            .map(|i| i.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        frame.len()
                    ),
                }
            }
            e => e,
        })
    }

    /// The model input index of each pushed tensor, and its time axis (streaming models).
    fn pushed_axes(&self) -> Vec<(usize, Option<usize>)> {
        (0..self.roles.len())
            .filter(|&ix| self.roles[ix] == Role::Pushed)
            .map(|ix| {
                let time = match &self.kind {
                    Kind::Stream { time_axes } => time_axes[ix],
                    Kind::Feedback { .. } => None,
                };
                (ix, time)
            })
            .collect()
    }

    /// A frame's shapes, a streaming model's time axis set to 0.
    fn frame_key(&self, frame: &[Tensor]) -> Vec<Vec<usize>> {
        frame
            .iter()
            .zip(self.pushed_axes())
            .map(|(t, (_, time))| {
                let mut shape = t.shape().to_vec();
                if let Some(axis) = time {
                    shape[axis] = 0;
                }
                shape
            })
            .collect()
    }

    /// A frame's shapes as messages print them (the time axis as `time`).
    fn frame_shapes_text(&self, key: &[Vec<usize>]) -> String {
        key.iter()
            .zip(self.pushed_axes())
            .map(|(shape, (_, time))| {
                shape_string(shape.iter().enumerate().map(|(a, d)| {
                    if Some(a) == time {
                        "time".to_string()
                    } else {
                        d.to_string()
                    }
                }))
            })
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// Refuses a frame of a streaming model's stream whose shape (time axis aside) is not its
    /// first frame's: the stream's carried states have that shape.
    fn check_same_frame(&self, first: &[Vec<usize>], frame: &[Tensor]) -> Result<()> {
        if matches!(self.kind, Kind::Feedback { .. }) {
            return Ok(());
        }
        let key = self.frame_key(frame);
        match (0..key.len()).find(|&k| key[k] != first[k]) {
            None => Ok(()),
            Some(k) => Err(Error::Input {
                name: self.model.inputs()[self.pushed_axes()[k].0].name.clone(),
                message: format!(
                    "shape {}, but this stream's first frame had {}: a stream keeps its batch \
                     and feature sizes (open another stream for frames of this shape)",
                    shape_string(frame[k].shape()),
                    self.frame_shapes_text(&first[k..k + 1]),
                ),
            }),
        }
    }

    /// The shapes of a stream's per-stream values as its next step takes them: for a
    /// fed-back state, the state carried from its last frame once there is one.
    fn per_stream_shapes(&self, start: &[Tensor], states: Option<&Vec<TValue>>) -> ShapeKey {
        let per_stream = (0..self.roles.len()).filter(|&ix| self.roles[ix] == Role::PerStream);
        per_stream
            .zip(start)
            .map(|(ix, t)| match (&self.kind, states) {
                (Kind::Feedback { pairs }, Some(states)) => {
                    let k = pairs.iter().position(|p| p.0 == ix).unwrap();
                    states[k].shape().to_vec()
                }
                _ => t.shape().to_vec(),
            })
            .collect()
    }

    /// What the frames of one step must share: their shapes (time axis included) and their
    /// streams' per-stream shapes.
    fn batch_key(&self, slot: &Slot) -> ShapeKey {
        let mut key: ShapeKey = slot.queue[0]
            .frame
            .iter()
            .map(|t| t.shape().to_vec())
            .collect();
        key.extend(self.per_stream_shapes(&slot.start, slot.states.as_ref()));
        key
    }

    /// Runs one batched step; returns each stream's outputs and next states.
    #[allow(clippy::type_complexity)]
    fn step(&self, batch: &[Item]) -> Result<(Vec<Vec<Tensor>>, Vec<Vec<TValue>>)> {
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
    fn graph(&self, item: &Item) -> Result<Arc<StepGraph>> {
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

    fn build(&self, item: &Item) -> Result<StepGraph> {
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

    fn shared_value(&self, ix: usize) -> Tensor {
        let k = self.roles[..ix]
            .iter()
            .filter(|r| **r == Role::Shared)
            .count();
        self.shared[k].clone()
    }

    /// A model with state pairs: the model itself, typed with its batch axis free, shared
    /// scalar integers folded in.
    fn build_feedback(&self, pairs: &[(usize, usize)], item: &Item) -> Result<StepGraph> {
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

/// The same error again, for each frame of a failed step.
fn same_error(e: &Error) -> Error {
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

/// Refuses a graph whose ops mix the entries of its batch (the symbol `batch`), naming the
/// node.
fn check_batch(model: &TypedModel, batch: &Symbol) -> Result<()> {
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
    fn plan(
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
    fn first_states(&self, start: &[Tensor], plan_model: &TypedModel) -> Result<Vec<TValue>> {
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

/// What [`serve_bench`] measured.
#[derive(Debug, Clone)]
pub struct ServeReport {
    /// Concurrent streams.
    pub streams: usize,
    /// Frames run per stream, each way.
    pub frames: usize,
    /// Frames per second, all streams pooled (one worker thread runs the steps).
    pub pooled_fps: f64,
    /// Frames per second, each stream run on its own (one thread), the same frames.
    pub solo_fps: f64,
    /// Streams per pooled step, on average.
    pub mean_batch: f64,
    /// A pooled frame's wait before its step (p50, p99).
    pub queued: (Duration, Duration),
    /// A pooled frame's time from push to result (p50, p99).
    pub latency: (Duration, Duration),
}

/// Serves `streams` concurrent streams of `model`, `frames` frames each, pooled and then
/// solo, and compares. Each round, every stream pushes `frame` (its batch-1 inputs, the same
/// for all, which does not change the arithmetic's cost) and waits for its result, as calls
/// of a server do. `shared` and `options` are as for [`Model::stream_pool`].
pub fn serve_bench(
    model: &Model,
    options: PoolOptions,
    shared: Vec<Tensor>,
    frame: Vec<Tensor>,
    streams: usize,
    frames: usize,
) -> Result<ServeReport> {
    let feedback = !options.feedback.is_empty();
    let pool = model.stream_pool(options, shared.clone())?;
    let ids: Vec<StreamId> = (0..streams).map(|_| pool.open()).collect::<Result<_>>()?;
    // One warm-up round: plans are made for the batch sizes seen.
    for p in ids
        .iter()
        .map(|id| pool.push(*id, frame.clone()))
        .collect::<Result<Vec<_>>>()?
    {
        p.wait()?;
    }
    let (mut queued, mut latency) = (vec![], vec![]);
    let steps_before = pool.stats().steps;
    let start = Instant::now();
    for _ in 0..frames {
        let pushed = Instant::now();
        let pending = ids
            .iter()
            .map(|id| pool.push(*id, frame.clone()))
            .collect::<Result<Vec<_>>>()?;
        for p in pending {
            let f = p.wait()?;
            queued.push(f.queued);
            latency.push(pushed.elapsed());
        }
    }
    let pooled = start.elapsed();
    let steps = pool.stats().steps - steps_before;

    // Solo: each stream its own, one frame at a time.
    let solo = if feedback {
        let engine = &pool.shared.engine;
        let Kind::Feedback { pairs } = &engine.kind else {
            unreachable!("feedback options make a feedback pool")
        };
        // A batch-1 call: the frame, zeros for the fed-back states, the shared values.
        let (mut pushed, mut shared_values) = (frame.iter(), engine.shared.iter());
        let template = engine
            .roles
            .iter()
            .zip(model.inputs())
            .map(|(role, info)| match role {
                Role::Pushed => Ok(pushed.next().expect("a frame input").clone()),
                Role::Shared => Ok(shared_values.next().expect("a shared input").clone()),
                Role::PerStream => {
                    let shape = batch_one(info, engine.axis_of(&info.name));
                    Tensor::zero_dt(info.dtype, &shape).map_err(|e| Error::Run(chain_message(&e)))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let pairs = pairs.clone();
        drop(pool);
        let mut states: Vec<Vec<Tensor>> =
            vec![pairs.iter().map(|&(i, _)| template[i].clone()).collect(); streams];
        let run = |states: &mut Vec<Vec<Tensor>>| -> Result<()> {
            for s in states.iter_mut() {
                let mut inputs = template.clone();
                for (k, &(i, _)) in pairs.iter().enumerate() {
                    inputs[i] = s[k].clone();
                }
                let out = model.run(inputs)?;
                for (k, &(_, o)) in pairs.iter().enumerate() {
                    s[k] = out[o].clone();
                }
            }
            Ok(())
        };
        run(&mut states)?;
        let start = Instant::now();
        for _ in 0..frames {
            run(&mut states)?;
        }
        start.elapsed()
    } else {
        drop(pool);
        let mut solos: Vec<crate::Stream> = (0..streams)
            .map(|_| model.stream())
            .collect::<Result<_>>()?;
        for s in solos.iter_mut() {
            s.push(frame.clone())?;
        }
        let start = Instant::now();
        for _ in 0..frames {
            for s in solos.iter_mut() {
                s.push(frame.clone())?;
            }
        }
        start.elapsed()
    };
    let percentile = |v: &mut Vec<Duration>, p: f64| -> Duration {
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let total = (streams * frames) as f64;
    Ok(ServeReport {
        streams,
        frames,
        pooled_fps: total / pooled.as_secs_f64(),
        solo_fps: total / solo.as_secs_f64(),
        mean_batch: total / steps.max(1) as f64,
        queued: (percentile(&mut queued, 0.5), percentile(&mut queued, 0.99)),
        latency: (
            percentile(&mut latency, 0.5),
            percentile(&mut latency, 0.99),
        ),
    })
}
