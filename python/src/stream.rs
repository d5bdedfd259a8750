//! `Model.stream()` and `Model.pool()`: a stream carrying state between chunks, and a pool
//! of streams whose frames run batched; the GIL released while they run or wait.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use rnn_run::{IoInfo, Model, Pending, PoolOptions, Stream, StreamId, StreamOptions, StreamPool};

use crate::convert::{names, outputs_to_py, tensors_from_py};
use crate::errors::{guarded, input_error, Stage};
use crate::model::io_list;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a guarded call was turned into an exception; the value is still usable
    // (a stream is reset by the caller if need be), so a poisoned lock is not an error.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The model inputs a dict names (in the model's order), or `of` when given a list: for
/// values whose set of inputs the caller does not know beforehand (a pool's shared inputs, a
/// stream's start).
fn named_subset(
    value: &Bound<'_, PyAny>,
    model: &Model,
    of: Option<&[IoInfo]>,
) -> PyResult<Vec<IoInfo>> {
    if let Ok(dict) = value.cast::<PyDict>() {
        let all = model.inputs();
        for key in dict.keys() {
            let key: String = key.str()?.extract()?;
            if !all.iter().any(|i| i.name == key) {
                return Err(input_error(
                    value.py(),
                    format!(
                        "input '{key}': the model has no such input (its inputs: {})",
                        names(all)
                    ),
                ));
            }
        }
        let mut out = vec![];
        for info in all {
            if dict.contains(&info.name)? {
                out.push(info.clone());
            }
        }
        return Ok(out);
    }
    Ok(of
        .map(<[IoInfo]>::to_vec)
        .unwrap_or_else(|| model.inputs().to_vec()))
}

/// A model being fed a sequence chunk by chunk (made by `Model.stream()`).
#[pyclass(name = "Stream", module = "rnn_run", frozen)]
pub struct PyStream {
    stream: Mutex<Stream>,
    model: Model,
    pushed: Vec<IoInfo>,
}

impl PyStream {
    pub fn create(
        py: Python<'_>,
        model: &Model,
        start: Option<&Bound<'_, PyAny>>,
        time_axes: Option<Vec<Option<usize>>>,
    ) -> PyResult<PyStream> {
        let start = match start {
            None => vec![],
            Some(value) => {
                let axes = match &time_axes {
                    Some(a) => a.clone(),
                    None => py.detach(|| guarded(Stage::Run, || model.time_axes()))?,
                };
                let start_infos: Vec<IoInfo> = model
                    .inputs()
                    .iter()
                    .zip(&axes)
                    .filter(|(_, a)| a.is_none())
                    .map(|(i, _)| i.clone())
                    .collect();
                let expected = named_subset(value, model, Some(&start_infos))?;
                tensors_from_py(value, &expected)?
            }
        };
        let options = StreamOptions { time_axes };
        let stream = py.detach(|| guarded(Stage::Run, || model.stream_with(&options, start)))?;
        let pushed = stream.time_inputs().to_vec();
        Ok(PyStream {
            stream: Mutex::new(stream),
            model: model.clone(),
            pushed,
        })
    }
}

