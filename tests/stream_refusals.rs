//! Streaming refusals in the model's words: the node by its ONNX name and what it does to the
//! time axis (reverses it, pools it, mixes steps...), the same from `stream()`, `stream_pool`
//! and the CLI's `--chunk`, and never tract's internals.

mod common;

use assert_cmd::Command;
use common::proto::{
    attr_int, float_initializer, int64_initializer, model_bytes, node, value_info, Dim,
};
use common::random_graph::{Choices, Seeded};
use prost::Message;
use rnn_run::{Model, PoolOptions, Tensor};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};

/// The suite's one check for engine internals (`tests/common/hostile.rs`), plus the names of
/// the symbols a stream and a pool type their graphs with.
fn assert_plain(text: &str) {
    common::hostile::assert_plain("a streaming refusal", text);
    for ours in ["stream_seq", "pool_batch"] {
        assert!(!text.contains(ours), "'{ours}' in: {text}");
    }
}

fn weights(n: usize, c: &mut Seeded) -> Vec<f32> {
    (0..n).map(|_| c.small_float() * 0.5).collect()
}

const F: i64 = 3;
const H: i64 = 4;

/// A forward GRU named `name` on `x` (`[seq, batch, in]`), output `y` (`[seq, batch, H]`).
fn gru(
    name: &str,
    x: &str,
    input: i64,
    y: &str,
    c: &mut Seeded,
) -> (Vec<NodeProto>, Vec<TensorProto>) {
    let w = format!("{name}.W");
    let r = format!("{name}.R");
    let yy = format!("{name}.Y");
    let axes = format!("{name}.axes");
    let mut g = node("GRU", name, &[x, &w, &r], &[&yy]);
    g.attribute.push(attr_int("hidden_size", H));
    let sq = node("Squeeze", &format!("{name}/Squeeze"), &[&yy, &axes], &[y]);
    (
        vec![g, sq],
        vec![
            float_initializer(&w, &[1, 3 * H, input], weights((3 * H * input) as usize, c)),
            float_initializer(&r, &[1, 3 * H, H], weights((3 * H * H) as usize, c)),
            int64_initializer(&axes, &[1]),
        ],
    )
}

/// GRU → a flip of its output along time (`y.flip(0)`, a Slice with step -1) → [a second GRU].
fn flipped(then_gru: bool) -> Vec<u8> {
    let mut c = Seeded(11);
    let (mut nodes, mut inits) = gru("/gru1/GRU", "x", F, "h1", &mut c);
    nodes.push(node(
        "Slice",
        "/Flip",
        &["h1", "starts", "ends", "axes", "steps"],
        &[if then_gru { "flipped" } else { "y" }],
    ));
    inits.extend([
        int64_initializer("starts", &[-1]),
        int64_initializer("ends", &[-i64::MAX]),
        int64_initializer("axes", &[0]),
        int64_initializer("steps", &[-1]),
    ]);
    if then_gru {
        let (n, i) = gru("/gru2/GRU", "flipped", H, "y", &mut c);
        nodes.extend(n);
        inits.extend(i);
    }
    let graph = GraphProto {
        name: "g".into(),
        node: nodes,
        initializer: inits,
        input: vec![value_info(
            "x",
            DataType::Float,
            Some(&[Dim::S("seq"), Dim::S("batch"), Dim::N(F)]),
        )],
        output: vec![value_info("y", DataType::Float, None)],
        ..Default::default()
    };
    model_bytes(graph, 13)
}

/// The refusal of each way in: `stream()`, `stream_pool` (at open or at the first frame),
/// `run_chunked` and the CLI's `--chunk`.
fn refusals(bytes: &[u8]) -> Vec<String> {
    let x = Tensor::zero::<f32>(&[6, 1, F as usize]).unwrap();
    let frame = Tensor::zero::<f32>(&[1, 1, F as usize]).unwrap();
    refusals_for(bytes, &x, &frame)
}

