//! Batch normalization after a float convolution folded into the convolution's constant
//! weights and bias, in plan optimization, as onnxruntime does.
//!
//! tract's declutter turns an inference-mode `BatchNormalization` into a `Mul` and an `Add` by
//! constants per channel, and folds them into a dense NCHW `Conv` itself; after a depthwise
//! (`CHW`) `Conv` or a 1×1 convolution it turned into an `EinSum` they stay, two more passes
//! over the activations each (PP-OCRv2's recognizer: 24 of its 27 blocks). Here a `Mul` by a
//! constant per output channel that alone reads a `Conv` (constant kernel and bias) becomes
//! the kernel scaled by channel, and an `Add` by a constant per channel that alone reads that
//! `Mul` becomes the bias (`w·s`, `b·s + t`); after an `EinSum` by a constant matrix only the
//! `Mul` is folded into the matrix (along the axis giving the output channel), and
//! [`super::pointwise`] reads the `Add` as the bias. The values change only by rounding (the
//! scaling applied to each weight instead of to each sum, 1e-7 relative); scales and shifts
//! that are not finite leave the graph as it is, and so does anything else.

use tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_core::ops::cnn::Conv;
use tract_core::ops::einsum::EinSum;
use tract_core::ops::math::{Add, Mul};
use tract_hir::internal::*;

/// Folds every `Mul` (and `Add`) by channel this pass covers; returns how many convolutions
/// and products took one.
pub(crate) fn fold_batch_norms(model: &mut TypedModel) -> TractResult<usize> {
    let mut folded = 0;
    for id in model.eval_order()? {
        let done = if model.node(id).op_is::<Conv>() {
            fold_into_conv(model, id)?
        } else if model.node(id).op_is::<EinSum>() {
            fold_into_einsum(model, id)?
        } else {
            false
        };
        folded += done as usize;
    }
    if folded > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(folded)
}

/// The constant f32 plain tensor at `outlet`, if any.
fn konst(model: &TypedModel, outlet: OutletId) -> TractResult<Option<Arc<Tensor>>> {
    let fact = model.outlet_fact(outlet)?;
    Ok(fact
        .konst
        .clone()
        .filter(|k| k.datum_type() == DatumType::F32 && !fact.is_exotic()))
}

