//! Unit tests of the quantized LSTM: quantization parameters, integer products and node
//! parsing.

use tract_onnx::pb::NodeProto;

use super::int_gemm::{int_product, IntMatrix, Path, QuantRows};
use super::parse::INPUT_NAMES;
use super::*;

#[test]
fn quantization_parameters_follow_onnxruntime() {
    // Range [-1, 2]: scale 3/255, zero point round(85.0) = 85.
    let (scale, zp) = quantization_params([-1.0, 2.0, 0.5]);
    assert_eq!(scale.to_bits(), 0x3c40c0c1);
    assert_eq!(zp, 85);
    // 0.5 / scale = 42.5 rounds half to even: 42.
    let q: Vec<u8> = [-1.0, 2.0, 0.5, 9.0, -9.0]
        .iter()
        .map(|&v| quantize(v, scale, zp))
        .collect();
    assert_eq!(q, [0, 255, 127, 255, 0]);
    // The range always includes 0; an all-zero range has scale 1.
    assert_eq!(quantization_params([3.0, 1.0]), (3.0 / 255.0, 0));
    assert_eq!(quantization_params([-2.0f32]), (2.0 / 255.0, 255));
    assert_eq!(quantization_params([0.0f32; 4]), (1.0, 0));
    assert_eq!(quantization_params(std::iter::empty()), (1.0, 0));
}

#[test]
fn integer_products_are_exact_and_rescaled_per_column() {
    // a − a_zp: [[1, −2, 3], [−1, 2, 0]] (zero point 2); w: 3 × 2.
    let mut a = QuantRows::new(3);
    a.reset(2, 2);
    a.set_row(0, [3, 0, 5]);
    a.set_row(1, [1, 4, 2]);
    for path in Path::available() {
        let w = IntMatrix::for_path(3, 2, &[1, -1, 2, 255, -255, 3], path);
        let mut out = vec![10.0f32; 4];
        int_product(&a, &w, &[0.5, 2.0], &mut out, true);
        // Row 0: 1·1 − 2·2 + 3·(−255) = −768; 1·(−1) − 2·255 + 3·3 = −502.
        // Row 1: −1·1 + 2·2 = 3; −1·(−1) + 2·255 = 511.
        assert_eq!(
            out,
            [10.0 - 384.0, 10.0 - 1004.0, 10.0 + 1.5, 10.0 + 1022.0]
        );
        int_product(&a, &w, &[1.0], &mut out, false);
        assert_eq!(out, [-768.0, -502.0, 3.0, 511.0], "{path:?}");
    }
}

fn node(domain: &str) -> NodeProto {
    use tract_onnx::pb::attribute_proto::AttributeType;
    use tract_onnx::pb::AttributeProto;
    let mut n = NodeProto {
        name: "q".into(),
        op_type: OP_TYPE.into(),
        domain: domain.into(),
        ..Default::default()
    };
    n.input = INPUT_NAMES.iter().map(|s| s.to_string()).collect();
    for i in [3, 4, 7] {
        n.input[i].clear();
    }
    n.output = vec!["Y".into(), "".into(), "Y_c".into()];
    n.attribute.push(AttributeProto {
        name: "hidden_size".into(),
        r#type: AttributeType::Int as i32,
        i: 3,
        ..Default::default()
    });
    n
}

#[test]
fn spec_slots_count_only_present_inputs() {
    let spec = QuantSpec::from_node(&node(DOMAIN)).unwrap();
    assert_eq!(spec.hidden, 3);
    let s = spec.lstm.slots;
    assert_eq!((s.b, s.sequence_lens, s.p), (None, None, None));
    assert_eq!((s.initial_h, s.initial_c), (Some(3), Some(4)));
    assert_eq!((s.y, s.y_h, s.y_c), (Some(0), None, Some(1)));
    assert_eq!(spec.quant_slots, [5, 6, 7, 8]);
    assert_eq!(spec.input_count(), 9);
}

