//! ONNX `MatMulInteger` with a constant 2-D B, on the quantized LSTM's integer products.
//!
//! `y[.., m, n] = Σ_k (a[.., m, k] − a_zp)·(b[k, n] − b_zp[n])` in int32: the rows of A (all
//! leading axes flattened) are the product's activations ([`QuantRows`], one zero point), B
//! minus its zero point is packed once when the model is typed ([`IntMatrix`]; a zero point
//! per column is subtracted column by column). [`crate::passes::qfuse`] folds the `Cast` to
//! float, the `Mul` by the scales and a float bias `Add` that `quantize_dynamic` puts after
//! it; the op then writes `bias[n] + (sum as f32 · mult)`, the same float operations.
//!
//! Left to tract's op: int8 A, a zero point of A per row, B computed at run time or of rank
//! other than 2.

use std::sync::Arc;

use tract_hir::internal::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::Onnx;

use crate::qlstm::int_gemm::{int_product_to, IntMatrix, Path, QuantRows, Sink};
use crate::tract_parser::TractParser;

use super::Cover;

static TRACT_MATMUL_INTEGER: TractParser = TractParser::new("MatMulInteger");

/// Replaces tract's parser for `MatMulInteger` (which stays the fallback).
pub fn register(onnx: &mut Onnx) {
    TRACT_MATMUL_INTEGER.replace_with(onnx, parse);
}

fn parse(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    super::parse(&TRACT_MATMUL_INTEGER, ctx, node, &[], |b_zp| {
        Ok(MatMulCover { b_zp })
    })
}

/// The slot of a `MatMulInteger` node's B zero point.
#[derive(Debug, Clone)]
struct MatMulCover {
    b_zp: Option<usize>,
}

impl Cover for MatMulCover {
    const OP_TYPE: &'static str = "MatMulInteger";
    const ZERO_POINT: &'static str = "a_zero_point";
    type Op = QMatMul;

    fn ours(&self, model: &TypedModel, inputs: &[OutletId]) -> TractResult<Option<QMatMul>> {
        let a = model.outlet_fact(inputs[0])?;
        let b = model.outlet_fact(inputs[1])?;
        let Some(b) = b.konst.clone() else {
            return Ok(None);
        };
        let b_zp = match self.b_zp {
            None => Some(Arc::new(tensor0(0i32))),
            Some(i) => model.outlet_fact(inputs[i])?.konst.clone(),
        };
        let Some(b_zp) = b_zp else {
            return Ok(None);
        };
        if a.datum_type != DatumType::U8 || a.rank() < 2 || a.is_exotic() {
            return Ok(None);
        }
        QMatMul::new(b, &b_zp, Path::selected())
    }
}

/// The op: inputs `a` (uint8, rank ≥ 2), `a_zero_point` (uint8, one value), and once fused,
/// the float multiplier (one value) and the float bias (one per column).
#[derive(Debug, Clone)]
pub struct QMatMul {
    w: Arc<IntMatrix>,
    /// B as the file gives it, and its zero point, for equality.
    b: Arc<Tensor>,
    b_zp: Tensor,
    path: Path,
    pub(crate) fused: Fused,
}

/// What [`crate::passes::qfuse`] folded into the op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fused {
    /// The output is float (a `Cast` followed); else the int32 sums.
    pub float: bool,
    /// A multiplier input (float, one value) scales the floats.
    pub mult: bool,
    /// A bias input (float, one per column) is added last.
    pub bias: bool,
}

impl PartialEq for QMatMul {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
            && self.fused == other.fused
            && self.b_zp == other.b_zp
            && (Arc::ptr_eq(&self.b, &other.b) || self.b == other.b)
    }
}
impl Eq for QMatMul {}