/// [`refusals`] with a whole input `x` and one pool frame.
fn refusals_for(bytes: &[u8], x: &Tensor, frame: &Tensor) -> Vec<String> {
    let model = Model::from_bytes(bytes).unwrap();
    let mut out = vec![];
    // At stream() or, where typing needs the chunk's shape, at the first push.
    out.push(match model.stream() {
        Err(e) => e.to_string(),
        Ok(mut stream) => stream.push(vec![x.clone()]).unwrap_err().to_string(),
    });
    out.push(match model.stream_pool(PoolOptions::default(), vec![]) {
        Err(e) => e.to_string(),
        Ok(pool) => {
            let id = pool.open().unwrap();
            pool.push(id, vec![frame.clone()])
                .unwrap()
                .wait()
                .unwrap_err()
                .to_string()
        }
    });
    out.push(
        model
            .run_chunked(vec![x.clone()], 2)
            .unwrap_err()
            .to_string(),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.onnx"), bytes).unwrap();
    rnn_run::npy::write_npy(dir.path().join("x.npy"), x).unwrap();
    let cli = Command::cargo_bin("rnn-run")
        .unwrap()
        .current_dir(dir.path())
        .args(["m.onnx", "x.npy", "--chunk", "2"])
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(2));
    out.push(String::from_utf8_lossy(&cli.stderr).into_owned());
    out
}

#[test]
fn a_flip_along_time_is_refused_in_plain_words() {
    for then_gru in [false, true] {
        let all = refusals(&flipped(then_gru));
        for text in &all {
            eprintln!("{text}");
            assert_plain(text);
            assert!(text.contains("node '/Flip' (Slice) reverses"), "{text}");
        }
    }
}

/// A stream keeps its first chunk's batch and features: the refusal shows that chunk's shape
/// (the time axis as `time`), not a 0 in its place.
#[test]
fn a_streams_batch_change_names_its_first_chunks_shape() {
    let model = Model::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/matrix/gru_l1_nobias_noinit_legacy_op17/model.onnx"),
    )
    .unwrap();
    let t = model.time_axes().unwrap()[0].unwrap();
    let shape = |batch: usize| -> Vec<usize> {
        model.inputs()[0]
            .shape
            .iter()
            .enumerate()
            .map(|(a, d)| match d {
                _ if a == t => 3,
                rnn_run::Dim::Fixed(n) => *n,
                rnn_run::Dim::Symbol(_) => batch,
            })
            .collect()
    };
    let mut stream = model.stream().unwrap();
    stream
        .push(vec![Tensor::zero::<f32>(&shape(1)).unwrap()])
        .unwrap();
    let e = stream
        .push(vec![Tensor::zero::<f32>(&shape(2)).unwrap()])
        .unwrap_err()
        .to_string();
    assert_plain(&e);
    let mut first: Vec<String> = shape(1).iter().map(|d| d.to_string()).collect();
    first[t] = "time".into();
    assert!(
        e.contains(&format!("first chunk had [{}]", first.join(", "))),
        "{e}"
    );
}

/// `max_batch: 0` is a bad option, not a model that cannot stream.
#[test]
fn max_batch_zero_is_an_option_error() {
    let model = Model::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/matrix/gru_l1_nobias_noinit_legacy_op17/model.onnx"),
    )
    .unwrap();
    let options = PoolOptions {
        max_batch: 0,
        ..Default::default()
    };
    let e = model.stream_pool(options, vec![]).unwrap_err().to_string();
    assert!(
        e.contains("max_batch is 0") && !e.contains("cannot stream this model"),
        "{e}"
    );
}

fn export_fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/stream_exports")
            .join(name),
    )
    .unwrap()
}

