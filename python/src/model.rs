//! `rnn_run.Model`: load a model from a path or bytes, describe its inputs and outputs, run
//! it with the GIL released.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use rnn_run::{Dim, Engine, IoInfo, LoadOptions, Model, WeightFormat};

use crate::convert::{outputs_to_py, tensors_from_py};
use crate::errors::{guarded, Stage};
use crate::stream::{PyPool, PyStream};

/// A graph input or output: `name`, `dtype` (numpy's name, e.g. ``"float32"``) and `shape`
/// (ints for fixed sizes, strings for symbolic ones, e.g. ``["seq", "batch", 5]``).
#[pyclass(name = "IoInfo", module = "rnn_run", frozen, get_all)]
pub struct PyIoInfo {
    name: String,
    dtype: String,
    shape: Py<PyList>,
}

#[pymethods]
impl PyIoInfo {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "IoInfo(name={:?}, dtype={:?}, shape={})",
            self.name,
            self.dtype,
            self.shape.bind(py).repr()?
        ))
    }
}

pub fn io_list<'py>(py: Python<'py>, infos: &[IoInfo]) -> PyResult<Bound<'py, PyList>> {
    let items = infos
        .iter()
        .map(|i| {
            Ok(PyIoInfo {
                name: i.name.clone(),
                dtype: rnn_run::dtype_name(i.dtype),
                shape: dims(py, &i.shape)?.unbind(),
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

pub fn dims<'py>(py: Python<'py>, shape: &[Dim]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for d in shape {
        match d {
            Dim::Fixed(n) => list.append(*n)?,
            Dim::Symbol(s) => list.append(s)?,
        }
    }
    Ok(list)
}

pub fn parse_engine(engine: &str) -> PyResult<Engine> {
    match engine {
        "native" => Ok(Engine::Native),
        "tract" => Ok(Engine::Tract),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "engine must be \"native\" or \"tract\", found {other:?}"
        ))),
    }
}

fn parse_weights(w: &str) -> PyResult<WeightFormat> {
    match w {
        "full" => Ok(WeightFormat::Full),
        "bf16" => Ok(WeightFormat::Bf16),
        "f16" => Ok(WeightFormat::F16),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "recurrent_weights must be \"full\", \"bf16\" or \"f16\", found {other:?}"
        ))),
    }
}

/// An ONNX model loaded by rnn-run: recurrent nodes on rnn-run's native cells, the rest of
/// the graph on tract.
///
/// ``Model(model, threads=1, recurrent_weights="full", engine="native", plan_cache=0,
/// data_dir=None)``: `model` is a path or the model's bytes (a model with external data files
/// loaded from bytes needs `data_dir`, where those files are). `threads` share the work of the
/// recurrent nodes (the GIL is released while a model runs, so Python threads may also run
/// models side by side). `recurrent_weights` is ``"full"`` (exact), ``"bf16"`` or ``"f16"``
/// (recurrent weights stored in 16 bits, faster where a step is bound by memory).
/// Raises `LoadError` when the model cannot be loaded.
#[pyclass(name = "Model", module = "rnn_run", frozen)]
pub struct PyModel {
    pub(crate) model: Model,
}

