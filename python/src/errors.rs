//! rnn-run's errors as Python exceptions, and the guard that turns a panic into one.
//!
//! The hierarchy is small on purpose: `RnnRunError` catches everything; below it a model
//! that cannot be loaded (`LoadError`), inputs that do not fit (`InputError`), a failure
//! while running (`RunError`), and a model refused as a stream or a pool
//! (`StreamRefused`). The messages are rnn-run's own, the ones the CLI prints.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use rnn_run::Error;

create_exception!(
    rnn_run,
    RnnRunError,
    PyException,
    "Base class of every error rnn-run raises."
);
create_exception!(
    rnn_run,
    LoadError,
    RnnRunError,
    "The model cannot be loaded: not a file, not ONNX, an unsupported op, a recurrent node \
     whose attributes disagree with the spec."
);
create_exception!(
    rnn_run,
    InputError,
    RnnRunError,
    "The inputs do not fit the model: a missing or unknown name, the count, an element type, \
     a rank or a dimension."
);
create_exception!(
    rnn_run,
    RunError,
    RnnRunError,
    "The model failed while running (tract's error, or a caught panic, named)."
);
create_exception!(
    rnn_run,
    StreamRefused,
    RnnRunError,
    "The model cannot be run as a stream or a pool of streams, with the node that prevents it."
);

/// Where an error happened: the same rnn-run error is a load error while loading.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Load,
    Run,
}

/// rnn-run's error as the matching exception.
pub fn to_py(err: Error, stage: Stage) -> PyErr {
    let message = err.to_string();
    match err {
        Error::Input { .. } => InputError::new_err(message),
        Error::NotStreamable(_) => StreamRefused::new_err(message),
        Error::Io { .. } | Error::InvalidModel { .. } | Error::Parameter { .. } => {
            LoadError::new_err(message)
        }
        _ if stage == Stage::Load => LoadError::new_err(message),
        _ => RunError::new_err(message),
    }
}

pub fn input_error(_py: Python<'_>, message: String) -> PyErr {
    InputError::new_err(message)
}

pub fn run_error(_py: Python<'_>, message: String) -> PyErr {
    RunError::new_err(message)
}

/// Runs `f` (with the GIL released by the caller, or not) and turns a panic into a
/// `RunError` naming it, so that no panic reaches the interpreter.
pub fn guarded<T>(stage: Stage, f: impl FnOnce() -> rnn_run::Result<T>) -> Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Error(e, stage)),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Failure::Panic(message))
        }
    }
}

/// What [`guarded`] caught; made into an exception once the GIL is held again.
pub enum Failure {
    Error(Error, Stage),
    Panic(String),
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        match f {
            Failure::Error(e, stage) => to_py(e, stage),
            Failure::Panic(m) => {
                RunError::new_err(format!("internal error (a panic, caught): {m}"))
            }
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RnnRunError", py.get_type::<RnnRunError>())?;
    m.add("LoadError", py.get_type::<LoadError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("RunError", py.get_type::<RunError>())?;
    m.add("StreamRefused", py.get_type::<StreamRefused>())?;
    Ok(())
}