/// PyTorch exports (scripts/gen_stream_exports.py) that cannot stream: each way in names the
/// node and says what it does to the time axis in plain words (no tract analyser text, no
/// stream symbol): tract's "Reshape volume mismatch" (a fixed-length dynamo export whose length
/// equals the features), a pool over time that shortens it, concatenation along time, a roll,
/// time folded into the batch.
#[test]
fn torch_exports_that_cannot_stream_are_refused_by_node_and_reason() {
    let x = Tensor::zero::<f32>(&[1, 6, 8]).unwrap();
    let frame = Tensor::zero::<f32>(&[1, 1, 8]).unwrap();
    let x8 = Tensor::zero::<f32>(&[1, 8, 8]).unwrap();
    let cases: &[(&str, &Tensor, &[&str])] = &[
        (
            "refuse_square_fixed_dynamo.onnx",
            &x8,
            &["(Reshape) reshapes with sizes written for one length of the time"],
        ),
        (
            "refuse_max_over_time.onnx",
            &x,
            &["node '/MaxPool' (MaxPool) looks ahead along the time axis"],
        ),
        (
            "refuse_cat_time.onnx",
            &x,
            &["node '/Concat' (Concat) concatenates along the time axis, which changes its length"],
        ),
        (
            "refuse_roll.onnx",
            &x,
            &["(Slice) reads steps", "a shift, a roll"],
        ),
        (
            "refuse_fold_into_batch.onnx",
            &x,
            &["(Reshape) folds the time axis into the batch axis"],
        ),
    ];
    for (file, x, wants) in cases {
        let all = refusals_for(&export_fixture(file), x, &frame);
        for text in &all {
            assert_plain(text);
            for want in *wants {
                assert!(text.contains(want), "{file}: '{want}' not in: {text}");
            }
        }
    }
}

/// A fixed-length export of Conv1d over the features with time as its channels, its time axis
/// named (`StreamOptions::time_axes`, `PoolOptions::time_axes`, `--time-axis x=1`): tract
/// cannot size the convolution for a free length (its "Undetermined symbol" or a size clash);
/// each way in says that the convolution mixes the steps as channels, naming it.
#[test]
fn a_convolution_with_time_as_its_channels_is_refused_by_name() {
    let bytes = export_fixture("refuse_conv_time_channels.onnx");
    let model = Model::from_bytes(&bytes).unwrap();
    let x = Tensor::zero::<f32>(&[1, 6, 8]).unwrap();
    let axes = Some(vec![Some(1)]);
    let mut all = vec![];
    let options = rnn_run::StreamOptions {
        time_axes: axes.clone(),
    };
    all.push(match model.stream_with(&options, vec![]) {
        Err(e) => e.to_string(),
        Ok(mut s) => s.push(vec![x.clone()]).unwrap_err().to_string(),
    });
    let pool = PoolOptions {
        time_axes: axes.clone(),
        ..Default::default()
    };
    all.push(match model.stream_pool(pool, vec![]) {
        Err(e) => e.to_string(),
        Ok(pool) => {
            let id = pool.open().unwrap();
            let frame = Tensor::zero::<f32>(&[1, 1, 8]).unwrap();
            pool.push(id, vec![frame])
                .unwrap()
                .wait()
                .unwrap_err()
                .to_string()
        }
    });
    all.push(
        model
            .run_chunked_with(&options, vec![x.clone()], 2)
            .unwrap_err()
            .to_string(),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.onnx"), &bytes).unwrap();
    rnn_run::npy::write_npy(dir.path().join("x.npy"), &x).unwrap();
    let cli = Command::cargo_bin("rnn-run")
        .unwrap()
        .current_dir(dir.path())
        .args(["m.onnx", "x.npy", "--chunk", "2", "--time-axis", "x=1"])
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(2));
    all.push(String::from_utf8_lossy(&cli.stderr).into_owned());
    for text in &all {
        assert_plain(text);
        assert!(
            text.contains("node '/conv/Conv' (Conv) takes the time")
                && text.contains("a convolution mixes its channels"),
            "{text}"
        );
    }
}

fn tensor_of(name: &str, dims: &[i64], data_type: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type as i32,
        raw_data: raw,
        ..Default::default()
    }
}

