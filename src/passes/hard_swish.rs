//! Hard-swish written out as element-wise ops (`x · clip(x + 3, 0, 6) / 6`, MobileNetV3's
//! activation as Paddle and older exporters write it) onto one pass of ours, in plan
//! optimization.
//!
//! tract keeps the chain as its declutter leaves it, `Add`, `Max`, `Min`, `Mul` and a `Mul` by
//! the reciprocal of 6, and its codegen fuses it into two passes over the activations (an
//! `Add+Max+Min` chain, then a `Mul+Mul` one reading both the clip and `x`): on PP-OCRv2's
//! recognizer 27 of each, a fifth of its run. [`HardSwish`] reads each value once and computes
//! the same f32 operations in the same order with the graph's own constants (`x + a`,
//! `f32::max` then `f32::min` as tract's kernels do, times `x`, then times or divided by the
//! last constant), so its values are tract's bit for bit (NaN, infinities and signed zeros
//! included: a zero bound of either sign or a NaN constant leaves the chain to tract). Every
//! intermediate must be read by the next op alone; anything else stays with tract. tract's
//! own `HardSwish` op (ONNX's) is one pass already and is left alone.

use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::math::{Add, Div, Max, Min, Mul};
use tract_hir::internal::*;

/// How the product is scaled at the end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scale {
    Mul(f32),
    Div(f32),
}

/// `x · min(max(x + add, lo), hi)`, then scaled, on f32.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HardSwish {
    pub(crate) add: f32,
    pub(crate) lo: f32,
    pub(crate) hi: f32,
    pub(crate) scale: Scale,
}

impl Eq for HardSwish {}

