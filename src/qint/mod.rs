//! The integer operators of dynamically quantized models (onnxruntime's `quantize_dynamic`):
//! ONNX `ConvInteger` ([`conv`]) and `MatMulInteger` ([`matmul`]) with constant weights, on
//! the integer products of the quantized LSTM ([`crate::qlstm`]'s `int_gemm`: `vpdpbusd` on
//! AVX-512 VNNI, `vpmaddwd` on AVX2, portable otherwise). Their int32 sums are exact (as
//! onnxruntime's), so the results are onnxruntime's bit for bit, including the float scaling
//! that [`crate::passes::qfuse`] folds into them.
//!
//! Each parser keeps tract's op and wires it instead when the node is not covered ([`OrTract`]).

pub mod conv;
pub mod matmul;
#[cfg(test)]
mod tests;

use tract_hir::internal::*;
use tract_onnx::model::{optional_inputs, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::Onnx;

use crate::tract_parser::TractParser;

/// Registers the parsers of `ConvInteger` and `MatMulInteger`.
pub(crate) fn register(onnx: &mut Onnx) {
    conv::register(onnx);
    matmul::register(onnx);
}

/// What decides, for one op type, whether rnn-run's op covers a node once its inputs are
/// typed.
trait Cover: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// The ONNX op type, and the name of the zero constant wired for an absent activation
    /// zero point.
    const OP_TYPE: &'static str;
    const ZERO_POINT: &'static str;
    type Op: TypedOp;

    /// rnn-run's op when it covers the node as typed, else `None`. The activation's zero
    /// point, when given, has been checked to be one uint8 value.
    fn ours(&self, model: &TypedModel, inputs: &[OutletId]) -> TractResult<Option<Self::Op>>;
}

/// Reads `node` as tract does, and keeps tract's op inside rnn-run's expansion when the node
/// has only the attributes in `attrs`; `cover` gets the slot of the weights' zero point.
fn parse<C: Cover>(
    tract: &TractParser,
    ctx: &ParsingContext,
    node: &NodeProto,
    attrs: &[&str],
    cover: impl FnOnce(Option<usize>) -> TractResult<C>,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let (op, extra) = tract.parse(ctx, node)?;
    // tract's parsed op as the expansion it is (a copy), when it is one.
    let Some(tract) = op.as_op().downcast_ref::<Box<dyn Expansion>>().cloned() else {
        return Ok((op, extra));
    };
    if node.attribute.iter().any(|a| !attrs.contains(&&*a.name)) || !extra.is_empty() {
        return Ok((op, extra));
    }
    let mut zero_points = optional_inputs(node).skip(2);
    let zero_point = zero_points.next().flatten();
    let cover = cover(zero_points.next().flatten())?;
    Ok((
        expand(OrTract {
            cover,
            zero_point,
            tract,
        }),
        vec![],
    ))
}

/// A node wired as rnn-run's op where [`Cover::ours`] covers it, else as tract's.
#[derive(Debug, Clone)]
struct OrTract<C> {
    cover: C,
    /// The input slot of the activation's zero point, when the node has one.
    zero_point: Option<usize>,
    /// tract's own op, for the shapes and for what rnn-run's does not cover.
    tract: Box<dyn Expansion>,
}

impl<C: Cover> Expansion for OrTract<C> {
    fn name(&self) -> StaticName {
        C::OP_TYPE.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.tract.rules(s, inputs, outputs)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let zero_point_ok = match self.zero_point {
            None => true,
            Some(i) => {
                let f = model.outlet_fact(inputs[i])?;
                f.datum_type == DatumType::U8 && f.shape.volume().to_usize().ok() == Some(1)
            }
        };
        let ours = match zero_point_ok {
            true => self.cover.ours(model, inputs)?,
            false => None,
        };
        let Some(op) = ours else {
            return self.tract.wire(prefix, model, inputs);
        };
        let zero_point = match self.zero_point {
            Some(i) => inputs[i],
            None => model.add_const(format!("{prefix}.{}", C::ZERO_POINT), tensor0(0u8))?,
        };
        model.wire_node(prefix, op, &[inputs[0], zero_point])
    }
}