/// The front of open-voicefilter-lite's mask model (`voicefilter_lite.int8.onnx`, onnxruntime's
/// dynamic int8 quantization), small: `x[batch, time, F]` plus a speaker vector
/// `dvec[batch, D]` unsqueezed along time and projected, then one `DynamicQuantizeLinear` over
/// the whole sum (one scale for every step), dequantized, transposed to `[time, batch, F]`,
/// into a `com.microsoft` `DynamicQuantizeLSTM`.
fn voicefilter_front() -> Vec<u8> {
    const D: i64 = 2;
    let mut c = Seeded(5);
    let mut dq = node(
        "DynamicQuantizeLinear",
        "/QuantizeLinear",
        &["sum"],
        &["q", "q_scale", "q_zero_point"],
    );
    dq.domain = String::new();
    let mut t = node("Transpose", "/lstm/Transpose", &["deq"], &["lstm_x"]);
    t.attribute
        .push(common::proto::attr_ints("perm", &[1, 0, 2]));
    let mut lstm = node(
        "DynamicQuantizeLSTM",
        "/lstm/LSTM_quant",
        &[
            "lstm_x", "W", "R", "B", "", "", "", "", "W_scale", "W_zp", "R_scale", "R_zp",
        ],
        &["y"],
    );
    lstm.domain = "com.microsoft".into();
    lstm.attribute.push(attr_int("hidden_size", H));
    let int8s = |n: i64, c: &mut Seeded| -> Vec<u8> {
        (0..n)
            .map(|_| (c.small_float() * 100.0) as i8 as u8)
            .collect()
    };
    let nodes = vec![
        node("Unsqueeze", "/Unsqueeze", &["dvec", "one"], &["dvec_t"]),
        node("MatMul", "/proj/MatMul", &["dvec_t", "Wd"], &["speaker"]),
        node("Add", "/Add", &["x", "speaker"], &["sum"]),
        dq,
        node("Cast", "/Cast", &["q"], &["q_f"]),
        node("Cast", "/Cast_zp", &["q_zero_point"], &["zp_f"]),
        node("Sub", "/Sub", &["q_f", "zp_f"], &["centred"]),
        node("Mul", "/Dequantize", &["centred", "q_scale"], &["deq"]),
        t,
        lstm,
    ];
    let mut nodes = nodes;
    for n in nodes.iter_mut().filter(|n| n.op_type == "Cast") {
        n.attribute.push(attr_int("to", DataType::Float as i64));
    }
    let f32s = |v: Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let graph = GraphProto {
        name: "g".into(),
        node: nodes,
        initializer: vec![
            int64_initializer("one", &[1]),
            float_initializer("Wd", &[D, F], weights((D * F) as usize, &mut c)),
            tensor_of(
                "W",
                &[1, F, 4 * H],
                DataType::Int8,
                int8s(F * 4 * H, &mut c),
            ),
            tensor_of(
                "R",
                &[1, H, 4 * H],
                DataType::Int8,
                int8s(H * 4 * H, &mut c),
            ),
            float_initializer("B", &[1, 8 * H], weights((8 * H) as usize, &mut c)),
            tensor_of("W_scale", &[1], DataType::Float, f32s(vec![0.01])),
            tensor_of("W_zp", &[1], DataType::Int8, vec![0]),
            tensor_of("R_scale", &[1], DataType::Float, f32s(vec![0.01])),
            tensor_of("R_zp", &[1], DataType::Int8, vec![0]),
        ],
        input: vec![
            value_info(
                "x",
                DataType::Float,
                Some(&[Dim::S("batch"), Dim::S("time"), Dim::N(F)]),
            ),
            value_info("dvec", DataType::Float, Some(&[Dim::S("batch"), Dim::N(D)])),
        ],
        output: vec![value_info("y", DataType::Float, None)],
        ..Default::default()
    };
    let mut model = ModelProto::decode(&*model_bytes(graph, 13)).unwrap();
    model.opset_import.push(OperatorSetIdProto {
        domain: "com.microsoft".into(),
        version: 1,
    });
    model.encode_to_vec()
}

