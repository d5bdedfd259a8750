//! Tests of the packed products pass: which products it takes, and the same values as tract.

use tract_core::ops::einsum::EinSum;
use tract_core::ops::math;
use tract_hir::internal::*;

use super::{packed_matmuls, PackedMatMul};
use crate::test_values::tensor;

/// `x [2, 5, k] · w [k, n]` (+ a bias row, then a ReLU), `w` a constant or a second input,
/// the product written as `expr`.
fn graph(k: usize, n: usize, expr: &str, w_const: bool, epilogue: bool) -> TypedModel {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([2, 5, k])).unwrap();
    let w_shape = if expr.contains(",kn->") {
        [k, n]
    } else {
        [n, k]
    };
    let w = if w_const {
        model.add_const("w", tensor(&w_shape, 7)).unwrap()
    } else {
        model.add_source("w", f32::fact(w_shape)).unwrap()
    };
    let op = EinSum::new(expr.parse().unwrap(), DatumType::F32);
    let mut y = model.wire_node("mm", op, &[x, w]).unwrap()[0];
    if epilogue {
        let bias = model.add_const("bias", tensor(&[1, 1, n], 11)).unwrap();
        y = model.wire_node("add", math::add(), &[bias, y]).unwrap()[0];
        let zero = model
            .add_const("zero", tensor0(0f32).broadcast_into_rank(3).unwrap())
            .unwrap();
        y = model.wire_node("relu", math::max(), &[y, zero]).unwrap()[0];
    }
    model.select_output_outlets(&[y]).unwrap();
    model
}

fn run(model: &TypedModel, inputs: TVec<TValue>) -> Tensor {
    let plan = model.clone().into_runnable().unwrap();
    plan.run(inputs).unwrap().remove(0).into_tensor()
}

fn count(model: &TypedModel) -> usize {
    model
        .nodes()
        .iter()
        .filter(|n| n.op_is::<PackedMatMul>())
        .count()
}

#[test]
fn takes_the_product_its_bias_and_relu_with_tract_values() {
    for (k, n, epilogue) in [
        (64, 64, true),
        (161, 400, true),
        (7, 33, false),
        (600, 161, true),
    ] {
        let before = graph(k, n, "abk,kn->abn", true, epilogue);
        let mut after = before.clone();
        assert_eq!(packed_matmuls(&mut after).unwrap(), 1);
        assert_eq!(count(&after), 1);
        // The bias and the ReLU went into it.
        assert_eq!(after.nodes().len(), 2, "{after}");
        let x = tensor(&[2, 5, k], 3);
        let theirs = run(&before, tvec!(x.clone().into_tvalue()));
        let ours = run(&after, tvec!(x.into_tvalue()));
        assert_eq!(theirs.shape(), ours.shape());
        let (theirs, ours) = (
            theirs.try_as_plain_ram().unwrap(),
            ours.try_as_plain_ram().unwrap(),
        );
        let (t, o) = (
            theirs.as_slice::<f32>().unwrap(),
            ours.as_slice::<f32>().unwrap(),
        );
        // Sums of k products in another order: a few ulps of the largest term apart.
        let tol = 4.0 * f32::EPSILON * k as f32;
        for (a, b) in t.iter().zip(o) {
            assert!((a - b).abs() <= tol, "k {k} n {n}: tract {a}, packed {b}");
        }
        if epilogue {
            assert!(o.iter().all(|&v| v >= 0.0) && o.contains(&0.0));
        }
    }
}

#[test]
fn leaves_run_time_weights_and_other_contractions() {
    // The matrix an input, not a constant.
    let mut model = graph(8, 16, "abk,kn->abn", false, true);
    assert_eq!(packed_matmuls(&mut model).unwrap(), 0);
    assert_eq!(count(&model), 0);
    // The matrix transposed (`nk`): another layout of the weights, left to tract.
    let mut model = graph(8, 16, "abk,nk->abn", true, true);
    assert_eq!(packed_matmuls(&mut model).unwrap(), 0);
    // A batched product (`b` in the output and contracted): not a product by one matrix.
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([2, 5, 8])).unwrap();
    let w = model.add_const("w", tensor(&[2, 8, 16], 7)).unwrap();
    let op = EinSum::new("bmk,bkn->bmn".parse().unwrap(), DatumType::F32);
    let y = model.wire_node("mm", op, &[x, w]).unwrap()[0];
    model.select_output_outlets(&[y]).unwrap();
    assert_eq!(packed_matmuls(&mut model).unwrap(), 0);
}

