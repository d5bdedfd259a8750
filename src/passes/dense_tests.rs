//! Tests of the packed products pass: which products it takes, and the same values as tract.

use tract_core::ops::einsum::EinSum;
use tract_core::ops::math;
use tract_hir::internal::*;

use super::{packed_matmuls, PackedMatMul};

/// Deterministic values in [-1, 1), with some exactly 0 and negative.
fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u32) -> Tensor {
    let len = shape.iter().product();
    tract_ndarray::Array::from_shape_vec(shape, values(len, seed))
        .unwrap()
        .into_tensor()
}

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
    // Contracted over an axis other than the last one of the input.
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact([8, 5])).unwrap();
    let w = model.add_const("w", tensor(&[8, 16], 7)).unwrap();
    let op = EinSum::new("kb,kn->bn".parse().unwrap(), DatumType::F32);
    let y = model.wire_node("mm", op, &[x, w]).unwrap()[0];
    model.select_output_outlets(&[y]).unwrap();
    assert_eq!(packed_matmuls(&mut model).unwrap(), 0);
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