/// open-voicefilter-lite's mask model without `--time-axis`: its time axis reaches the
/// `DynamicQuantizeLSTM` (which rnn-run did not count as a recurrent node when finding it), so
/// every way in names the `DynamicQuantizeLinear` that quantizes all steps at once, as with
/// the axis given. It used to blame the batch axis: "input 'x' axis 0 (batch) does not reach a
/// recurrent node's time axis unchanged: node '/Unsqueeze.axis-1' (AddAxis) builds values
/// along the time axis from its length".
#[test]
fn a_dynamic_quantization_of_all_steps_is_refused_by_name_not_the_batch() {
    let bytes = voicefilter_front();
    let model = Model::from_bytes(&bytes).unwrap();
    let x = Tensor::zero::<f32>(&[1, 6, F as usize]).unwrap();
    let dvec = Tensor::zero::<f32>(&[1, 2]).unwrap();
    let mut all = vec![];
    all.push(match model.stream_from(vec![dvec.clone()]) {
        Err(e) => e.to_string(),
        Ok(mut s) => s.push(vec![x.clone()]).unwrap_err().to_string(),
    });
    all.push(match model.stream_pool(PoolOptions::default(), vec![]) {
        Err(e) => e.to_string(),
        Ok(pool) => {
            let id = pool.open_from(vec![dvec.clone()]).unwrap();
            let frame = Tensor::zero::<f32>(&[1, 1, F as usize]).unwrap();
            pool.push(id, vec![frame])
                .unwrap()
                .wait()
                .unwrap_err()
                .to_string()
        }
    });
    all.push(
        model
            .run_chunked(vec![x.clone(), dvec.clone()], 2)
            .unwrap_err()
            .to_string(),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.onnx"), &bytes).unwrap();
    rnn_run::npy::write_npy(dir.path().join("x.npy"), &x).unwrap();
    rnn_run::npy::write_npy(dir.path().join("dvec.npy"), &dvec).unwrap();
    for extra in [&[][..], &["--time-axis", "x=1"][..]] {
        let cli = Command::cargo_bin("rnn-run")
            .unwrap()
            .current_dir(dir.path())
            .args(["m.onnx", "x.npy", "dvec.npy", "--chunk", "2"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(cli.status.code(), Some(2));
        all.push(String::from_utf8_lossy(&cli.stderr).into_owned());
    }
    for text in &all {
        eprintln!("{text}");
        assert_plain(text);
        assert!(
            text.contains(
                "node '/QuantizeLinear' (DynamicQuantizeLinear) quantizes the whole tensor at once"
            ) && text.contains("which mixes all"),
            "{text}"
        );
        assert!(
            !text.contains("(batch)") && !text.contains("Unsqueeze"),
            "{text}"
        );
    }
    assert_eq!(model.time_axes().unwrap(), vec![Some(1), None]);
}

/// Where no input axis is seen to reach a recurrent node's time axis (here it reaches it as
/// `time - 1`, after a slice dropping the first step; the batch is then averaged away before
/// the GRU, so no batch axis is seen either), the refusal follows the axis most likely to be
/// time: the one in the recurrent node's time dimension, not the first one (`batch`), whose
/// refusal would blame the average over the batch as one over time.
#[test]
fn without_a_time_axis_the_refusal_follows_the_likeliest_one() {
    let mut c = Seeded(7);
    let mut mean = node("ReduceMean", "/ReduceMean", &["d"], &["m"]);
    mean.attribute.push(common::proto::attr_ints("axes", &[0]));
    mean.attribute.push(attr_int("keepdims", 1));
    let mut t = node("Transpose", "/Transpose", &["m"], &["gx"]);
    t.attribute
        .push(common::proto::attr_ints("perm", &[1, 0, 2]));
    let mut nodes = vec![
        node("Slice", "/Slice", &["x", "starts", "ends", "axes"], &["d"]),
        mean,
        t,
    ];
    let (n, mut inits) = gru("/gru/GRU", "gx", F, "y", &mut c);
    nodes.extend(n);
    inits.extend([
        int64_initializer("starts", &[1]),
        int64_initializer("ends", &[i64::MAX]),
        int64_initializer("axes", &[1]),
    ]);
    let graph = GraphProto {
        name: "g".into(),
        node: nodes,
        initializer: inits,
        input: vec![value_info(
            "x",
            DataType::Float,
            Some(&[Dim::S("batch"), Dim::S("time"), Dim::N(F)]),
        )],
        output: vec![value_info("y", DataType::Float, None)],
        ..Default::default()
    };
    let bytes = model_bytes(graph, 13);
    let x = Tensor::zero::<f32>(&[1, 6, F as usize]).unwrap();
    let frame = Tensor::zero::<f32>(&[1, 1, F as usize]).unwrap();
    for text in refusals_for(&bytes, &x, &frame) {
        eprintln!("{text}");
        assert_plain(&text);
        assert!(
            text.contains("input 'x' axis 1 (time)") && text.contains("node '/Slice' (Slice)"),
            "{text}"
        );
    }
}
