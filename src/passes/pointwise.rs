//! 1×1 convolutions that tract's declutter turned into an `EinSum` and a bias `Add`, read back
//! as convolutions for [`super::conv`].
//!
//! tract rewrites a float 1×1 convolution (no groups, stride 1) as `NIHW,OI->NOHW` plus an
//! `Add` of the bias shaped `[1, O, 1, 1]`, and may fold a following squeeze of a size-1
//! spatial axis into the einsum (`NIHW,OI->NOW`), or drop the batch axis of one element and
//! add it back (`IHW,OI->NOHW`). Codegen then runs the product with its
//! axes moved around it and the bias added by a broadcasting loop, which on the few channels
//! of a mobile CRNN costs more than the product. The einsum is recognized here by its axes
//! alone (any einsum of that form is a pointwise convolution, whatever it came from), and
//! the bias only when it is a constant per output channel or a scalar.

use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_core::ops::einsum::EinSum;
use tract_core::ops::math::Add;
use tract_core::ops::nn::DataFormat;
use tract_hir::internal::*;

/// An einsum (and its bias `Add`) as the convolution computing the same values.
pub(super) struct Pointwise {
    pub(super) conv: Conv,
    /// `[O, I, 1…]`, OIHW.
    pub(super) kernel: Tensor,
    /// `[O]`: the `Add`'s values, or zeros.
    pub(super) bias: Tensor,
    /// The outlet the convolution replaces: the einsum's, or its bias `Add`'s.
    pub(super) last: OutletId,
    /// What turns the convolution's output into the einsum's: size-1 spatial axes removed,
    /// the others moved.
    pub(super) after: Vec<AxisOp>,
}

