//! onnxruntime's `com.microsoft` `DynamicQuantizeLSTM` (src/qlstm/): single-node models of
//! `fixtures/qlstm` (scripts/gen_qlstm.py) against onnxruntime, and the refusals of what
//! rnn-run does not reproduce.

mod common;

use common::manifest::{folder, run_cases};
use prost::Message;
use rnn_run::{Error, Model};
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};

#[test]
fn quantized_lstm_nodes_match_onnxruntime() {
    let folder = folder("qlstm");
    let (mut models, mut calls, mut worst) = (0, 0, 0.0f64);
    let mut failures = vec![];
    for m in folder.models() {
        let name = m["name"].as_str().unwrap();
        let result = Model::load(folder.path(&m["file"]))
            .map_err(|e| vec![format!("{name}: load: {e}")])
            .and_then(|model| run_cases(&folder, m, &model));
        match result {
            Ok((n, e)) => {
                models += 1;
                calls += n;
                worst = worst.max(e);
                // With Sigmoid and Tanh (MLAS's approximations, reproduced bit for bit) every
                // operation is onnxruntime's, in its order: the outputs are its own.
                let default_acts = m["node"]["attributes"].get("activations").is_none();
                if default_acts && e != 0.0 {
                    failures.push(format!(
                        "{name}: largest abs error {e:e}, expected 0 (bit for bit)"
                    ));
                }
            }
            Err(errors) => failures.extend(errors),
        }
    }
    eprintln!("fixtures/qlstm: {models} models, {calls} calls, largest abs error {worst:e}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        models >= 11 && calls >= 21,
        "{models} models, {calls} calls"
    );
}

/// A fixture model as protobuf, to be altered.
fn fixture(name: &str) -> ModelProto {
    let path = folder("qlstm").dir.join(name).join("model.onnx");
    ModelProto::decode(&*std::fs::read(path).unwrap()).unwrap()
}

fn node(m: &mut ModelProto) -> &mut NodeProto {
    &mut m.graph.as_mut().unwrap().node[0]
}

fn initializer<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut TensorProto {
    m.graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap()
}

/// Loading the altered model fails with a message naming the node and containing `want`.
fn refused(m: &ModelProto, want: &[&str]) {
    let err = match Model::from_bytes(&m.encode_to_vec()) {
        Ok(_) => panic!("loaded, expected a refusal naming {want:?}"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(
        text.contains("node 'qlstm'"),
        "the message does not name the node: {text}"
    );
    for w in want {
        assert!(text.contains(w), "the message lacks {w:?}: {text}");
    }
}

#[test]
fn outside_the_com_microsoft_domain_it_is_refused() {
    let mut m = fixture("fwd_i8_tensor");
    node(&mut m).domain = "ai.onnx.contrib".into();
    refused(
        &m,
        &[
            "ai.onnx.contrib DynamicQuantizeLSTM",
            "'com.microsoft' domain",
            "found it in domain 'ai.onnx.contrib'",
        ],
    );
}

#[test]
fn nonzero_per_column_zero_points_of_int8_weights_are_refused() {
    let mut m = fixture("rev_i8_column_states");
    let zp = initializer(&mut m, "R_zero_point");
    zp.raw_data[3] = 2;
    let err = Model::from_bytes(&m.encode_to_vec()).unwrap_err();
    assert!(matches!(err, Error::Node(_)), "{err}");
    refused(
        &m,
        &[
            "com.microsoft DynamicQuantizeLSTM",
            "input R_zero_point",
            "must all be 0",
            "found 2",
        ],
    );
}

#[test]
fn unequal_per_column_zero_points_of_uint8_weights_are_refused() {
    let mut m = fixture("fwd_u8_column");
    let zp = initializer(&mut m, "W_zero_point");
    zp.raw_data[5] = zp.raw_data[5].wrapping_add(1);
    refused(&m, &["input W_zero_point", "must all be equal"]);
}

#[test]
fn a_per_tensor_zero_point_with_per_column_scales_is_refused_when_bidirectional() {
    let mut m = fixture("bidir_u8_column_states");
    let zp = initializer(&mut m, "W_zero_point");
    zp.dims = vec![2];
    zp.raw_data.truncate(2);
    refused(
        &m,
        &[
            "input W_zero_point",
            "per-tensor zero point with per-column scales",
        ],
    );
}

#[test]
fn float64_input_is_refused() {
    let mut m = fixture("fwd_i8_tensor");
    let graph = m.graph.as_mut().unwrap();
    let x = graph.input.iter_mut().find(|i| i.name == "X").unwrap();
    let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) =
        x.r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!("X is a tensor")
    };
    t.elem_type = tract_onnx::pb::tensor_proto::DataType::Double as i32;
    refused(&m, &["input X: expected float32", "found F64"]);
}

#[test]
fn zero_points_of_another_type_than_the_weights_are_refused() {
    let mut m = fixture("fwd_i8_tensor");
    initializer(&mut m, "W_zero_point").data_type =
        tract_onnx::pb::tensor_proto::DataType::Uint8 as i32;
    refused(
        &m,
        &["input W_zero_point: expected I8 like its weights, found U8"],
    );
}

#[test]
fn attributes_lstm_has_but_this_operator_does_not_are_refused() {
    let mut m = fixture("fwd_i8_tensor");
    node(&mut m).attribute.push(AttributeProto {
        name: "layout".into(),
        r#type: AttributeType::Int as i32,
        i: 0,
        ..Default::default()
    });
    refused(
        &m,
        &["attribute 'layout' is not defined for DynamicQuantizeLSTM"],
    );
}

#[test]
fn activations_whose_defaults_onnxruntime_changes_are_refused() {
    let mut m = fixture("fwd_i8_tensor");
    node(&mut m).attribute.push(AttributeProto {
        name: "activations".into(),
        r#type: AttributeType::Strings as i32,
        strings: vec![
            b"Sigmoid".to_vec(),
            b"ScaledTanh".to_vec(),
            b"Tanh".to_vec(),
        ],
        ..Default::default()
    });
    refused(
        &m,
        &[
            "ScaledTanh takes its alpha and beta",
            "onnxruntime then uses 0",
        ],
    );
}

#[test]
fn a_missing_scale_is_refused() {
    let mut m = fixture("fwd_i8_tensor");
    node(&mut m).input[10].clear();
    refused(&m, &["input 10 (R_scale) is required but missing"]);
}

#[test]
fn a_wrongly_shaped_weight_is_refused() {
    let mut m = fixture("fwd_i8_tensor");
    // W as ONNX LSTM lays it out, [dirs, 4·hidden, input]: the classic mistake.
    let w = initializer(&mut m, "W");
    w.dims = vec![1, 16, 5];
    refused(
        &m,
        &["input W: expected shape [1, 5, 16]", "found [1, 16, 5]"],
    );
}