#[pymethods]
impl PyStream {
    /// Runs the next chunk: the inputs with a time axis (see `time_inputs`) as a dict by name,
    /// a list in order, or one array, each with the same number (one or more) of time steps.
    /// Returns a dict of numpy arrays by output name: per-step outputs for the chunk's steps,
    /// final ones (final states, a head on the last step) after its last step.
    fn push<'py>(
        &self,
        py: Python<'py>,
        chunk: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let tensors = tensors_from_py(chunk, &self.pushed)?;
        let outputs = py.detach(|| guarded(Stage::Run, || lock(&self.stream).push(tensors)))?;
        outputs_to_py(py, self.model.outputs(), outputs)
    }

    /// Forgets the carried states: the next push starts a new sequence (from the same
    /// stream-start inputs).
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| guarded(Stage::Run, || lock(&self.stream).reset()))?;
        Ok(())
    }

    /// How many chunks were pushed since the stream started or was reset.
    #[getter]
    fn pushes(&self) -> usize {
        lock(&self.stream).pushes()
    }

    /// What `push` takes: the inputs with a time axis (a list of `IoInfo`; the time axis is
    /// named ``stream_seq``, any length fits).
    #[getter]
    fn time_inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        io_list(py, &self.pushed)
    }

    /// The names of the inputs given once, when the stream started.
    #[getter]
    fn start_inputs(&self) -> Vec<String> {
        lock(&self.stream)
            .start_inputs()
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// For each output, by name, its time axis (outputs of successive pushes concatenate
    /// along it), or None for an output that holds the value after the latest chunk. Known
    /// after the first push (empty before).
    #[getter]
    fn output_time_axes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let axes = lock(&self.stream).output_seq_axes();
        let dict = PyDict::new(py);
        for (info, axis) in self.model.outputs().iter().zip(axes) {
            dict.set_item(&info.name, axis)?;
        }
        Ok(dict)
    }
}

/// A stream of a pool (made by `Pool.open()`).
#[pyclass(name = "PoolStream", module = "rnn_run", frozen, eq, hash)]
#[derive(PartialEq, Eq, Hash)]
pub struct PyStreamId {
    id: StreamId,
}

#[pymethods]
impl PyStreamId {
    fn __repr__(&self) -> String {
        format!("PoolStream({:?})", self.id)
    }
}

/// Streams of one model whose pending frames run as one batched step (made by
/// `Model.pool()`).
#[pyclass(name = "Pool", module = "rnn_run", frozen)]
pub struct PyPool {
    pool: StreamPool,
    model: Model,
    frame_inputs: Vec<IoInfo>,
}

impl PyPool {
    pub fn create(
        py: Python<'_>,
        model: &Model,
        max_batch: usize,
        max_wait: f64,
        feedback: Option<&Bound<'_, PyAny>>,
        (batch_axes, time_axes): (Option<Vec<Option<usize>>>, Option<Vec<Option<usize>>>),
        shared: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyPool> {
        if !(max_wait.is_finite() && max_wait >= 0.0) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "max_wait must be a number of seconds >= 0, found {max_wait}"
            )));
        }
        let feedback: Vec<(String, String)> = match feedback {
            None => vec![],
            Some(f) => match f.cast::<PyDict>() {
                Ok(d) => d
                    .iter()
                    .map(|(k, v)| Ok((k.extract()?, v.extract()?)))
                    .collect::<PyResult<_>>()?,
                Err(_) => f.extract()?,
            },
        };
        let shared = match shared {
            None => vec![],
            Some(value) => {
                let expected = named_subset(value, model, None)?;
                tensors_from_py(value, &expected)?
            }
        };
        let options = PoolOptions {
            max_batch,
            max_wait: Duration::from_secs_f64(max_wait),
            feedback,
            batch_axes,
            time_axes,
        };
        let pool = py.detach(|| guarded(Stage::Run, || model.stream_pool(options, shared)))?;
        let frame_inputs = pool.frame_inputs();
        Ok(PyPool {
            pool,
            model: model.clone(),
            frame_inputs,
        })
    }
}

#[pymethods]
impl PyPool {
    /// Opens a stream. `start` (a dict by name or a list in the model's order) holds its own
    /// values of the per-stream inputs that are not pushed with each frame (initial states,
    /// a fed-back state's first value, batch 1); by default zeros, or the states the model
    /// computes. Returns the stream's handle.
    #[pyo3(signature = (start = None))]
    fn open(&self, start: Option<&Bound<'_, PyAny>>) -> PyResult<PyStreamId> {
        let start = match start {
            None => vec![],
            Some(value) => {
                let expected = named_subset(value, &self.model, None)?;
                tensors_from_py(value, &expected)?
            }
        };
        let id = guarded(Stage::Run, || self.pool.open_from(start))?;
        Ok(PyStreamId { id })
    }