/// Node `id` as a pointwise convolution, when it is an f32 einsum of an input laid out
/// `[N, I, spatial…]` or `[I, spatial…]` (one or two spatial axes) by constant weights
/// `[O, I]` or `[I, O]`, giving the batch, output channel and spatial axes in any order (the
/// size-1 spatial axes possibly summed away).
pub(super) fn pointwise(model: &TypedModel, id: usize) -> TractResult<Option<Pointwise>> {
    let node = model.node(id);
    let Some(einsum) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    if einsum.q_params.is_some() || einsum.operating_dt != DatumType::F32 || node.inputs.len() != 2
    {
        return Ok(None);
    }
    let facts = model.node_input_facts(id)?;
    let (x, w) = (facts[0], facts[1]);
    let f32_plain = |f: &TypedFact| f.datum_type == DatumType::F32 && !f.is_exotic();
    let out = &node.outputs[0].fact;
    let Some(weights) = &w.konst else {
        return Ok(None);
    };
    if !f32_plain(x) || !f32_plain(w) || !f32_plain(out) || w.rank() != 2 {
        return Ok(None);
    }
    // Each axis's role, by where it occurs.
    let (mut i_axis, mut o_axis) = (None, None);
    let mut kept = vec![]; // (input position, output position)
    let mut summed = vec![]; // input positions summed away
    let mut added = vec![]; // output positions of axes of one element the einsum adds
    for axis in einsum.axes.iter_all_axes() {
        if axis.inputs.len() != 2 || axis.outputs.len() != 1 {
            return Ok(None);
        }
        let one = |v: &[usize]| -> Result<Option<usize>, ()> {
            match v {
                [] => Ok(None),
                [p] => Ok(Some(*p)),
                _ => Err(()),
            }
        };
        let (Ok(a), Ok(b), Ok(o)) = (
            one(&axis.inputs[0]),
            one(&axis.inputs[1]),
            one(&axis.outputs[0]),
        ) else {
            return Ok(None);
        };
        match (a, b, o) {
            (Some(a), Some(b), None) if i_axis.is_none() => i_axis = Some((a, b)),
            (None, Some(b), Some(o)) if o_axis.is_none() => o_axis = Some((b, o)),
            (Some(a), None, Some(o)) => kept.push((a, o)),
            (Some(a), None, None) => summed.push(a),
            (None, None, Some(o)) => added.push(o),
            _ => return Ok(None),
        }
    }
    let (Some((c, wi)), Some((wo, oc))) = (i_axis, o_axis) else {
        return Ok(None);
    };
    let rank = x.rank();
    let spatial = rank.saturating_sub(c + 1);
    if c > 1 || !(1..=2).contains(&spatial) || wi == wo {
        return Ok(None);
    }
    kept.sort();
    summed.sort();
    if kept.len() + summed.len() + 1 != rank
        || summed.iter().any(|&a| a <= c || !x.shape[a].is_one())
        || out.rank() != kept.len() + added.len() + 1
        || added.iter().any(|&o| !out.shape[o].is_one())
    {
        return Ok(None);
    }
    let weights = if wi == 1 {
        weights.clone().into_tensor()
    } else {
        weights.clone().into_tensor().permute_axes(&[1, 0])?
    };
    let (o, i) = (weights.shape()[0], weights.shape()[1]);
    if x.shape[c] != i.to_dim() || out.shape[oc] != o.to_dim() {
        return Ok(None);
    }
    let mut kshape = vec![o, i];
    kshape.extend(std::iter::repeat_n(1, spatial));
    let kernel = weights.into_shape(&kshape)?;
    let (bias, last) = match bias_add(model, OutletId::new(id, 0), oc, o)? {
        Some((bias, add)) => (bias, OutletId::new(add, 0)),
        None => (tensor1(&vec![0f32; o]), OutletId::new(id, 0)),
    };
    let conv = Conv {
        pool_spec: PoolSpec {
            data_format: if c == 1 {
                DataFormat::NCHW
            } else {
                DataFormat::CHW
            },
            kernel_shape: std::iter::repeat_n(1, spatial).collect(),
            padding: PaddingSpec::Valid,
            dilations: None,
            strides: None,
            input_channels: i,
            output_channels: o,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: 1,
        q_params: None,
    };
    // The size-1 axes summed away, then the order of the einsum's output: its position of
    // each axis the convolution gives, in the convolution's order.
    let mut after: Vec<AxisOp> = summed.iter().rev().map(|&a| AxisOp::Rm(a)).collect();
    // (Each output position counted among the axes the convolution gives, the added ones
    // left out; those are added last, in increasing position.)
    let rank_of = |o: usize| o - added.iter().filter(|&&a| a < o).count();
    let mut order: Vec<usize> = kept.iter().map(|&(_, o)| rank_of(o)).collect();
    order.insert(c, rank_of(oc));
    for target in 0..order.len() {
        let at = order
            .iter()
            .position(|&o| o == target)
            .context("einsum axes")?;
        if at != target {
            after.push(AxisOp::Move(at, target));
            let axis = order.remove(at);
            order.insert(target, axis);
        }
    }
    added.sort();
    after.extend(added.into_iter().map(AxisOp::Add));
    Ok(Some(Pointwise {
        conv,
        kernel,
        bias,
        last,
        after,
    }))
}

/// When `outlet` (channels on axis `axis`, `o` of them) is read only by an f32 `Add` of a
/// constant that is one value per channel or a scalar, giving the same shape: the bias as
/// `[o]`, and the `Add` node.
fn bias_add(
    model: &TypedModel,
    outlet: OutletId,
    axis: usize,
    o: usize,
) -> TractResult<Option<(Tensor, usize)>> {
    let Some(succ) = super::only_reader(model, outlet)? else {
        return Ok(None);
    };
    let node = model.node(succ.node);
    let Some(bin) = node.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if !bin.0.is::<Add>() || node.inputs.len() != 2 || bin.1.is_some_and(|dt| dt != DatumType::F32)
    {
        return Ok(None);
    }
    let mine = model.outlet_fact(outlet)?;
    let theirs = &node.outputs[0].fact;
    if theirs.datum_type != DatumType::F32 || theirs.shape != mine.shape {
        return Ok(None);
    }
    let other = model.outlet_fact(node.inputs[1 - succ.slot])?;
    let Some(value) = other.konst.as_ref() else {
        return Ok(None);
    };
    let (shape, rank) = (value.shape(), mine.rank());
    if value.datum_type() != DatumType::F32 || shape.len() > rank {
        return Ok(None);
    }
    // Right-aligned as the broadcast reads it: 1 everywhere but on the channel axis.
    let lead = rank - shape.len();
    let per_channel = shape
        .iter()
        .enumerate()
        .all(|(j, &d)| d == 1 || (j + lead == axis && d == o));
    if !per_channel {
        return Ok(None);
    }
    let values = value.try_as_plain_ram()?;
    let values = values.as_slice::<f32>()?;
    let bias = match values.len() {
        1 => vec![values[0]; o],
        n if n == o => values.to_vec(),
        _ => return Ok(None),
    };
    Ok(Some((tensor1(&bias), succ.node)))
}