impl QMatMul {
    /// The op for the constant `b` (`[K, N]`, int8 or uint8) with zero point `b_zp` (one
    /// value, or one per column), products on `path`; `None` outside what it covers.
    pub(crate) fn new(b: Arc<Tensor>, b_zp: &Tensor, path: Path) -> TractResult<Option<QMatMul>> {
        if b.rank() != 2 || !matches!(b.datum_type(), DatumType::U8 | DatumType::I8) {
            return Ok(None);
        }
        let (k, n) = (b.shape()[0], b.shape()[1]);
        let zp = b_zp.cast_to::<i32>()?;
        let zp = zp.try_as_plain_ram()?.as_slice::<i32>()?.to_vec();
        let per_column = b_zp.rank() == 1 && zp.len() == n;
        if !(b_zp.len() == 1 && b_zp.rank() <= 1 || per_column) {
            return Ok(None);
        }
        let values = b.cast_to::<i32>()?;
        let values = values.try_as_plain_ram()?.as_slice::<i32>()?.to_vec();
        let centered: Vec<i16> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (v - zp[if per_column { i % n } else { 0 }]) as i16)
            .collect();
        Ok(Some(QMatMul {
            w: Arc::new(IntMatrix::for_path(k, n, &centered, path)),
            b,
            b_zp: b_zp.clone(),
            path,
            fused: Fused::default(),
        }))
    }
}

impl Op for QMatMul {
    fn name(&self) -> StaticName {
        "QMatMulInteger".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{}×{} path {:?} fused {:?}",
            self.w.k, self.w.n, self.path, self.fused
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for QMatMul {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (k, n) = (self.w.k, self.w.n);
        let shape = inputs[0].shape();
        ensure!(
            shape.len() >= 2 && shape[shape.len() - 1] == k,
            "A of shape {shape:?} for {k} rows of B"
        );
        let a = inputs[0].try_as_plain_ram()?;
        let a = a.as_slice::<u8>()?;
        let a_zp = inputs[1].cast_to_scalar::<u8>()?;
        let rows = a.len() / k.max(1);
        let mut q = QuantRows::new(k);
        q.reset(rows, a_zp);
        if k > 0 {
            for (r, row) in a.chunks_exact(k).enumerate() {
                q.set_row(r, row.iter().copied());
            }
        }
        let mut out_shape: TVec<usize> = shape.into();
        *out_shape.last_mut().unwrap() = n;
        if !self.fused.float {
            let mut out = vec![0i32; rows * n];
            int_product_to(&q, &self.w, &[], Sink::I32(&mut out));
            let out = tract_ndarray::ArrayD::from_shape_vec(&*out_shape, out)?;
            return Ok(tvec![out.into_tensor().into_tvalue()]);
        }
        let mult = if self.fused.mult {
            ensure!(
                inputs[2].len() == 1,
                "a multiplier of {} values",
                inputs[2].len()
            );
            inputs[2].cast_to_scalar::<f32>()?
        } else {
            1.0
        };
        let mut out = vec![0f32; rows * n];
        if self.fused.bias {
            let b = &inputs[2 + self.fused.mult as usize];
            ensure!(b.len() == n, "{} biases for {n} columns", b.len());
            let b = b.try_as_plain_ram()?;
            let b = b.as_slice::<f32>()?;
            for row in out.chunks_exact_mut(n.max(1)) {
                row.copy_from_slice(b);
            }
        }
        let sink = Sink::F32 {
            out: &mut out,
            mult: &[mult],
            // bias + product: onnxruntime's product + bias, the same float sum.
            accumulate: self.fused.bias,
        };
        int_product_to(&q, &self.w, &[], sink);
        let out = tract_ndarray::ArrayD::from_shape_vec(&*out_shape, out)?;
        Ok(tvec![out.into_tensor().into_tvalue()])
    }
}

impl TypedOp for QMatMul {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        ensure!(shape.len() >= 2, "A of rank {}", shape.len());
        *shape.last_mut().unwrap() = self.w.n.into();
        let dt = if self.fused.float {
            DatumType::F32
        } else {
            DatumType::I32
        };
        Ok(tvec![dt.fact(shape)])
    }

    as_op!();
}
