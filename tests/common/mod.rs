#![allow(dead_code)]
pub mod onnx_builder;
pub mod proto;
pub mod reference;
