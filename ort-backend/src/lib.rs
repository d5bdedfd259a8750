//! rnn-run as a backend of the [`ort`](https://docs.rs/ort/2.0.0-rc.14) crate: an application
//! written against `ort` 2.0.0-rc.14 runs its ONNX models on rnn-run (spec-exact native RNN,
//! LSTM and GRU cells, the rest of the graph on tract) after one call at start-up:
//!
//! ```ignore
//! ort::set_api(rnn_run_ort::api());
//! ```
//!
//! with `ort` built with `default-features = false` and its `alternative-backend` feature
//! (so that no ONNX Runtime library is downloaded or linked). Sessions load from a file or
//! from bytes; input and output names, element types and shapes (symbolic dimensions keep
//! their names) are the model's; runs take inputs by name, in any order, and return the
//! outputs asked for as ort values. `with_intra_threads(n)` sets rnn-run's worker threads for
//! the recurrent nodes. What rnn-run does not do (execution providers other than the CPU, I/O
//! binding, custom operators, sequences, maps and string tensors, replacing initializers)
//! fails with an `ort::Error` whose code is `NotImplemented` and whose message says so.
//!
//! Data flows one way: ort → [`api`] (the C table) → a session ([`Model`](rnn_run::Model)) →
//! rnn-run.

mod api;
mod error;
mod memory;
mod refuse;
mod session;
mod tensors;
mod value;

pub use api::api;
