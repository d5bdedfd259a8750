//! The time axis of a fixed-length export (`torch.onnx.export` without `dynamic_axes`): no
//! symbol names it, and following axes from the inputs stops at ops whose axes do not map one
//! to one (a convolution over time). Each input axis of fixed size is tried: made a symbol,
//! the graph typed again; the axis whose symbol becomes a recurrent node's sequence length is
//! the time axis. The stream's own analysis then decides, as for any model, whether the
//! chunked run equals the whole run.

use tract_hir::internal::*;

use crate::io_info::{Dim, IoInfo};
use crate::op::NativeRecurrent;
use crate::passes::time_axis::seq_axis;

/// What was tried, for the refusal when nothing fits: `input 'x' axis 1 (20)`.
pub type Considered = Vec<String>;

/// The first (input, axis) whose length reaches a recurrent node's time axis, or what was
/// considered. Axes whose size equals a recurrent node's sequence length are tried first.
pub fn find(inference: &InferenceModel, inputs: &[IoInfo]) -> (Option<(usize, usize)>, Considered) {
    let lengths = sequence_lengths(inference);
    let mut candidates: Vec<(bool, usize, usize, usize)> = vec![];
    for (ix, info) in inputs.iter().enumerate() {
        for (axis, d) in info.shape.iter().enumerate() {
            if let Dim::Fixed(n) = d {
                if *n > 1 {
                    candidates.push((!lengths.contains(n), ix, axis, *n));
                }
            }
        }
    }
    candidates.sort();
    let mut considered = vec![];
    for (_, ix, axis, n) in candidates {
        considered.push(format!("input '{}' axis {axis} ({n})", inputs[ix].name));
        if reaches_recurrent_time(inference, inputs, ix, axis, n).unwrap_or(false) {
            return (Some((ix, axis)), considered);
        }
    }
    (None, considered)
}

/// The sequence lengths the recurrent nodes see with the declared shapes, where tract types
/// the graph so.
fn sequence_lengths(inference: &InferenceModel) -> Vec<usize> {
    let Ok(typed) = super::type_for_analysis(inference.clone()) else {
        return vec![];
    };
    typed
        .nodes()
        .iter()
        .filter_map(|node| {
            let op = node.op_as::<NativeRecurrent>()?;
            let fact = typed.outlet_fact(node.inputs[0]).ok()?;
            fact.shape[seq_axis(op.spec().layout)].to_usize().ok()
        })
        .collect()
}

/// Whether input `ix`'s axis `axis`, made a symbol, becomes a recurrent node's time axis.
fn reaches_recurrent_time(
    inference: &InferenceModel,
    inputs: &[IoInfo],
    ix: usize,
    axis: usize,
    n: usize,
) -> TractResult<bool> {
    let mut model = inference.clone();
    let s = model.symbols.sym("fixed_length_probe");
    for (k, info) in inputs.iter().enumerate() {
        let shape: TVec<TDim> = info
            .shape
            .iter()
            .enumerate()
            .map(|(a, d)| match d {
                _ if k == ix && a == axis => Ok(s.clone().into()),
                Dim::Fixed(n) => Ok(n.to_dim()),
                Dim::Symbol(name) if name == "?" => {
                    Ok(model.symbols.new_with_prefix("unnamed").into())
                }
                Dim::Symbol(name) => model.symbols.parse_tdim(name),
            })
            .collect::<TractResult<_>>()?;
        model.set_input_fact(k, InferenceFact::dt_shape(info.dtype, shape))?;
    }
    super::free_reshape_lengths(&mut model, &[n as i64])?;
    crate::passes::tdim::symbolic_shape_casts(&mut model)?;
    let typed = crate::guard::without_panics(|| super::type_for_analysis(model))
        .map_err(|p| anyhow::anyhow!("{p}"))??;
    Ok(typed.nodes().iter().any(|node| {
        node.op_as::<NativeRecurrent>().is_some_and(|op| {
            typed
                .outlet_fact(node.inputs[0])
                .map(|f| f.shape[seq_axis(op.spec().layout)].symbols().contains(&s))
                .unwrap_or(false)
        })
    }))
}
