//! ONNX `Slice` (opset 10 and later) clamped as the spec says, where tract's reading differs.
//!
//! The spec adds the dimension to a negative start or end once, then clamps: for a positive
//! step, start and end to `[0, dim]`; for a negative step, start to `[0, dim - 1]` and end to
//! `[-1, dim - 1]`. tract-core 0.23.9 (`StridedSlice::prepare_one_dim`) returns an empty slice
//! for a negative step whose start is still negative after adding the dimension (`x[-dim-5 ::
//! -1]` is `[x[0]]` by the spec; tract gave `[]`), and fails ("start <= end") on an empty
//! slice with a negative step (`x[0 : 3 : -1]`). Where the dimension is known, this op clamps
//! the bounds as the spec does and hands tract in-range ones it reads the same way (a
//! non-empty slice with a negative step that runs to the start ends at the `INT64_MIN`
//! sentinel, an empty one is `0 : 0`), at inference, typing and evaluation alike; where it is
//! symbolic, tract's reading stands (a plan, typed for actual inputs, always knows it).
//! [`super::slice_bounds`] has already rewritten bounds past 32 bits in the protobuf.

use tract_core::ops::array::StridedSlice;
use tract_hir::internal::*;
use tract_onnx::model::{optional_inputs, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::Onnx;

use crate::tract_parser::TractParser;

/// tract's own parser, for opsets before 10 (bounds as attributes).
static TRACT_SLICE: TractParser = TractParser::new("Slice");

/// Replaces tract's parser for `Slice`.
pub fn register(onnx: &mut Onnx) {
    TRACT_SLICE.replace_with(onnx, parse_slice);
}

fn parse_slice(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if ctx.onnx_operator_set_version < 10 {
        return TRACT_SLICE.parse(ctx, node);
    }
    let mut optional = optional_inputs(node).skip(3);
    Ok((
        Box::new(ExactSlice(StridedSlice {
            begin_mask: 0,
            end_mask: 0,
            shrink_axis_mask: 0,
            optional_axes_input: optional.next().flatten(),
            optional_steps_input: optional.next().flatten(),
        })),
        vec![],
    ))
}

/// tract's `StridedSlice`, its starts and ends clamped first.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(crate) struct ExactSlice(StridedSlice);

/// (start, end) of one axis as the spec clamps them against `dim`, in values tract reads the
/// same way.
fn clamped(dim: i64, start: i64, end: i64, step: i64) -> (i64, i64) {
    let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
    let (s, e) = (fix(start), fix(end));
    if step > 0 {
        let (s, e) = (s.clamp(0, dim), e.clamp(0, dim));
        if e <= s {
            (0, 0)
        } else {
            (s, e)
        }
    } else if dim == 0 {
        (0, 0)
    } else {
        let (s, e) = (s.clamp(0, dim - 1), e.clamp(-1, dim - 1));
        match e {
            _ if s <= e => (0, 0),
            -1 => (s, i64::MIN),
            e => (s, e),
        }
    }
}

fn ints(t: &Tensor) -> TractResult<Vec<i64>> {
    Ok(t.cast_to::<i64>()?
        .try_as_plain_ram()?
        .as_slice::<i64>()?
        .to_vec())
}

impl ExactSlice {
    /// The starts and ends (int64) tract is to read for an input of `shape`, from `params`
    /// (the inputs after the data: starts, ends, then axes and steps where present). Axes of
    /// symbolic size keep the file's bounds; bounds computed from a symbolic size (a slice to
    /// the input's own length) are all left to tract.
    fn bounds(&self, shape: &[TDim], params: &[&Tensor]) -> TractResult<(Tensor, Tensor)> {
        let (Ok(mut starts), Ok(mut ends)) = (ints(params[0]), ints(params[1])) else {
            return Ok((params[0].clone(), params[1].clone()));
        };
        let rank = shape.len() as i64;
        let axes: Vec<i64> = match self.0.optional_axes_input {
            Some(i) => ints(params[i - 1])?,
            None => (0..starts.len() as i64).collect(),
        };
        let steps: Vec<i64> = match self.0.optional_steps_input {
            Some(i) => ints(params[i - 1])?,
            None => vec![1; starts.len()],
        };
        ensure!(
            ends.len() == starts.len() && axes.len() == starts.len() && steps.len() == starts.len(),
            "starts, ends, axes and steps differ in length"
        );
        for ix in 0..starts.len() {
            let axis = if axes[ix] < 0 {
                axes[ix] + rank
            } else {
                axes[ix]
            };
            ensure!((0..rank).contains(&axis), "axis {} out of range", axes[ix]);
            ensure!(steps[ix] != 0, "a step of 0");
            match shape[axis as usize].to_i64() {
                Ok(dim) => (starts[ix], ends[ix]) = clamped(dim, starts[ix], ends[ix], steps[ix]),
                // tract reads a bound against a symbolic size as if it were in range, which a
                // bound this far out is not for any size rnn-run holds: the graph waits for
                // actual shapes instead of typing to a nonsense size.
                Err(_) => ensure!(
                    [starts[ix], ends[ix]]
                        .iter()
                        .all(|&b| b.unsigned_abs() < 1 << 30
                            || [i64::MIN, i64::MIN + 1, i64::MAX].contains(&b)),
                    "Slice bounds {} and {} need the size of axis {axis}",
                    starts[ix],
                    ends[ix]
                ),
            }
        }
        Ok((tensor1(&starts), tensor1(&ends)))
    }

    fn strides(&self, params: &[&Tensor], n: usize) -> TractResult<Vec<i32>> {
        Ok(match self.0.optional_steps_input {
            Some(i) => params[i - 1]
                .cast_to::<i32>()?
                .try_as_plain_ram()?
                .as_slice::<i32>()?
                .to_vec(),
            None => vec![1; n],
        })
    }
}

impl Op for ExactSlice {
    fn name(&self) -> StaticName {
        "StridedSlice".into()
    }

    not_a_typed_op!();
}

impl EvalOp for ExactSlice {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let shape: Vec<TDim> = inputs[0].shape().iter().map(|&d| d.to_dim()).collect();
        let params: Vec<&Tensor> = inputs[1..].iter().map(|t| &**t).collect();
        let (starts, ends) = self.bounds(&shape, &params)?;
        inputs[1] = starts.into_tvalue();
        inputs[2] = ends.into_tvalue();
        self.0.eval(ctx, inputs)
    }
}

