//! Replacing one of tract-onnx's parsers while keeping tract's own to fall back on.
//!
//! rnn-run reads a few ONNX ops itself (where tract's reading is wrong, or its op slow), but
//! only in the opsets and forms it handles; every other node of that type must still get
//! exactly what tract builds. So each replacement keeps the parser it displaces, here.

use std::sync::OnceLock;

use tract_hir::internal::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::Onnx;

/// A parser of tract-onnx's registry.
pub(crate) type OpBuilder =
    fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract's parser of one op type, once rnn-run's has taken its place in the registry.
pub(crate) struct TractParser {
    op_type: &'static str,
    parser: OnceLock<OpBuilder>,
}

impl TractParser {
    pub(crate) const fn new(op_type: &'static str) -> Self {
        TractParser {
            op_type,
            parser: OnceLock::new(),
        }
    }

    /// Registers `ours` for the op type, keeping tract's parser (the first registry seen:
    /// every registry tract-onnx makes holds the same one).
    pub(crate) fn replace_with(&'static self, onnx: &mut Onnx, ours: OpBuilder) {
        if let Some(tract) = onnx.op_register.0.get(self.op_type) {
            let _ = self.parser.set(*tract);
        }
        onnx.op_register.insert(self.op_type, ours);
    }

    /// tract's reading of `node`.
    pub(crate) fn parse(
        &self,
        ctx: &ParsingContext,
        node: &NodeProto,
    ) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
        let tract = self
            .parser
            .get()
            .with_context(|| format!("tract's {} parser", self.op_type))?;
        tract(ctx, node)
    }
}