    /// Queues a frame of a stream: the inputs pushed with every frame (see `frame_inputs`),
    /// batch 1, as a dict by name, a list in order, or one array. Frames of one stream run in
    /// the order they are pushed. Returns a `Pending`; its ``wait()`` gives the `Frame`.
    fn push(&self, stream: &PyStreamId, frame: &Bound<'_, PyAny>) -> PyResult<PyPending> {
        let tensors = tensors_from_py(frame, &self.frame_inputs)?;
        let pending = guarded(Stage::Run, || self.pool.push(stream.id, tensors))?;
        Ok(PyPending {
            state: Mutex::new(Waiting::Queued(pending)),
            outputs: self.model.outputs().to_vec(),
        })
    }

    /// Closes a stream; its frames not yet run are answered with a `RunError`.
    fn close(&self, stream: &PyStreamId) -> PyResult<()> {
        guarded(Stage::Run, || self.pool.close(stream.id))?;
        Ok(())
    }

    /// What a frame holds, in order (a list of `IoInfo`, batch axis of size 1).
    #[getter]
    fn frame_inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        io_list(py, &self.frame_inputs)
    }

    /// How the pool has run: a dict with ``frames`` run, ``steps`` run, ``open`` streams.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.pool.stats();
        let dict = PyDict::new(py);
        dict.set_item("frames", s.frames)?;
        dict.set_item("steps", s.steps)?;
        dict.set_item("open", s.open)?;
        Ok(dict)
    }
}

/// A frame pushed to a pool and not yet waited for.
#[pyclass(name = "Pending", module = "rnn_run", frozen)]
pub struct PyPending {
    state: Mutex<Waiting>,
    outputs: Vec<IoInfo>,
}

enum Waiting {
    Queued(Pending),
    /// `done()` saw the result come in: kept for `wait()`.
    Answered(rnn_run::Result<rnn_run::Frame>),
    Taken,
}

#[pymethods]
impl PyPending {
    /// Blocks (the GIL released) until the frame's step has run; returns the `Frame`. Raises
    /// `RunError` when the step failed or the stream was closed first. A frame is waited for
    /// once.
    fn wait(&self, py: Python<'_>) -> PyResult<PyFrame> {
        let taken = std::mem::replace(&mut *lock(&self.state), Waiting::Taken);
        let frame = match taken {
            Waiting::Taken => {
                return Err(crate::errors::run_error(
                    py,
                    "this frame was already waited for".into(),
                ))
            }
            Waiting::Answered(result) => guarded(Stage::Run, || result)?,
            Waiting::Queued(pending) => py.detach(|| guarded(Stage::Run, || pending.wait()))?,
        };
        PyFrame::new(py, &self.outputs, frame)
    }

    /// Whether the frame's result is in (``wait()`` will not block).
    fn done(&self) -> bool {
        let mut state = lock(&self.state);
        if let Waiting::Queued(pending) = &*state {
            match pending.try_wait() {
                Some(result) => *state = Waiting::Answered(result),
                None => return false,
            }
        }
        true
    }
}

/// One frame's result: `outputs` (a dict of numpy arrays by output name, batch 1), `queued`
/// (seconds the frame waited before its step started) and `batch` (how many streams shared
/// its step).
#[pyclass(name = "Frame", module = "rnn_run", frozen, get_all)]
pub struct PyFrame {
    outputs: Py<PyDict>,
    queued: f64,
    batch: usize,
}

impl PyFrame {
    fn new(py: Python<'_>, infos: &[IoInfo], frame: rnn_run::Frame) -> PyResult<PyFrame> {
        Ok(PyFrame {
            outputs: outputs_to_py(py, infos, frame.outputs)?.unbind(),
            queued: frame.queued.as_secs_f64(),
            batch: frame.batch,
        })
    }
}

#[pymethods]
impl PyFrame {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let keys = PyTuple::new(py, self.outputs.bind(py).keys())?;
        Ok(format!(
            "Frame(outputs={}, queued={:.6}, batch={})",
            keys.repr()?,
            self.queued,
            self.batch
        ))
    }
}
