//! rnn-run: run ONNX models exported from PyTorch with spec-exact native RNN, LSTM and GRU
//! cells, while tract runs the rest of the graph.
//!
//! The layers, top-down: [`attrs`] reads a node's attributes, [`gates`] knows gate orders and
//! layouts, [`cells`] computes the recurrences on [`kernels`], [`layer`] runs one node on
//! arrays, [`op`] plugs that into tract, and [`Model`] is what applications use.

#![deny(missing_docs)]

pub mod attrs;
pub mod cells;
pub mod error;
pub mod gates;
pub mod kernels;
pub mod layer;
pub mod model;
pub mod npy;
pub mod op;
mod precheck;
pub mod sniff;
pub mod stream;
pub mod tensor;
pub mod torch;

pub use error::{Error, NodeError, Result};
pub use model::{dtype_name, Dim, Engine, IoInfo, LoadOptions, Model, RecurrentNode};
pub use stream::Stream;
pub use tensor::{Element, TensorExt};
pub use tract_hir::internal::{DatumType, Tensor};

/// The README's Rust examples, compiled as doc tests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
