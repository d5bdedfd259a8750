//! The library's error type: every failure a caller may want to tell apart.
//!
//! Inside tract, our op reports problems as [`NodeError`] wrapped in tract's `anyhow` errors;
//! [`Error::from_tract`] digs it back out so that callers can `match` on the kind instead of
//! parsing text.

use std::path::PathBuf;

/// Everything that can go wrong when loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read (model, external data, input or reference file).
    #[error("{path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// The model file is not a usable ONNX model (not protobuf, no graph, unsupported op, ...).
    #[error("{what}: {message}")]
    InvalidModel {
        /// The model's path, or "model" when loaded from bytes.
        what: String,
        /// What is wrong, most specific first.
        message: String,
    },

    /// A recurrent node's attributes or inputs disagree with the spec or with each other.
    #[error(transparent)]
    Node(#[from] NodeError),

    /// An input given to `run` does not fit the graph (count, dtype, rank, dimension).
    #[error("input '{name}': {message}")]
    Input {
        /// The graph input's name.
        name: String,
        /// Expected versus found.
        message: String,
    },

    /// A PyTorch parameter (state-dict entry, see [`crate::torch`]) is missing, unexpected, or
    /// of the wrong shape or element type.
    #[error("parameter '{key}': {message}")]
    Parameter {
        /// The state-dict key, prefix included (e.g. `lstm.weight_ih_l0`).
        key: String,
        /// Expected versus found.
        message: String,
    },

    /// A tensor holds another element type than the one asked for (reading an output as an
    /// array with [`crate::TensorExt`]).
    #[error("expected a tensor of {expected}, found {found}: {hint}")]
    ElementType {
        /// The element type asked for, e.g. `float32 (f32)`.
        expected: String,
        /// The tensor's element type.
        found: String,
        /// What to do instead, e.g. `read it as f64`.
        hint: String,
    },

    /// The model cannot be run as a stream (reverse direction, sequence_lens, time-mixing op).
    #[error("cannot stream this model: {0}")]
    NotStreamable(String),

    /// Any other failure while running the graph.
    #[error("{0}")]
    Run(String),
}

impl Error {
    /// Turns a tract error into ours, keeping a [`NodeError`] found anywhere in its chain.
    pub fn from_tract(err: anyhow::Error, what: impl FnOnce(String) -> Error) -> Error {
        for cause in err.chain() {
            if let Some(node) = cause.downcast_ref::<NodeError>() {
                return Error::Node(node.clone());
            }
        }
        what(chain_message(&err))
    }
}

/// One line naming every layer of an anyhow error, outermost first, without repeats.
pub(crate) fn chain_message(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// A shape as messages print it: `[1, seq, 5]`.
pub(crate) fn shape_string<D: std::fmt::Display>(dims: impl IntoIterator<Item = D>) -> String {
    let dims: Vec<String> = dims.into_iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// A problem with one recurrent node: which node, which attribute or input, expected vs found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node '{node}' ({op}): {message}")]
pub struct NodeError {
    /// The node's name in the graph (or its first output's name when unnamed).
    pub node: String,
    /// `RNN`, `LSTM` or `GRU`.
    pub op: String,
    /// What is wrong, naming the attribute or input.
    pub message: String,
}

/// Result alias for the public API.
pub type Result<T> = std::result::Result<T, Error>;
