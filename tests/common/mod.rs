#![allow(dead_code)]
pub mod onnx_builder;
pub mod reference;
