//! What is done to the whole graph before it runs, each pass in its own file:
//!
//! - [`branches`]: ONNX `If` that types and runs only the branch taken;
//! - [`specialize`]: the graph specialized to the actual inputs, plans cached by signature;
//! - [`tdim`]: int64 for the ops tract cannot run on its symbolic integer type.

pub mod branches;
pub mod specialize;
pub mod tdim;