#[test]
fn the_domain_and_hidden_size_are_required() {
    let e = QuantSpec::from_node(&node("")).unwrap_err();
    assert_eq!(e.op, "ai.onnx DynamicQuantizeLSTM");
    assert!(e.message.contains("found it in domain 'ai.onnx'"), "{e}");
    let mut n = node(DOMAIN);
    n.attribute.clear();
    let e = QuantSpec::from_node(&n).unwrap_err();
    assert!(e.to_string().contains("'hidden_size' is required"), "{e}");
    let mut n = node(DOMAIN);
    n.input.pop();
    let e = QuantSpec::from_node(&n).unwrap_err();
    assert!(e.to_string().contains("expected 12 inputs"), "{e}");
}

/// One direction's weights with random int8-like W and uint8-like R (±255 after its zero
/// point), packed for `path`.
fn dir_weights(input: usize, hidden: usize, seed: u64, path: Path) -> weights::DirWeights {
    use weights::GateAct;
    let mut rng = int_gemm::tests::Ints::new(seed);
    let g = 4 * hidden;
    let w: Vec<i16> = (0..input * g).map(|_| rng.next(-128, 127) as i16).collect();
    let r: Vec<i16> = (0..hidden * g).map(|_| rng.next(-200, 55) as i16).collect();
    let mut small = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| rng.next(-1000, 1000) as f32 / 4000.0)
            .collect()
    };
    weights::DirWeights {
        w: IntMatrix::for_path(input, g, &w, path),
        r: IntMatrix::for_path(hidden, g, &r, path),
        w_scale: vec![0.004],
        r_scale: small(g)
            .into_iter()
            .map(|v| v.abs() / 50.0 + 1e-4)
            .collect(),
        bias: Some(small(g)),
        p: Some(small(3 * hidden)),
        f: GateAct::Logistic,
        g: GateAct::Tanh,
        h: GateAct::Tanh,
    }
}

/// Stacks of 1 to 3 layers at hidden sizes off the 8- and 16-lane multiples, batch 1 to 16,
/// with ragged sequence lengths and both directions: every integer path gives the portable
/// one's outputs bit for bit.
#[test]
fn stacked_layers_agree_bit_for_bit_on_every_path() {
    use ndarray::{Array2, Array3};
    let paths = Path::available();
    for (hidden, batch, layers, input) in [
        (1, 1, 1, 3),
        (5, 2, 2, 7),
        (13, 16, 3, 10),
        (25, 1, 3, 33),
        (33, 3, 2, 17),
        (70, 5, 1, 64),
    ] {
        let steps = 6;
        let lens: Vec<usize> = (0..batch).map(|b| steps - b % 3).collect();
        let mut rng = int_gemm::tests::Ints::new(hidden as u64 * 31 + batch as u64);
        let x0 = Array3::from_shape_fn((steps, batch, input), |_| {
            rng.next(-3000, 3000) as f32 / 1000.0
        });
        let mut results = vec![];
        for &path in &paths {
            let mut x = x0.clone();
            let mut finals = vec![];
            for layer in 0..layers {
                let k = x.dim().2;
                let w = dir_weights(k, hidden, 7 + layer as u64, path);
                let mut y = Array3::<f32>::zeros((steps, batch, hidden));
                let mut y_h = Array2::<f32>::zeros((batch, hidden));
                let mut y_c = Array2::<f32>::zeros((batch, hidden));
                let h0 = Array2::from_shape_fn((batch, hidden), |(b, j)| {
                    ((b * 7 + j) % 5) as f32 / 10.0 - 0.2
                });
                w.run(
                    x.view(),
                    &lens,
                    layer % 2 == 1,
                    Some(h0.view()),
                    None,
                    crate::cells::activation::Clip::new(None),
                    false,
                    kernels::DirOutputs {
                        y: Some(y.view_mut()),
                        y_h: y_h.view_mut(),
                        y_c: y_c.view_mut(),
                    },
                );
                finals.push((y_h, y_c));
                x = y;
            }
            results.push((path, x, finals));
        }
        let (_, y0, f0) = &results[0];
        for (path, y, f) in &results[1..] {
            let bits = |a: &Array3<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(y), bits(y0), "{path:?} hidden {hidden} batch {batch}");
            for ((h, c), (h0, c0)) in f.iter().zip(f0) {
                assert_eq!(h, h0, "{path:?} Y_h hidden {hidden} batch {batch}");
                assert_eq!(c, c0, "{path:?} Y_c hidden {hidden} batch {batch}");
            }
        }
        assert!(y0.iter().any(|&v| v != 0.0));
    }
}