/// `expr` (two inputs, one output, no repeated letter in a term) in float64, as the sum over
/// every letter not in the output.
fn einsum_reference(expr: &str, x: &Tensor, w: &Tensor) -> (Vec<usize>, Vec<f64>) {
    let (ins, y) = expr.split_once("->").unwrap();
    let (xs, ws) = ins.split_once(',').unwrap();
    let mut dims: Vec<(char, usize)> = vec![];
    for (term, t) in [(xs, x), (ws, w)] {
        for (c, &d) in term.chars().zip(t.shape()) {
            if !dims.iter().any(|(l, _)| *l == c) {
                dims.push((c, d));
            }
        }
    }
    let dim = |c: char| dims.iter().find(|(l, _)| *l == c).unwrap().1;
    let yshape: Vec<usize> = y.chars().map(dim).collect();
    let summed: Vec<char> = dims
        .iter()
        .map(|d| d.0)
        .filter(|c| !y.contains(*c))
        .collect();
    let (xv, wv) = (x.try_as_plain_ram().unwrap(), w.try_as_plain_ram().unwrap());
    let (xv, wv) = (xv.as_slice::<f32>().unwrap(), wv.as_slice::<f32>().unwrap());
    let offset = |term: &str, t: &Tensor, at: &dyn Fn(char) -> usize| {
        term.chars()
            .zip(t.shape())
            .fold(0, |o, (c, &d)| o * d + at(c))
    };
    let mut out = vec![];
    let mut yi = vec![0usize; yshape.len()];
    for _ in 0..yshape.iter().product::<usize>() {
        let mut si = vec![0usize; summed.len()];
        let mut sum = 0f64;
        for _ in 0..summed.iter().map(|&c| dim(c)).product::<usize>() {
            let at = |c: char| match y.chars().position(|l| l == c) {
                Some(p) => yi[p],
                None => si[summed.iter().position(|&l| l == c).unwrap()],
            };
            sum += xv[offset(xs, x, &at)] as f64 * wv[offset(ws, w, &at)] as f64;
            for j in (0..si.len()).rev() {
                si[j] += 1;
                if si[j] < dim(summed[j]) {
                    break;
                }
                si[j] = 0;
            }
        }
        out.push(sum);
        for j in (0..yi.len()).rev() {
            yi[j] += 1;
            if yi[j] < yshape[j] {
                break;
            }
            yi[j] = 0;
        }
    }
    (yshape, out)
}

/// The input's and the weights' shapes for a row count and a contraction length.
type Shapes = fn(usize, usize) -> (Vec<usize>, Vec<usize>);

/// Products over other axes than the input's last, or several (a bidirectional LSTM's
/// `[T, 2, batch, H]` output by a `[2, H, n]` classifier, as tract folds its `Transpose` and
/// `Reshape` into the einsum), against the float64 sum, over a few shapes each.
#[test]
fn products_over_other_or_several_axes_equal_the_reference() {
    let cases: [(&str, Shapes); 5] = [
        ("abmk,bkn->amn", |a, k| (vec![a, 2, 3, k], vec![2, k, 16])),
        ("abmk,bkn->amn", |a, k| (vec![a, 2, 1, k], vec![2, k, 97])),
        ("kb,kn->bn", |a, k| (vec![k, a], vec![k, 5])),
        ("akb,bkn->an", |a, k| (vec![a, k, 3], vec![3, k, 12])),
        ("bmk,bkn->mn", |a, k| (vec![2, a, k], vec![2, k, 33])),
    ];
    for (expr, shapes) in cases {
        for (a, k, seed) in [(1, 1, 1), (5, 8, 2), (40, 64, 3), (7, 33, 4)] {
            let (xshape, wshape) = shapes(a, k);
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact(&xshape)).unwrap();
            let wt = tensor(&wshape, seed);
            let w = model.add_const("w", wt.clone()).unwrap();
            let op = EinSum::new(expr.parse().unwrap(), DatumType::F32);
            let y = model.wire_node("mm", op, &[x, w]).unwrap()[0];
            model.select_output_outlets(&[y]).unwrap();
            assert_eq!(packed_matmuls(&mut model).unwrap(), 1, "{expr} {xshape:?}");
            let xt = tensor(&xshape, seed + 10);
            let ours = run(&model, tvec!(xt.clone().into_tvalue()));
            let (shape, want) = einsum_reference(expr, &xt, &wt);
            assert_eq!(ours.shape(), &shape[..], "{expr} {xshape:?}");
            let ours = ours.try_as_plain_ram().unwrap();
            let contracted: usize = wshape[..wshape.len() - 1].iter().product();
            // A float32 sum of `contracted` products of values in [-1, 1].
            let tol = contracted as f64 * f32::EPSILON as f64;
            for (o, r) in ours.as_slice::<f32>().unwrap().iter().zip(&want) {
                assert!(
                    (*o as f64 - r).abs() <= tol,
                    "{expr} {xshape:?}: {o} against {r}"
                );
            }
        }
    }
}

/// `x · w` written as `expr` on `x` of shape `x_shape`, `w` `[8, 16]` constant.
fn folded(expr: &str, x_shape: &[usize]) -> TypedModel {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact(x_shape)).unwrap();
    let w = model.add_const("w", tensor(&[8, 16], 7)).unwrap();
    let op = EinSum::new(expr.parse().unwrap(), DatumType::F32);
    let y = model.wire_node("mm", op, &[x, w]).unwrap()[0];
    model.select_output_outlets(&[y]).unwrap();
    model
}

#[test]
fn axes_of_one_around_the_product() {
    // As tract folds NSNet2's reshapes: `amk,kn->man` and `mbak,kn->mn`.
    for (expr, shape) in [
        ("amk,kn->man", &[1, 5, 8][..]),
        ("mbak,kn->mn", &[5, 1, 1, 8]),
    ] {
        let before = folded(expr, shape);
        let mut after = before.clone();
        assert_eq!(packed_matmuls(&mut after).unwrap(), 1, "{expr}");
        let x = tensor(shape, 5);
        let theirs = run(&before, tvec!(x.clone().into_tvalue()));
        let ours = run(&after, tvec!(x.into_tvalue()));
        assert_eq!(theirs.shape(), ours.shape(), "{expr}");
        assert!(
            theirs.close_enough(&ours, Approximation::Close).is_ok(),
            "{expr}"
        );
    }
    // Rows transposed (`abk,kn->ban`, both axes longer than one): not the same rows.
    let mut model = folded("abk,kn->ban", &[2, 5, 8]);
    assert_eq!(packed_matmuls(&mut model).unwrap(), 0);
}