impl InferenceRulesOp for ExactSlice {
    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let op = &self.0;
        check_input_arity(
            inputs,
            3 + op.optional_axes_input.is_some() as usize
                + op.optional_steps_input.is_some() as usize,
        )?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].rank, &outputs[0].rank)?;
        s.equals(&inputs[1].rank, 1)?;
        s.equals(&inputs[2].rank, 1)?;
        s.equals(&inputs[1].shape[0], &inputs[2].shape[0])?;
        s.given(&inputs[0].shape, move |s, shape| {
            s.given_all(inputs[1..].iter().map(|i| &i.value), move |s, params| {
                let params: Vec<&Tensor> = params.iter().map(|t| &**t).collect();
                let (starts, ends) = self.bounds(&shape, &params)?;
                let strides = self.strides(&params, starts.len())?;
                let rank = shape.len() as i64;
                let axes: Vec<usize> = match op.optional_axes_input {
                    Some(i) => ints(params[i - 1])?
                        .iter()
                        .map(|&a| if a < 0 { a + rank } else { a } as usize)
                        .collect(),
                    None => (0..starts.len()).collect(),
                };
                let mut output = shape.clone();
                for (ix, &axis) in axes.iter().enumerate() {
                    output[axis] = op
                        .prepare_one_dim(ix, &shape[axis], &starts, &ends, &strides)?
                        .soft_len()?;
                }
                s.equals(&outputs[0].shape, output)
            })
        })
    }

    as_op!();

    fn to_typed(
        &self,
        _source: &InferenceModel,
        node: &InferenceNode,
        target: &mut TypedModel,
        mapping: &HashMap<OutletId, OutletId>,
    ) -> TractResult<TVec<OutletId>> {
        let mut inputs: TVec<OutletId> = node.inputs.iter().map(|o| mapping[o]).collect();
        let shape: TVec<TDim> = target.outlet_fact(inputs[0])?.shape.to_tvec();
        let params: Option<Vec<Arc<Tensor>>> = inputs[1..]
            .iter()
            .map(|&o| target.outlet_fact(o).map(|f| f.konst.clone()))
            .collect::<TractResult<_>>()?;
        // Bounds known only when the graph runs are tract's to read (it needs them constant
        // for all but unit steps).
        if let Some(params) = params {
            let params: Vec<&Tensor> = params.iter().map(|t| &**t).collect();
            let (starts, ends) = self.bounds(&shape, &params)?;
            if starts != *params[0] || ends != *params[1] {
                for (slot, value, what) in [(1, starts, "starts"), (2, ends, "ends")] {
                    let name = target
                        .unique_name(format!("{}.clamped_{what}", node.name))
                        .into_owned();
                    inputs[slot] = target.add_const(name, value)?;
                }
            }
        }
        target.wire_node(&*node.name, self.0.clone(), &inputs)
    }
}
