#![allow(dead_code)]
pub mod hostile;
pub mod manifest;
pub mod onnx_builder;
pub mod proto;
pub mod random_graph;
pub mod reference;
pub mod rng;
pub mod streaming;
