//! Unit tests of the quantized LSTM: quantization parameters, integer products and node
//! parsing.

use tract_onnx::pb::NodeProto;

use super::int_gemm::{int_product, IntMatrix};
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
    // a: 2 rows × 3, w: 3 × 2.
    let a = [1, -2, 3, 255, -255, 0];
    let w = IntMatrix::new(3, 2, &[1, -1, 2, 255, -255, 3]);
    let mut out = vec![10.0f32; 4];
    int_product(&a, 2, &w, &[0.5, 2.0], &mut out, true);
    // Row 0: 1·1 − 2·2 + 3·(−255) = −768; 1·(−1) − 2·255 + 3·3 = −502.
    // Row 1: 255·1 − 255·2 = −255; 255·(−1) − 255·255 = −65280.
    assert_eq!(
        out,
        [10.0 - 384.0, 10.0 - 1004.0, 10.0 - 127.5, 10.0 - 130560.0]
    );
    int_product(&a, 2, &w, &[1.0], &mut out, false);
    assert_eq!(out, [-768.0, -502.0, -255.0, -65280.0]);
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
