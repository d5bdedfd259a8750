//! What is done to the whole graph before it runs, each pass in its own file:
//!
//! - [`branches`]: ONNX `If` that types and runs only the branch taken;
//! - [`conv`]: float convolutions onto rnn-run's own kernels, in plan optimization;
//! - [`fixed_length`]: the time axis of a fixed-length export, found by trying its axes;
//! - [`fold`]: constants folded once per plan, with a budget for models run many times;
//! - [`specialize`]: the graph specialized to the actual inputs, plans cached by signature;
//! - [`tdim`]: int64 for the ops tract cannot run on its symbolic integer type;
//! - [`time_axis`]: which graphs may stream, following the time axis through every op;
//! - [`state_io`]: a stream's graph, with what is carried between chunks as inputs/outputs.

pub mod branches;
pub mod conv;
pub mod fixed_length;
pub mod fold;
pub mod specialize;
pub mod state_io;
pub mod tdim;
pub mod time_axis;
