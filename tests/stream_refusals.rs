//! Streaming refusals in the model's words: the node by its ONNX name and what it does to the
//! time axis (reverses it, pools it, mixes steps...), the same from `stream()`, `stream_pool`
//! and the CLI's `--chunk`, and never tract's internals.

mod common;

use assert_cmd::Command;
use common::proto::{attr_int, float_initializer, model_bytes, value_info, Dim};
use common::random_graph::{Choices, Seeded};
use rnn_run::{Model, PoolOptions, Tensor};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{GraphProto, NodeProto, TensorProto};

/// The suite's one check for engine internals (`tests/common/hostile.rs`), plus the names of
/// the symbols a stream and a pool type their graphs with.
fn assert_plain(text: &str) {
    common::hostile::assert_plain("a streaming refusal", text);
    for ours in ["stream_seq", "pool_batch"] {
        assert!(!text.contains(ours), "'{ours}' in: {text}");
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn int64s(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: DataType::Int64 as i32,
        int64_data: v.to_vec(),
        ..Default::default()
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
            int64s(&axes, &[1]),
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
        int64s("starts", &[-1]),
        int64s("ends", &[-i64::MAX]),
        int64s("axes", &[0]),
        int64s("steps", &[-1]),
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
