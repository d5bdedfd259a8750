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
//! analysis as the time axis (`analyse_batch` in `src/passes/time_axis/`): a model whose ops mix
//! the entries of a batch (a reduction over it, a fixed batch of 1 written into a reshape) is
//! refused with the node named. A stream's result never depends on which others shared its
//! step; the tests check it bit for bit.
//!
//! The files: the public API (here); making a pool from a model (`open`); the worker that
//! gathers pending frames (`scheduler`); a frame checked and keyed by shape (`frames`); one
//! batched step run (`step`); the batched step graph, built and planned (`step_graph`); the
//! `serve-bench` comparison (`serve`).

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

mod frames;
mod open;
mod scheduler;
mod serve;
mod step;
mod step_graph;

pub use serve::{serve_bench, ServeReport};

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
                    "a stream of this pool starts from {}, found {}",
                    IoInfo::counted(&infos, "input"),
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

/// A stream's frame in a step.
struct Item {
    id: StreamId,
    queued: Queued,
    start: Vec<Tensor>,
    states: Option<Vec<TValue>>,
}
