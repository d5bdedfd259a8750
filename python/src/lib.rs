//! The `rnn_run._native` extension module: rnn-run's library for Python, numpy in and numpy
//! out. The `rnn_run` package (python/rnn_run/) re-exports it and adds `check_export`.
//!
//! Data flows one way: Python values → `convert` → rnn-run's `Model`, `Stream`, `StreamPool`
//! (with the GIL released, panics caught) → `convert` → numpy arrays; failures → `errors`.

mod convert;
mod errors;
mod inspect;
mod model;
mod stream;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<model::PyIoInfo>()?;
    m.add_class::<stream::PyStream>()?;
    m.add_class::<stream::PyPool>()?;
    m.add_class::<stream::PyStreamId>()?;
    m.add_class::<stream::PyPending>()?;
    m.add_class::<stream::PyFrame>()?;
    m.add_class::<convert::TensorBuffer>()?;
    m.add_function(wrap_pyfunction!(inspect::inspect, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
