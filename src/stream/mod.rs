//! Streaming: run a model a chunk of time steps at a time, everything carried between chunks
//! (recurrent states, a causal convolution's last frames) kept by the stream.
//!
//! A stream is accepted only where the time-axis analysis (`src/passes/time_axis/`)
//! proves that the chunked run equals the whole run; everything else is refused with the node
//! named. The stream then runs a copy of the graph in which every carried value is an explicit
//! input and output (`src/passes/state_io.rs`), planned per chunk shape: so chunks of any
//! length fit, even on a model exported with a fixed length.
//!
//! The files: the options, outputs and accessors (here); opening a stream, its time axes found
//! (`open`); its graph typed, analysed and made explicit (`build`); pushing chunks through a
//! plan per chunk shape (`push`).

use std::collections::VecDeque;
use std::sync::Arc;

use tract_hir::internal::*;

use crate::error::{chain_message, shape_string, Error, Result};
use crate::model::{check_inputs, optimize_typed, without_panics, Dim, IoInfo, Model};
use crate::passes::state_io::{explicit_states, StateStart, StreamGraph};
use crate::passes::time_axis::{analyse, find_time_axes, Flow};

mod build;
mod fixed_length;
mod open;
mod push;

pub(crate) use build::{free_reshape_lengths, type_for_analysis};

pub use crate::symbols::{POOL_BATCH, STREAM_SEQ};

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

/// Why a stream's graph was not built.
pub(crate) enum Building {
    /// The analysis refused it (final).
    Refused(String),
    /// tract could not type it with these shapes.
    Untyped(String),
}

impl Stream {
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