fn f32s(t: &Tensor) -> TractResult<Vec<f32>> {
    Ok(t.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
}

/// A `Mul` or `Add` reading `outlet` alone, by a constant that is one value per channel.
struct ByChannel {
    node: usize,
    /// The output axis the constant varies along, `None` for one value everywhere.
    axis: Option<usize>,
    /// The values along that axis (one, for a uniform constant).
    values: Vec<f32>,
}

/// When `outlet` (f32) is read only by an f32 binary `O` with a finite constant whose
/// dimensions (right-aligned as the broadcast reads them) are all 1 but at most one, giving
/// the same shape, that node, axis and values.
fn by_channel<O: BinMiniOp>(
    model: &TypedModel,
    outlet: OutletId,
) -> TractResult<Option<ByChannel>> {
    if model.output_outlets()?.contains(&outlet) {
        return Ok(None);
    }
    let [succ] = &model.node(outlet.node).outputs[outlet.slot].successors[..] else {
        return Ok(None);
    };
    let node = model.node(succ.node);
    let Some(bin) = node.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if !bin.0.is::<O>() || node.inputs.len() != 2 || bin.1.is_some_and(|dt| dt != DatumType::F32) {
        return Ok(None);
    }
    let mine = model.outlet_fact(outlet)?;
    let theirs = &node.outputs[0].fact;
    if mine.datum_type != DatumType::F32
        || theirs.datum_type != DatumType::F32
        || theirs.shape != mine.shape
    {
        return Ok(None);
    }
    let Some(value) = konst(model, node.inputs[1 - succ.slot])? else {
        return Ok(None);
    };
    let (shape, rank) = (value.shape(), mine.rank());
    if shape.len() > rank || value.len() == 0 {
        return Ok(None);
    }
    let lead = rank - shape.len();
    let varying: Vec<usize> = (0..shape.len()).filter(|&j| shape[j] != 1).collect();
    let axis = match varying[..] {
        [] => None,
        [j] => Some(j + lead),
        _ => return Ok(None),
    };
    let values = f32s(&value)?;
    if values.iter().any(|v| !v.is_finite()) {
        return Ok(None);
    }
    Ok(Some(ByChannel {
        node: succ.node,
        axis,
        values,
    }))
}

/// Scale `s[c]` (one per index `c` of `axis`) applied to every element of `t`.
fn scale_along(t: &Tensor, axis: usize, s: &[f32]) -> TractResult<Tensor> {
    let mut out = t.clone().into_tensor();
    let shape = out.shape().to_vec();
    let inner: usize = shape[axis + 1..].iter().product();
    let n = shape[axis];
    let mut view = out.try_as_plain_ram_mut()?;
    for (j, w) in view.as_slice_mut::<f32>()?.iter_mut().enumerate() {
        let c = (j / inner) % n;
        *w *= s[if s.len() == 1 { 0 } else { c }];
    }
    Ok(out)
}

/// Expands a per-channel [`ByChannel`] to `o` values, if it is per channel `axis` (or uniform).
fn per_channel(b: &ByChannel, axis: usize, o: usize) -> Option<Vec<f32>> {
    match (b.axis, b.values.len()) {
        (None, 1) => Some(vec![b.values[0]; o]),
        (Some(a), n) if a == axis && n == o => Some(b.values.clone()),
        _ => None,
    }
}

fn fold_into_conv(model: &mut TypedModel, id: usize) -> TractResult<bool> {
    let node = model.node(id);
    let conv = node.op_as::<Conv>().context("conv")?;
    let out = &node.outputs[0].fact;
    if conv.q_params.is_some() || node.inputs.len() != 3 || out.datum_type != DatumType::F32 {
        return Ok(false);
    }
    let (Some(kernel), Some(bias)) = (konst(model, node.inputs[1])?, konst(model, node.inputs[2])?)
    else {
        return Ok(false);
    };
    let o = conv.pool_spec.output_channels;
    let c_axis = conv
        .pool_spec
        .data_format
        .shape(out.shape.to_tvec())?
        .c_axis();
    let outlet = OutletId::new(id, 0);
    let Some(mul) = by_channel::<Mul>(model, outlet)? else {
        return Ok(false);
    };
    let Some(s) = per_channel(&mul, c_axis, o) else {
        return Ok(false);
    };
    let add = by_channel::<Add>(model, OutletId::new(mul.node, 0))?;
    let t = add.as_ref().and_then(|add| per_channel(add, c_axis, o));
    let o_axis = conv.kernel_fmt.o_axis(kernel.shape());
    if kernel.shape()[o_axis] != o || !(bias.len() == 1 || bias.shape() == [o]) {
        return Ok(false);
    }
    let kernel = scale_along(&kernel, o_axis, &s)?;
    let b = f32s(&bias)?;
    let bias: Vec<f32> = (0..o)
        .map(|c| {
            let b = b[if b.len() == 1 { 0 } else { c }] as f64 * s[c] as f64;
            (b + t.as_ref().map_or(0.0, |t| t[c] as f64)) as f32
        })
        .collect();
    let last = match (&add, &t) {
        (Some(add), Some(_)) => OutletId::new(add.node, 0),
        _ => OutletId::new(mul.node, 0),
    };
    let mut patch = TypedModelPatch::new(format!("batch norm into {}", node.name));
    let x = patch.tap_model(model, node.inputs[0])?;
    let k = patch.add_const(format!("{}.bn_fold.kernel", node.name), kernel)?;
    let b = patch.add_const(format!("{}.bn_fold.bias", node.name), tensor1(&bias))?;
    let wire = patch.wire_node(&node.name, conv.clone(), &[x, k, b])?[0];
    if patch.outlet_fact(wire)?.shape != model.outlet_fact(last)?.shape {
        return Ok(false);
    }
    patch.shunt_outside(model, last, wire)?;
    patch.apply(model)?;
    Ok(true)
}

fn fold_into_einsum(model: &mut TypedModel, id: usize) -> TractResult<bool> {
    let node = model.node(id);
    let einsum = node.op_as::<EinSum>().context("einsum")?;
    if einsum.q_params.is_some()
        || einsum.operating_dt != DatumType::F32
        || node.inputs.len() != 2
        || node.outputs[0].fact.datum_type != DatumType::F32
    {
        return Ok(false);
    }
    let Some(weights) = konst(model, node.inputs[1])? else {
        return Ok(false);
    };
    let Some(mul) = by_channel::<Mul>(model, OutletId::new(id, 0))? else {
        return Ok(false);
    };
    let Some(axis) = mul.axis else {
        return Ok(false);
    };
    // The einsum axis giving output `axis`: from the weights alone, not summed.
    let Some(w_axis) = einsum.axes.iter_all_axes().find_map(|a| {
        (a.outputs[0][..] == [axis] && a.inputs[0].is_empty() && a.inputs[1].len() == 1)
            .then(|| a.inputs[1][0])
    }) else {
        return Ok(false);
    };
    if weights.shape()[w_axis] != mul.values.len() {
        return Ok(false);
    }
    let weights = scale_along(&weights, w_axis, &mul.values)?;
    let last = OutletId::new(mul.node, 0);
    let mut patch = TypedModelPatch::new(format!("batch norm scale into {}", node.name));
    let x = patch.tap_model(model, node.inputs[0])?;
    let w = patch.add_const(format!("{}.bn_fold.weights", node.name), weights)?;
    let wire = patch.wire_node(&node.name, einsum.clone(), &[x, w])?[0];
    if patch.outlet_fact(wire)?.shape != model.outlet_fact(last)?.shape {
        return Ok(false);
    }
    patch.shunt_outside(model, last, wire)?;
    patch.apply(model)?;
    Ok(true)
}
