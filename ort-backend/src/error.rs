//! Errors as ort sees them: an `OrtStatus` is ort-sys's stub `Error` (a code and a message),
//! so that statuses made here and by the stub functions we leave in place are one kind, and
//! rnn-run's errors map to the ONNX Runtime codes an application may match on.

use ort_sys::{OrtErrorCode, OrtStatusPtr};

pub use ort_sys::stub::Error;

/// An rnn-run error as an ort error: its message unchanged (it names the file, node, input or
/// attribute), with the code ONNX Runtime uses for that kind of failure.
pub fn from_rnn_run(err: rnn_run::Error) -> Error {
    use rnn_run::Error as E;
    let code = match &err {
        E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            OrtErrorCode::ORT_NO_SUCHFILE
        }
        E::Io { .. } => OrtErrorCode::ORT_FAIL,
        E::InvalidModel { .. } | E::Node(_) => OrtErrorCode::ORT_INVALID_GRAPH,
        E::Input { .. } | E::ElementType { .. } => OrtErrorCode::ORT_INVALID_ARGUMENT,
        _ => OrtErrorCode::ORT_RUNTIME_EXCEPTION,
    };
    Error::new(code, err.to_string())
}

pub fn invalid_argument(message: impl Into<String>) -> Error {
    Error::new(OrtErrorCode::ORT_INVALID_ARGUMENT, message)
}

pub fn not_implemented(message: impl Into<String>) -> Error {
    Error::new(OrtErrorCode::ORT_NOT_IMPLEMENTED, message)
}

/// Runs the body of an API function: its error, or a panic (a bug here; rnn-run catches
/// tract's own), becomes a status instead of unwinding into ort.
pub fn status(body: impl FnOnce() -> Result<(), Error>) -> OrtStatusPtr {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => OrtStatusPtr::default(),
        Ok(Err(e)) => e.into_sys(),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Error::new_sys(
                OrtErrorCode::ORT_RUNTIME_EXCEPTION,
                format!("rnn-run-ort: internal error (please report it): {what}"),
            )
        }
    }
}
