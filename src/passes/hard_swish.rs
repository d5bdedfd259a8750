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

/// The node reading `outlet` alone (not a graph output).
fn only_reader(model: &TypedModel, outlet: OutletId) -> TractResult<Option<usize>> {
    if model.output_outlets()?.contains(&outlet) {
        return Ok(None);
    }
    Ok(
        match &model.node(outlet.node).outputs[outlet.slot].successors[..] {
            [succ] => Some(succ.node),
            _ => None,
        },
    )
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
    let Some(max) = only_reader(model, a)? else {
        return Ok(None);
    };
    let Some((_, Some(lo))) = step::<Max>(model, max, a)? else {
        return Ok(None);
    };
    let b = OutletId::new(max, 0);
    let Some(min) = only_reader(model, b)? else {
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
    let Some(mul) = only_reader(model, c)? else {
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
    let Some(last) = only_reader(model, d)? else {
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