/// Replaces every chain this pass covers with [`HardSwish`]; returns how many.
pub(crate) fn hard_swishes(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let Some((x, op, last)) = chain(model, id)? else {
            continue;
        };
        let name = model.node(last.node).name.clone();
        let mut patch = TypedModelPatch::new(format!("hard-swish {name}"));
        let input = patch.tap_model(model, x)?;
        let wire = patch.wire_node(&name, op, &[input])?[0];
        let (mine, theirs) = (patch.outlet_fact(wire)?, model.outlet_fact(last)?);
        if mine.datum_type != theirs.datum_type || mine.shape != theirs.shape {
            continue;
        }
        patch.shunt_outside(model, last, wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    if replaced > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(replaced)
}

/// The f32 binary op of node `id` of kind `O`: its other input's uniform constant value, the
/// input slot `from` feeds, when `from` is one of its inputs.
fn step<O: tract_core::ops::binary::BinMiniOp>(
    model: &TypedModel,
    id: usize,
    from: OutletId,
) -> TractResult<Option<(usize, Option<f32>)>> {
    let node = model.node(id);
    let Some(bin) = node.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if !bin.0.is::<O>() || node.inputs.len() != 2 || bin.1.is_some_and(|dt| dt != DatumType::F32) {
        return Ok(None);
    }
    let Some(slot) = node.inputs.iter().position(|&i| i == from) else {
        return Ok(None);
    };
    let (mine, theirs) = (model.outlet_fact(from)?, &node.outputs[0].fact);
    if mine.datum_type != DatumType::F32
        || theirs.datum_type != DatumType::F32
        || mine.shape != theirs.shape
    {
        return Ok(None);
    }
    let other = model.outlet_fact(node.inputs[1 - slot])?;
    let value = other
        .konst
        .as_ref()
        .filter(|k| k.datum_type() == DatumType::F32 && k.len() >= 1 && k.is_uniform())
        .map(|k| -> TractResult<f32> { Ok(k.try_as_plain_ram()?.as_slice::<f32>()?[0]) })
        .transpose()?;
    Ok(Some((slot, value)))
}

/// When node `id` is the `Add` starting a hard-swish chain: its `x`, the op and the chain's
/// last outlet.
fn chain(model: &TypedModel, id: usize) -> TractResult<Option<(OutletId, HardSwish, OutletId)>> {
    let node = model.node(id);
    if !node.op_is::<TypedBinOp>() || node.inputs.len() != 2 {
        return Ok(None);
    }
    let ok = |v: f32| !v.is_nan();
    // `x + add`: x is the input that is not the constant.
    let mut found = None;
    for x in node.inputs.iter().copied() {
        if let Some((_, Some(add))) = step::<Add>(model, id, x)? {
            if model.outlet_fact(x)?.konst.is_none() && ok(add) {
                found = Some((x, add));
                break;
            }
        }
    }
    let Some((x, add)) = found else {
        return Ok(None);
    };
    let a = OutletId::new(id, 0);
    let Some(max) = super::only_reader(model, a)?.map(|r| r.node) else {
        return Ok(None);
    };
    let Some((_, Some(lo))) = step::<Max>(model, max, a)? else {
        return Ok(None);
    };
    let b = OutletId::new(max, 0);
    let Some(min) = super::only_reader(model, b)?.map(|r| r.node) else {
        return Ok(None);
    };
    let Some((_, Some(hi))) = step::<Min>(model, min, b)? else {
        return Ok(None);
    };
    // A zero bound would make the sign of a zero depend on the operands' order.
    if !ok(lo) || !ok(hi) || lo == 0.0 && lo.is_sign_negative() || hi == 0.0 {
        return Ok(None);
    }
    let c = OutletId::new(min, 0);
    let Some(mul) = super::only_reader(model, c)?.map(|r| r.node) else {
        return Ok(None);
    };
    let mul_node = model.node(mul);
    if mul_node.inputs.len() != 2 || !mul_node.inputs.contains(&x) {
        return Ok(None);
    }
    let Some((_, None)) = step::<Mul>(model, mul, c)? else {
        return Ok(None);
    };
    // x feeds the Add and the product, nothing else of the chain.
    let d = OutletId::new(mul, 0);
    let Some(last) = super::only_reader(model, d)?.map(|r| r.node) else {
        return Ok(None);
    };
    let scale = if let Some((0 | 1, Some(r))) = step::<Mul>(model, last, d)? {
        Scale::Mul(r)
    } else if let Some((0, Some(q))) = step::<Div>(model, last, d)? {
        Scale::Div(q)
    } else {
        return Ok(None);
    };
    if matches!(scale, Scale::Mul(v) | Scale::Div(v) if v.is_nan()) {
        return Ok(None);
    }
    let op = HardSwish { add, lo, hi, scale };
    Ok(Some((x, op, OutletId::new(last, 0))))
}

impl Op for HardSwish {
    fn name(&self) -> StaticName {
        "HardSwishChain".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "x * clip(x + {}, {}, {}) {:?}",
            self.add, self.lo, self.hi, self.scale
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for HardSwish {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        // In place when the value is ours alone.
        let mut t = input.into_tensor();
        {
            let mut view = t.try_as_plain_ram_mut()?;
            self.run(view.as_slice_mut::<f32>()?);
        }
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for HardSwish {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == DatumType::F32);
        Ok(tvec!(inputs[0].without_value()))
    }

    // Element-wise: tract may move axis changes through it, as through the chain.
    fn axes_mapping(
        &self,
        inputs: &[&TypedFact],
        outputs: &[&TypedFact],
    ) -> TractResult<AxesMapping> {
        AxesMapping::natural(inputs, outputs)
    }

    fn change_axes(
        &self,
        model: &TypedModel,
        node: &TypedNode,
        _io: InOut,
        change: &AxisOp,
    ) -> TractResult<Option<AxisChangeConsequence>> {
        Ok(Some(AxisChangeConsequence::new(model, node, None, change)))
    }

    as_op!();
}

impl HardSwish {
    /// Each value of `xs` replaced by the chain's.
    pub(crate) fn run(&self, xs: &mut [f32]) {
        // The same loop compiled for the vector sets this CPU has (the baseline's `f32::max`
        // is a few instructions a value).
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { run_avx512(self, xs) };
        } else if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { run_avx2(self, xs) };
        }
        run(self, xs)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn run_avx512(op: &HardSwish, xs: &mut [f32]) {
    run(op, xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(op: &HardSwish, xs: &mut [f32]) {
    run(op, xs)
}

#[inline(always)]
fn run(op: &HardSwish, xs: &mut [f32]) {
    let (add, lo, hi) = (op.add, op.lo, op.hi);
    match op.scale {
        Scale::Mul(r) => xs
            .iter_mut()
            .for_each(|x| *x = *x * (*x + add).max(lo).min(hi) * r),
        Scale::Div(q) => xs
            .iter_mut()
            .for_each(|x| *x = *x * (*x + add).max(lo).min(hi) / q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::math;

    /// Random values over the clip's range and past it, then the edge cases.
    fn inputs(len: usize) -> Vec<f32> {
        let mut s = 0x9e3779b9u32;
        let mut v: Vec<f32> = (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 20001) as f32 / 1000.0 - 10.0
            })
            .collect();
        let edges = [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            -3.0,
            f32::from_bits((-3.0f32).to_bits() + 1),
            f32::from_bits((-3.0f32).to_bits() - 1),
            3.0,
            6.0,
            -6.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -1e-45,
            1e-45,
        ];
        for (i, e) in edges.iter().enumerate() {
            v[i * 7 % len] = *e;
        }
        v
    }

    /// How the test chain differs from tract's reading of hard-swish.
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Twist {
        None,
        /// Divided by 6 instead of multiplied by its reciprocal.
        Div,
        /// The product reads another tensor than `x`.
        OtherProduct,
        /// The clip's output is a graph output too.
        ClipRead,
        /// The lower bound is -0.
        NegativeZero,
        /// The added constant is not one value.
        NotUniform,
    }

    /// `x [1, 5, 7, 9]` → `x · min(max(x + 3, 0), 6) · (1/6)` as tract's declutter writes it.
    fn graph(twist: Twist) -> TypedModel {
        let mut model = TypedModel::default();
        let shape = [1, 5, 7, 9];
        let x = model.add_source("x", f32::fact(shape)).unwrap();
        let z = model.add_source("z", f32::fact(shape)).unwrap();
        let scalar = |model: &mut TypedModel, name: &str, v: f32| {
            let t = tensor0(v).broadcast_into_rank(4).unwrap();
            model.add_const(name, t).unwrap()
        };
        let three = if twist == Twist::NotUniform {
            let t = tensor4(&[[[[3f32]], [[3.]], [[3.]], [[3.]], [[2.]]]]);
            model.add_const("three", t).unwrap()
        } else {
            scalar(&mut model, "three", 3.0)
        };
        let lo = if twist == Twist::NegativeZero {
            -0.0
        } else {
            0.0
        };
        let zero = scalar(&mut model, "zero", lo);
        let six = scalar(&mut model, "six", 6.0);
        let sixth = scalar(&mut model, "sixth", 1.0 / 6.0);
        let a = model.wire_node("add", math::add(), &[x, three]).unwrap()[0];
        let b = model.wire_node("max", math::max(), &[a, zero]).unwrap()[0];
        let c = model.wire_node("min", math::min(), &[b, six]).unwrap()[0];
        let other = if twist == Twist::OtherProduct { z } else { x };
        let d = model.wire_node("mul", math::mul(), &[other, c]).unwrap()[0];
        let e = if twist == Twist::Div {
            model.wire_node("div", math::div(), &[d, six]).unwrap()[0]
        } else {
            model.wire_node("scale", math::mul(), &[d, sixth]).unwrap()[0]
        };
        let outputs = if twist == Twist::ClipRead {
            vec![e, c]
        } else {
            vec![e]
        };
        model.select_output_outlets(&outputs).unwrap();
        model
    }

    fn run(model: TypedModel, optimized: bool) -> Vec<Vec<u32>> {
        let model = if optimized {
            model.into_optimized().unwrap()
        } else {
            model
        };
        let plan = model.into_runnable().unwrap();
        let x = tract_ndarray::Array::from_shape_vec(vec![1, 5, 7, 9], inputs(315)).unwrap();
        let z = x.mapv(|v| v * 0.5);
        let outputs = plan
            .run(tvec!(
                x.into_tensor().into_tvalue(),
                z.into_tensor().into_tvalue()
            ))
            .unwrap();
        outputs
            .iter()
            .map(|t| {
                let v = t.try_as_plain_ram().unwrap();
                // NaN compared as NaN (its payload is the CPU's business).
                v.as_slice::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_chain_onto_one_op_with_tracts_bits() {
        for twist in [Twist::None, Twist::Div] {
            let before = graph(twist);
            let mut after = before.clone();
            assert_eq!(hard_swishes(&mut after).unwrap(), 1, "{twist:?}");
            assert_eq!(
                after
                    .nodes()
                    .iter()
                    .filter(|n| n.op_is::<TypedBinOp>())
                    .count(),
                0
            );
            let ours = run(after.clone(), false);
            assert_eq!(
                ours,
                run(before.clone(), false),
                "{twist:?} against tract's ops"
            );
            // (tract's declutter turns a division by a constant into a product by its
            // reciprocal, before this pass sees the chain; the plan of the chain with `Div`
            // is that of the one with `Mul`.)
            if twist != Twist::Div {
                assert_eq!(ours, run(before, true), "{twist:?} against tract's plan");
            }
            // And through tract's codegen around ours.
            assert_eq!(ours, run(after, true), "{twist:?}");
        }
    }

    #[test]
    // `clamp` gives NaN for NaN where tract's `max` then `min` give the lower bound.
    #[allow(clippy::manual_clamp)]
    fn every_length_gives_the_scalar_loops_values() {
        let op = HardSwish {
            add: 3.0,
            lo: 0.0,
            hi: 6.0,
            scale: Scale::Mul(1.0 / 6.0),
        };
        let all = inputs(100);
        for len in 0..100 {
            let mut xs = all[..len].to_vec();
            op.run(&mut xs);
            for (x, y) in all.iter().zip(&xs) {
                let want = *x * (*x + 3.0).max(0.0).min(6.0) * (1.0 / 6.0);
                assert!(want.to_bits() == y.to_bits() || want.is_nan() && y.is_nan());
            }
        }
    }

    #[test]
    fn leaves_other_chains_to_tract() {
        for twist in [
            Twist::OtherProduct,
            Twist::ClipRead,
            Twist::NegativeZero,
            Twist::NotUniform,
        ] {
            let mut model = graph(twist);
            assert_eq!(hard_swishes(&mut model).unwrap(), 0, "{twist:?}");
        }
    }
}
