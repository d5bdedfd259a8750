//! The integer operators of dynamically quantized models (onnxruntime's `quantize_dynamic`):
//! ONNX `ConvInteger` ([`conv`]) and `MatMulInteger` ([`matmul`]) with constant weights, on
//! the integer products of the quantized LSTM ([`crate::qlstm`]'s `int_gemm`: `vpdpbusd` on
//! AVX-512 VNNI, `vpmaddwd` on AVX2, portable otherwise). Their int32 sums are exact (as
//! onnxruntime's), so the results are onnxruntime's bit for bit, including the float scaling
//! that [`crate::passes::qfuse`] folds into them.
//!
//! Each parser keeps tract's op and wires it instead when the node is not covered.

pub mod conv;
pub mod matmul;
#[cfg(test)]
mod tests;

use tract_hir::internal::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::Onnx;

/// A parser of tract-onnx's registry.
type OpBuilder =
    fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// Registers the parsers of `ConvInteger` and `MatMulInteger`.
pub(crate) fn register(onnx: &mut Onnx) {
    conv::register(onnx);
    matmul::register(onnx);
}

/// tract's parsed op as the expansion it is (a copy), when it is one.
fn tract_expansion(op: &dyn InferenceOp) -> Option<Box<dyn Expansion>> {
    op.as_op().downcast_ref::<Box<dyn Expansion>>().cloned()
}
