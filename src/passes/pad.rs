//! ONNX `Pad` (opset 11 and later) with negative pads, which crop.
//!
//! tract-onnx 0.23.9 converts each pad to `usize`, so a negative one wraps to a huge padding
//! that the typed op and the inferred shape disagree on (the run failed in an ndarray
//! broadcast). This parser reads the same node and wires, where a pad is negative, a `Slice`
//! for the crop, then tract's `Pad` for what is left to pad; nodes without negative pads get
//! exactly what tract's parser builds.

use tract_core::ops::array::{Pad, PadMode, Slice};
use tract_hir::internal::*;
use tract_onnx::model::{optional_inputs, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::Onnx;

use crate::tract_parser::TractParser;

/// tract's own parser, for the opsets this file does not handle.
static TRACT_PAD: TractParser = TractParser::new("Pad");

/// Replaces tract's parser for `Pad`.
pub fn register(onnx: &mut Onnx) {
    TRACT_PAD.replace_with(onnx, parse_pad);
}

fn parse_pad(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if ctx.onnx_operator_set_version < 11 {
        return TRACT_PAD.parse(ctx, node);
    }
    let value: f32 = node.get_attr_opt("value")?.unwrap_or(0.0);
    let mode = match node.get_attr_opt::<&str>("mode")? {
        None | Some("constant") => PadMode::Constant(Arc::new(value.into())),
        Some("reflect") => PadMode::Reflect,
        Some("edge") => PadMode::Edge,
        Some(other) => bail!("node '{}' (Pad): unsupported mode '{other}'", node.name),
    };
    let mut inputs = optional_inputs(node).skip(2);
    let constant_input = inputs.next().flatten();
    let axes_input = inputs.next().flatten();
    Ok((
        expand(CropPad {
            mode,
            constant_input,
            axes_input,
        }),
        vec![],
    ))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct CropPad {
    mode: PadMode,
    constant_input: Option<usize>,
    axes_input: Option<usize>,
}

/// The axes the pads apply to, for an input of rank `rank`.
fn axes_of(axes: Option<&Tensor>, rank: usize) -> TractResult<Vec<usize>> {
    let Some(axes) = axes else {
        return Ok((0..rank).collect());
    };
    let axes = axes.cast_to::<i64>()?;
    axes.try_as_plain_ram()?
        .as_slice::<i64>()?
        .iter()
        .map(|&a| {
            let a = if a < 0 { a + rank as i64 } else { a };
            ensure!(
                (0..rank as i64).contains(&a),
                "axis {a} out of range for rank {rank}"
            );
            Ok(a as usize)
        })
        .collect()
}

/// (before, after) per axis of an input of rank `rank`, as the file gives them (i64).
fn pads_of(pads: &Tensor, axes: &[usize], rank: usize) -> TractResult<Vec<(i64, i64)>> {
    let pads = pads.cast_to::<i64>()?;
    let pads = pads.try_as_plain_ram()?.as_slice::<i64>()?.to_vec();
    ensure!(
        pads.len() == 2 * axes.len(),
        "pads has {} values for {} axes",
        pads.len(),
        axes.len()
    );
    let mut out = vec![(0, 0); rank];
    for (ix, &axis) in axes.iter().enumerate() {
        out[axis] = (pads[ix], pads[ix + axes.len()]);
    }
    Ok(out)
}

impl Expansion for CropPad {
    fn name(&self) -> StaticName {
        "Pad".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(
            inputs,
            2 + self.constant_input.is_some() as usize + self.axes_input.is_some() as usize,
        )?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].rank, &outputs[0].rank)?;
        s.equals(&inputs[1].rank, 1)?;
        if let Some(c) = self.constant_input {
            s.equals(&inputs[0].datum_type, &inputs[c].datum_type)?;
        }
        let shape_rule = move |s: &mut Solver<'r>, rank: usize, axes: Option<Arc<Tensor>>| {
            s.given(&inputs[1].value, move |s, pads| {
                let axes = axes_of(axes.as_deref(), rank)?;
                for (axis, (before, after)) in pads_of(&pads, &axes, rank)?.into_iter().enumerate()
                {
                    s.equals(
                        &outputs[0].shape[axis],
                        inputs[0].shape[axis].bex() + before.to_dim() + after.to_dim(),
                    )?;
                }
                Ok(())
            })
        };
        match self.axes_input {
            Some(a) => s.given_2(&inputs[0].rank, &inputs[a].value, move |s, rank, axes| {
                shape_rule(s, rank as usize, Some(axes))
            }),
            None => s.given(&inputs[0].rank, move |s, rank| {
                shape_rule(s, rank as usize, None)
            }),
        }
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let konst = |model: &TypedModel, ix: usize, what: &str| {
            model
                .outlet_fact(inputs[ix])?
                .konst
                .clone()
                .with_context(|| format!("node '{prefix}' (Pad): its {what} must be a constant"))
        };
        let mode = match self.constant_input {
            Some(c) => {
                // A scalar, as the spec says, or the one-element vector some exporters write.
                let value = konst(model, c, "constant value")?;
                ensure!(
                    value.len() == 1,
                    "node '{prefix}' (Pad): its constant value has {} elements, expected one",
                    value.len()
                );
                PadMode::Constant(value.into_tensor().into_shape(&[])?.into_arc_tensor())
            }
            None => self.mode.clone(),
        };
        let fact = model.outlet_fact(inputs[0])?.clone();
        let rank = fact.rank();
        let axes = match self.axes_input {
            Some(a) => Some(konst(model, a, "axes")?),
            None => None,
        };
        let axes = axes_of(axes.as_deref(), rank)?;
        let pads = pads_of(&*konst(model, 1, "pads")?, &axes, rank)?;
        let mut wire = inputs[0];
        // The crops first, each a Slice of the axis.
        for (axis, &(before, after)) in pads.iter().enumerate() {
            if before >= 0 && after >= 0 {
                continue;
            }
            let dim = &fact.shape[axis];
            let start = (-before).max(0);
            let end = dim.clone() - (-after).max(0);
            if let (Ok(d), Ok(e)) = (dim.to_i64(), end.to_i64()) {
                ensure!(
                    start <= e,
                    "node '{prefix}' (Pad): pads {before} and {after} crop more than the {d} \
                     entries of axis {axis}"
                );
            }
            let name = model
                .unique_name(format!("{prefix}.crop{axis}"))
                .into_owned();
            wire = model.wire_node(name, Slice::new(axis, start.to_dim(), end), &[wire])?[0];
        }
        let positive: Vec<(usize, usize)> = pads
            .iter()
            .map(|&(b, a)| (b.max(0) as usize, a.max(0) as usize))
            .collect();
        if positive.iter().any(|&(b, a)| b > 0 || a > 0) || wire == inputs[0] {
            let name = model.unique_name(prefix).into_owned();
            wire = model.wire_node(
                name,
                Pad {
                    mode,
                    pads: positive,
                },
                &[wire],
            )?[0];
        }
        Ok(tvec!(wire))
    }
}