#[pymethods]
impl PyModel {
    #[new]
    #[pyo3(signature = (model, threads = 1, recurrent_weights = "full", engine = "native", plan_cache = 0, data_dir = None))]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        threads: usize,
        recurrent_weights: &str,
        engine: &str,
        plan_cache: usize,
        data_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let options = LoadOptions {
            engine: parse_engine(engine)?,
            threads,
            plan_cache,
            recurrent_weights: parse_weights(recurrent_weights)?,
        };
        let loaded = if let Ok(bytes) = model.cast::<PyBytes>() {
            let bytes = bytes.as_bytes().to_vec();
            py.detach(|| {
                guarded(Stage::Load, || match &data_dir {
                    Some(dir) => Model::from_bytes_in_with(&bytes, dir, &options),
                    None => Model::from_bytes_with(&bytes, &options),
                })
            })?
        } else {
            let path: PathBuf = model.extract().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "Model() takes a path (str or os.PathLike) or bytes, found {}",
                    model
                        .get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?;
            py.detach(|| guarded(Stage::Load, || Model::load_with(&path, &options)))?
        };
        Ok(PyModel { model: loaded })
    }

    /// The graph inputs, in order (a list of `IoInfo`).
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        io_list(py, self.model.inputs())
    }

    /// The graph outputs, in order (a list of `IoInfo`).
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        io_list(py, self.model.outputs())
    }

    /// Where the model came from (its path, or ``"model"`` when loaded from bytes).
    #[getter]
    fn source(&self) -> String {
        self.model.source().to_string()
    }

    /// The model's ONNX opset (default domain).
    #[getter]
    fn opset(&self) -> i64 {
        self.model.opset()
    }

    /// Runs the model once. `inputs` is a dict of arrays by input name, a list of arrays in
    /// input order, or one array for a model with one input; arrays are numpy arrays (or
    /// anything ``numpy.asarray`` takes) of the element type the model declares. Returns a
    /// dict of numpy arrays by output name, in the model's order. The GIL is released while
    /// the model runs. Raises `InputError` when the inputs do not fit, `RunError` when the
    /// run fails.
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let tensors = tensors_from_py(inputs, self.model.inputs())?;
        let model = &self.model;
        let outputs = py.detach(|| guarded(Stage::Run, || model.run(tensors)))?;
        outputs_to_py(py, self.model.outputs(), outputs)
    }

    /// A stream over the model: each ``push(chunk)`` runs the next time steps, the recurrent
    /// states (and a causal convolution's last frames) carried between pushes, so the pushes'
    /// outputs put together equal one run over the whole sequence.
    ///
    /// `start` holds the inputs without a time axis (initial states, a sample rate), as a
    /// dict by name or a list in the model's order; they hold for the whole stream.
    /// `time_axes`, one entry per model input (an int, or None for a stream-start input),
    /// overrides the time axes found from the graph. Raises `StreamRefused`, naming the node,
    /// when the model cannot be cut into chunks exactly.
    #[pyo3(signature = (start = None, time_axes = None))]
    fn stream(
        &self,
        py: Python<'_>,
        start: Option<&Bound<'_, PyAny>>,
        time_axes: Option<Vec<Option<usize>>>,
    ) -> PyResult<PyStream> {
        PyStream::create(py, &self.model, start, time_axes)
    }

    /// A pool of streams whose pending frames run as one batched step (many calls' voice
    /// activity detection or denoising in one server).
    ///
    /// `max_batch`: the most streams in one step. `max_wait`: seconds a frame waits for others
    /// before a partial batch runs. `feedback`: for a model that carries its state through
    /// inputs and outputs, a dict (or list of pairs) input name → output name fed back from
    /// one frame to the next (Silero VAD: ``{"state": "stateN"}``). `batch_axes`: one entry
    /// per model input (an int, or None for an input every stream shares), overriding the
    /// axes found from the graph. `time_axes`: likewise each input's time axis (an int, or
    /// None for an input without one), for a model whose graph does not show it. `shared`:
    /// the values of the shared inputs (a sample rate),
    /// a dict by name or a list in the model's order. Raises `StreamRefused` when the model's
    /// ops mix the entries of a batch.
    #[pyo3(signature = (max_batch = 64, max_wait = 0.002, feedback = None, batch_axes = None, shared = None, time_axes = None))]
    #[allow(clippy::too_many_arguments)]
    fn pool(
        &self,
        py: Python<'_>,
        max_batch: usize,
        max_wait: f64,
        feedback: Option<&Bound<'_, PyAny>>,
        batch_axes: Option<Vec<Option<usize>>>,
        shared: Option<&Bound<'_, PyAny>>,
        time_axes: Option<Vec<Option<usize>>>,
    ) -> PyResult<PyPool> {
        PyPool::create(
            py,
            &self.model,
            max_batch,
            max_wait,
            feedback,
            (batch_axes, time_axes),
            shared,
        )
    }

    fn __repr__(&self) -> String {
        let io = |infos: &[IoInfo]| {
            infos
                .iter()
                .map(|i| {
                    format!(
                        "{} {} {}",
                        i.name,
                        rnn_run::dtype_name(i.dtype),
                        i.shape_string()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "Model({:?}, inputs: {}; outputs: {})",
            self.model.source(),
            io(self.model.inputs()),
            io(self.model.outputs())
        )
    }
}
