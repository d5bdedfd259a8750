//! rnn-run: run ONNX models exported from PyTorch with spec-exact native RNN, LSTM and GRU
//! cells, while tract runs the rest of the graph.
//!
//! Load a model, run it, read an output as an `ndarray` array (in `Cargo.toml`:
//! `rnn-run = { version = "0.1", default-features = false }`, which leaves out the command
//! line, and `ndarray = "0.17"`, the version tract uses):
//!
//! ```
//! use rnn_run::{inputs, Model, TensorExt};
//!
//! fn main() -> Result<(), rnn_run::Error> {
//!     // The PyTorch tutorial's nn.LSTM(5, 6, 2), exported with torch.onnx.export; called
//!     // as lstm(x, (h0, c0)), x [seq, batch, 5], h0 and c0 [2, batch, 6].
//!     let model = Model::load("fixtures/tutorial/lstm_legacy/model.onnx")?;
//!     let x = ndarray::Array3::<f32>::ones((4, 3, 5));
//!     let h0 = ndarray::Array3::<f32>::zeros((2, 3, 6));
//!     let c0 = ndarray::Array3::<f32>::zeros((2, 3, 6));
//!     let outputs = model.run(inputs![x, h0, c0])?;
//!     // output [seq, batch, 6], h_n and c_n [2, batch, 6]
//!     let y = outputs[0].array_view::<f32>()?;
//!     assert_eq!(y.shape(), [4, 3, 6]);
//!     let h_n = outputs[1].to_array::<f32>()?;
//!     // The last step of the last layer's output is that layer's final hidden state.
//!     assert_eq!(y.slice(ndarray::s![3, .., ..]), h_n.slice(ndarray::s![1, .., ..]));
//!     Ok(())
//! }
//! ```
//!
//! [`Model::load_with`] takes options (threads, engine), [`Model::stream`] runs a model a
//! chunk of time steps at a time, [`torch`] runs an `nn.RNN`/`nn.LSTM`/`nn.GRU` state dict
//! without ONNX, and [`npy`] reads and writes numpy files. Errors are one [`Error`] enum.
//!
//! # Which types are ours, and which are tract's
//!
//! Everything in this crate is rnn-run's own API ([`Model`], [`LoadOptions`], [`Error`],
//! [`IoInfo`], [`Stream`], [`StreamPool`], [`TensorExt`], ...), except two types re-exported
//! from tract 0.23.9 (which rnn-run pins exactly): [`Tensor`], what runs take and return,
//! and [`DatumType`], an element type (as in [`IoInfo::dtype`]). They are re-exported so that
//! no one needs tract as a dependency of their own, and a user with `ndarray` arrays need not
//! name them at all: [`inputs!`] turns owned arrays (of any element types) into
//! [`Model::run`]'s inputs, and [`TensorExt`] reads outputs back as arrays. A new tract version behind them is a breaking
//! change of rnn-run's version.
//!
//! The layers, top-down: [`attrs`] reads a node's attributes, [`gates`] knows gate orders and
//! layouts, [`cells`] computes the recurrences on [`kernels`], [`layer`] runs one node on
//! arrays, [`op`] plugs that into tract, and [`Model`] is what applications use.

#![deny(missing_docs)]

pub mod attrs;
pub mod cells;
mod conv;
mod defaults;
pub mod describe;
pub mod error;
mod files;
pub mod gates;
mod guard;
mod io_info;
pub mod kernels;
pub mod layer;
pub mod model;
pub mod npy;
pub mod op;
mod passes;
pub mod pool;
mod precheck;
mod qint;
pub mod qlstm;
mod refusal;
mod shared;
pub mod sniff;
pub mod stream;
mod symbols;
pub mod tensor;
#[cfg(test)]
mod test_values;
pub mod torch;
mod tract_parser;

pub use describe::ModelInfo;
pub use error::{Error, NodeError, Result};
pub use guard::describe_panic;
pub use kernels::WeightFormat;
pub use model::{
    dtype_name, Dim, Engine, IoInfo, LoadOptions, Model, RecurrentNode, Typing, DEFAULT_PLAN_CACHE,
};
pub use passes::specialize::PlanStats;
pub use pool::{Frame, Pending, PoolOptions, PoolStats, StreamId, StreamPool};
pub use stream::{Stream, StreamOptions, StreamOutput};
pub use tensor::{Element, TensorExt};
pub use tract_hir::internal::{DatumType, Tensor};

/// The README's Rust examples, compiled as doc tests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
