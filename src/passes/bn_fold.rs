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
//! [`super::pointwise`] reads the `Add` as the bias (a bias `Add` between the product and the
//! `Mul`, a 1×1 convolution's own, is scaled and merged with the shift into one). The values change only by rounding (the
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
    let Some(succ) = super::only_reader(model, outlet)? else {
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
    // A bias `Add` between the product and the scaling (a 1×1 convolution with a bias).
    let outlet = OutletId::new(id, 0);
    let bias = by_channel::<Add>(model, outlet)?;
    let scaled = bias.as_ref().map_or(outlet, |b| OutletId::new(b.node, 0));
    let Some(mul) = by_channel::<Mul>(model, scaled)? else {
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
    let o = mul.values.len();
    if weights.shape()[w_axis] != o {
        return Ok(false);
    }
    let weights = scale_along(&weights, w_axis, &mul.values)?;
    let mut last = OutletId::new(mul.node, 0);
    // With a bias, `(x·w + b)·s + t` becomes `x·(w·s) + (b·s + t)`.
    let bias = match &bias {
        None => None,
        Some(b) => {
            let Some(b) = per_channel(b, axis, o) else {
                return Ok(false);
            };
            let add = by_channel::<Add>(model, last)?;
            let t = add.as_ref().and_then(|add| per_channel(add, axis, o));
            if let (Some(add), Some(_)) = (&add, &t) {
                last = OutletId::new(add.node, 0);
            }
            let values: Vec<f32> = (0..o)
                .map(|c| {
                    let t = t.as_ref().map_or(0.0, |t| t[c] as f64);
                    (b[c] as f64 * mul.values[c] as f64 + t) as f32
                })
                .collect();
            let mut shape = vec![1; node.outputs[0].fact.rank()];
            shape[axis] = o;
            Some(tensor1(&values).into_shape(&shape)?)
        }
    };
    let mut patch = TypedModelPatch::new(format!("batch norm scale into {}", node.name));
    let x = patch.tap_model(model, node.inputs[0])?;
    let w = patch.add_const(format!("{}.bn_fold.weights", node.name), weights)?;
    let mut wire = patch.wire_node(&node.name, einsum.clone(), &[x, w])?[0];
    if let Some(bias) = bias {
        let b = patch.add_const(format!("{}.bn_fold.bias", node.name), bias)?;
        let name = format!("{}.bn_fold.add", node.name);
        wire = patch.wire_node(name, tract_core::ops::math::add(), &[wire, b])?[0];
    }
    if patch.outlet_fact(wire)?.shape != model.outlet_fact(last)?.shape {
        return Ok(false);
    }
    patch.shunt_outside(model, last, wire)?;
    patch.apply(model)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::cnn::{KernelFormat, PaddingSpec, PoolSpec};
    use tract_core::ops::math;
    use tract_core::ops::nn::DataFormat;

    use crate::test_values::tensor;

    /// How the test graph differs from a plain conv → Mul → Add.
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Twist {
        None,
        /// The conv's output is a graph output too.
        ConvRead,
        /// The Mul's output is a graph output too (the Add stays).
        MulRead,
        /// The scale varies along the last (spatial) axis.
        SpatialScale,
        /// A scale is infinite.
        InfiniteScale,
        /// The convolution's bias is a scalar zero.
        ScalarBias,
    }

    const C_IN: usize = 4;
    const C_OUT: usize = 4;
    const H: usize = 5;
    const W: usize = 6;

    /// `x [N?, 4, 5, 6]` → 3×3 conv (padded, `group`) → `Mul` → `Add`, per channel.
    fn graph(batch: bool, group: usize, twist: Twist) -> TypedModel {
        let mut model = TypedModel::default();
        let xshape: TVec<usize> = if batch {
            tvec!(1, C_IN, H, W)
        } else {
            tvec!(C_IN, H, W)
        };
        let x = model.add_source("x", f32::fact(&xshape)).unwrap();
        let k = model
            .add_const("k", tensor(&[C_OUT, C_IN / group, 3, 3], 3))
            .unwrap();
        let bias = if twist == Twist::ScalarBias {
            tensor0(0f32)
        } else {
            tensor(&[C_OUT], 5)
        };
        let b = model.add_const("b", bias).unwrap();
        let conv = Conv {
            pool_spec: PoolSpec::new(
                if batch {
                    DataFormat::NCHW
                } else {
                    DataFormat::CHW
                },
                tvec!(3, 3),
                PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1)),
                None,
                None,
                C_IN,
                C_OUT,
            ),
            kernel_fmt: KernelFormat::OIHW,
            group,
            q_params: None,
        };
        let y = model.wire_node("conv", conv, &[x, k, b]).unwrap()[0];
        let lead = if batch { vec![1] } else { vec![] };
        let shape = |c: usize, w: usize| -> Vec<usize> { [&lead[..], &[c, 1, w]].concat() };
        let mut s = if twist == Twist::SpatialScale {
            tensor(&shape(1, W), 7)
        } else {
            tensor(&shape(C_OUT, 1), 7)
        };
        if twist == Twist::InfiniteScale {
            s.try_as_plain_ram_mut()
                .unwrap()
                .as_slice_mut::<f32>()
                .unwrap()[1] = f32::INFINITY;
        }
        let s = model.add_const("s", s).unwrap();
        let t = model.add_const("t", tensor(&shape(C_OUT, 1), 11)).unwrap();
        let m = model.wire_node("mul", math::mul(), &[y, s]).unwrap()[0];
        let a = model.wire_node("add", math::add(), &[t, m]).unwrap()[0];
        let outputs = match twist {
            Twist::ConvRead => vec![a, y],
            Twist::MulRead => vec![a, m],
            _ => vec![a],
        };
        model.select_output_outlets(&outputs).unwrap();
        model
    }

    /// The graph's first output computed in f64 from its own constants.
    fn reference(model: &TypedModel, x: &Tensor, group: usize) -> Vec<f64> {
        let get = |name: &str| -> Vec<f64> {
            let id = model.node_by_name(name).unwrap().id;
            let k = model
                .outlet_fact(OutletId::new(id, 0))
                .unwrap()
                .konst
                .clone()
                .unwrap();
            f32s(&k).unwrap().into_iter().map(f64::from).collect()
        };
        let (k, b, s, t) = (get("k"), get("b"), get("s"), get("t"));
        let x: Vec<f64> = f32s(x).unwrap().into_iter().map(f64::from).collect();
        let cig = C_IN / group;
        let cog = C_OUT / group;
        let mut out = vec![0f64; C_OUT * H * W];
        for o in 0..C_OUT {
            let g = o / cog;
            for y in 0..H {
                for z in 0..W {
                    let mut sum = b[if b.len() == 1 { 0 } else { o }];
                    for i in 0..cig {
                        for dy in 0..3 {
                            for dz in 0..3 {
                                let (yy, zz) = (y + dy, z + dz);
                                if yy < 1 || zz < 1 || yy > H || zz > W {
                                    continue;
                                }
                                let xi = ((g * cig + i) * H + yy - 1) * W + zz - 1;
                                sum += k[((o * cig + i) * 3 + dy) * 3 + dz] * x[xi];
                            }
                        }
                    }
                    let sc = if s.len() == C_OUT { s[o] } else { s[z] };
                    out[(o * H + y) * W + z] = sum * sc + t[o];
                }
            }
        }
        out
    }

    fn run(model: &TypedModel, x: &Tensor) -> TVec<Tensor> {
        let plan = model.clone().into_runnable().unwrap();
        plan.run(tvec!(x.clone().into_tvalue()))
            .unwrap()
            .into_iter()
            .map(|t| t.into_tensor())
            .collect()
    }

    fn binaries(model: &TypedModel) -> usize {
        model
            .nodes()
            .iter()
            .filter(|n| n.op_is::<TypedBinOp>())
            .count()
    }

    #[test]
    fn folds_scale_and_shift_into_the_conv_within_rounding() {
        for batch in [true, false] {
            for group in [1, 2, 4] {
                for twist in [Twist::None, Twist::ScalarBias] {
                    let before = graph(batch, group, twist);
                    let mut after = before.clone();
                    assert_eq!(fold_batch_norms(&mut after).unwrap(), 1);
                    assert_eq!(binaries(&after), 0, "{batch} {group} {twist:?}");
                    let shape: &[usize] = if batch {
                        &[1, C_IN, H, W]
                    } else {
                        &[C_IN, H, W]
                    };
                    let x = tensor(shape, 13);
                    let want = reference(&before, &x, group);
                    let got = run(&after, &x).remove(0);
                    assert_eq!(got.shape(), run(&before, &x)[0].shape());
                    for (g, w) in f32s(&got).unwrap().iter().zip(&want) {
                        assert!((*g as f64 - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn leaves_what_it_does_not_cover() {
        for (twist, folded, left) in [
            (Twist::ConvRead, 0, 2),
            (Twist::SpatialScale, 0, 2),
            (Twist::InfiniteScale, 0, 2),
            // The Mul is folded, the Add it feeds stays (the Mul's value is read).
            (Twist::MulRead, 1, 1),
        ] {
            let before = graph(true, 1, twist);
            let mut after = before.clone();
            assert_eq!(fold_batch_norms(&mut after).unwrap(), folded, "{twist:?}");
            assert_eq!(binaries(&after), left, "{twist:?}");
            let x = tensor(&[1, C_IN, H, W], 17);
            let (got, want) = (run(&after, &x), run(&before, &x));
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                let (g, w) = (f32s(g).unwrap(), f32s(w).unwrap());
                for (g, w) in g.iter().zip(&w) {
                    assert!(
                        g == w || (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{g} {w}"
                    );
                }
            }
        }
    }

    /// `x [8, 3, 7] · w [O=6, 8]` as tract writes a 1×1 convolution, then `Mul`, `Add`.
    fn einsum_graph(per_channel: bool) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([8, 3, 7])).unwrap();
        let w = model.add_const("w", tensor(&[6, 8], 3)).unwrap();
        let op = EinSum::new("IHW,OI->OHW".parse().unwrap(), DatumType::F32);
        let y = model.wire_node("mm", op, &[x, w]).unwrap()[0];
        let s = tensor(if per_channel { &[6, 1, 1] } else { &[1, 3, 1] }, 7);
        let s = model.add_const("s", s).unwrap();
        let t = model.add_const("t", tensor(&[6, 1, 1], 11)).unwrap();
        let m = model.wire_node("mul", math::mul(), &[s, y]).unwrap()[0];
        let a = model.wire_node("add", math::add(), &[m, t]).unwrap()[0];
        model.select_output_outlets(&[a]).unwrap();
        model
    }

    #[test]
    fn folds_the_scale_into_an_einsums_weights() {
        let x = tensor(&[8, 3, 7], 19);
        for per_channel in [true, false] {
            let before = einsum_graph(per_channel);
            let mut after = before.clone();
            assert_eq!(fold_batch_norms(&mut after).unwrap(), per_channel as usize);
            assert_eq!(binaries(&after), if per_channel { 1 } else { 2 });
            // f64 reference from the graph's constants.
            let get = |name: &str| -> Vec<f64> {
                let id = before.node_by_name(name).unwrap().id;
                let k = before
                    .outlet_fact(OutletId::new(id, 0))
                    .unwrap()
                    .konst
                    .clone();
                f32s(&k.unwrap())
                    .unwrap()
                    .into_iter()
                    .map(f64::from)
                    .collect()
            };
            let (w, s, t) = (get("w"), get("s"), get("t"));
            let xs: Vec<f64> = f32s(&x).unwrap().into_iter().map(f64::from).collect();
            let got = f32s(&run(&after, &x)[0]).unwrap();
            for o in 0..6 {
                for hw in 0..21 {
                    let sum: f64 = (0..8).map(|i| w[o * 8 + i] * xs[i * 21 + hw]).sum();
                    let sc = if per_channel { s[o] } else { s[hw / 7] };
                    let want = sum * sc + t[o];
                    let g = got[o * 21 + hw] as f64;
                    assert!((g - want).abs() <= 1e-5 * want.abs().max(1.0), "{g} {want}");
                }
            }
        }
    }
}
