//! Models as exporters write them stream as they should: a fixed-length export (no
//! `dynamic_axes`) of a causal Conv1d → GRU streams with its time axis found automatically, and
//! chunked runs equal whole runs; where no axis can be found, the refusal says what was
//! considered and how to name it.

mod common;

use common::proto::{
    attr_int, attr_ints, attr_string, float_initializer, int64_initializer, model_bytes, node,
    value_info, Dim,
};
use common::random_graph::{Choices, Seeded};
use common::streaming::chunked_vs_whole;
use rnn_run::{Error, Model, Tensor};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{GraphProto, TensorProto};

fn weights(n: usize, c: &mut Seeded) -> Vec<f32> {
    (0..n).map(|_| c.small_float() * 0.5).collect()
}

/// How the convolution is made causal.
#[derive(Clone, Copy, Debug)]
enum Causal {
    /// `pads = [k-1, 0]`.
    Pads,
    /// `auto_pad = SAME_LOWER` (kernel 2: one step before, none after).
    SameLower,
}

/// `torch.onnx.export` of `x [1, t, f]` → transpose → causal Conv1d (f → c, kernel k) →
/// transpose to `[t, 1, c]` → GRU(h) → squeeze, with every length fixed, as the default export
/// writes it.
fn conv_gru(t: usize, f: usize, k: usize, causal: Causal, seed: u64) -> Vec<u8> {
    let (c, h) = (4usize, 5usize);
    let mut r = Seeded(seed);
    let mut conv = node(
        "Conv",
        "/conv/Conv",
        &["xt", "conv.weight", "conv.bias"],
        &["conv"],
    );
    conv.attribute.push(attr_ints("kernel_shape", &[k as i64]));
    match causal {
        Causal::Pads => conv.attribute.push(attr_ints("pads", &[k as i64 - 1, 0])),
        Causal::SameLower => conv.attribute.push(attr_string("auto_pad", "SAME_LOWER")),
    }
    let mut t0 = node("Transpose", "/Transpose", &["x"], &["xt"]);
    t0.attribute.push(attr_ints("perm", &[0, 2, 1]));
    let mut t1 = node("Transpose", "/Transpose_1", &["conv"], &["seq"]);
    t1.attribute.push(attr_ints("perm", &[2, 0, 1]));
    let mut gru = node(
        "GRU",
        "/gru/GRU",
        &["seq", "gru.W", "gru.R", "gru.B"],
        &["Y", "Y_h"],
    );
    gru.attribute.push(attr_int("hidden_size", h as i64));
    gru.attribute.push(attr_int("linear_before_reset", 1));
    let squeeze = node("Squeeze", "/Squeeze", &["Y", "axes"], &["y"]);
    let graph = GraphProto {
        name: "conv_gru".into(),
        node: vec![t0, conv, t1, gru, squeeze],
        initializer: vec![
            float_initializer(
                "conv.weight",
                &[c as i64, f as i64, k as i64],
                weights(c * f * k, &mut r),
            ),
            float_initializer("conv.bias", &[c as i64], weights(c, &mut r)),
            float_initializer(
                "gru.W",
                &[1, 3 * h as i64, c as i64],
                weights(3 * h * c, &mut r),
            ),
            float_initializer(
                "gru.R",
                &[1, 3 * h as i64, h as i64],
                weights(3 * h * h, &mut r),
            ),
            float_initializer("gru.B", &[1, 6 * h as i64], weights(6 * h, &mut r)),
            int64_initializer("axes", &[1]),
        ],
        input: vec![value_info(
            "x",
            DataType::Float,
            Some(&[Dim::N(1), Dim::N(t as i64), Dim::N(f as i64)]),
        )],
        output: vec![
            value_info(
                "y",
                DataType::Float,
                Some(&[Dim::N(t as i64), Dim::N(1), Dim::N(h as i64)]),
            ),
            value_info(
                "Y_h",
                DataType::Float,
                Some(&[Dim::N(1), Dim::N(1), Dim::N(h as i64)]),
            ),
        ],
        ..Default::default()
    };
    model_bytes(graph, 13)
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut c = Seeded(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| c.small_float()).collect();
    Tensor::from_shape(shape, &data).unwrap()
}

/// The case: the default export of causal Conv1d → GRU has no symbol on its time
/// axis; the axis is found (axis 1 of `x`), and chunks of every schedule equal the whole run.
/// Also where the length equals the feature count, and with `auto_pad = SAME_LOWER`.
#[test]
fn fixed_length_conv_gru_exports_stream() {
    for (t, f, k, causal) in [
        (20, 3, 3, Causal::Pads),
        (8, 8, 3, Causal::Pads),
        (12, 3, 2, Causal::SameLower),
    ] {
        let model = Model::from_bytes(&conv_gru(t, f, k, causal, t as u64)).unwrap();
        assert_eq!(
            model.time_axes().unwrap(),
            vec![Some(1)],
            "{t} {f} {causal:?}"
        );
        // The whole run takes the exported length only (the file declares it).
        let x = random(&[1, t, f], t as u64);
        let d = chunked_vs_whole(&model, &[x])
            .unwrap_or_else(|e| panic!("t={t} f={f} {causal:?}: {e}"));
        assert!(d <= 1e-6, "t={t} f={f} {causal:?}: {d:e}");
        // What the CLI's --chunk runs, with no time axis named.
        let x = random(&[1, t, f], t as u64);
        let whole = model.run(vec![x.clone()]).unwrap();
        let (chunked, pushes) = model.run_chunked(vec![x], 3).unwrap();
        assert_eq!(pushes, t.div_ceil(3));
        for (a, b) in chunked.iter().zip(&whole) {
            assert!(common::streaming::max_abs_diff(a, b) <= 1e-6);
        }
    }
}

/// Where no axis reaches a recurrent node's time axis, the refusal lists the axes tried and
/// names the option and the flag.
#[test]
fn a_time_axis_that_cannot_be_found_is_one_option_away() {
    // A GRU whose X is a constant: no input axis reaches its time axis.
    let h = 2i64;
    let mut r = Seeded(3);
    let mut gru = node("GRU", "/gru/GRU", &["k", "W", "R"], &["Y"]);
    gru.attribute.push(attr_int("hidden_size", h));
    let add = node("Add", "/Add", &["Y", "x"], &["y"]);
    let graph = GraphProto {
        name: "g".into(),
        node: vec![gru, add],
        initializer: vec![
            float_initializer("k", &[4, 1, 3], weights(12, &mut r)),
            float_initializer("W", &[1, 3 * h, 3], weights(18, &mut r)),
            float_initializer("R", &[1, 3 * h, h], weights(12, &mut r)),
        ],
        input: vec![value_info(
            "x",
            DataType::Float,
            Some(&[Dim::N(4), Dim::N(1), Dim::N(1), Dim::N(h)]),
        )],
        output: vec![value_info("y", DataType::Float, None)],
        ..Default::default()
    };
    let model = Model::from_bytes(&model_bytes(graph, 13)).unwrap();
    let e = model.stream().unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::NotStreamable(_)), "{e:?}");
    for want in [
        "input 'x' axis 0 (4)",
        "input 'x' axis 3 (2)",
        "StreamOptions::time_axes",
        "--time-axis INPUT=AXIS",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
}

/// `y[:x.shape[0]]` (a Slice to the input's own length, as PyTorch writes it: Shape → Gather →
/// Unsqueeze → Slice) after a GRU: each chunk's slice is the chunk, so it streams exactly.
#[test]
fn a_slice_to_the_inputs_own_length_streams() {
    let (f, h) = (3i64, 4i64);
    let mut r = Seeded(5);
    let mut gru = node("GRU", "/gru/GRU", &["x", "W", "R"], &["Y"]);
    gru.attribute.push(attr_int("hidden_size", h));
    let mut gather = node("Gather", "/Gather", &["shape", "zero"], &["len"]);
    gather.attribute.push(attr_int("axis", 0));
    let graph = GraphProto {
        name: "g".into(),
        node: vec![
            gru,
            node("Squeeze", "/Squeeze", &["Y", "one"], &["h"]),
            node("Shape", "/Shape", &["x"], &["shape"]),
            gather,
            node("Unsqueeze", "/Unsqueeze", &["len", "zero1"], &["end"]),
            node("Slice", "/Slice", &["h", "start", "end", "zero1"], &["y"]),
        ],
        initializer: vec![
            float_initializer(
                "W",
                &[1, 3 * h, f],
                weights((9 * h * f / 3) as usize, &mut r),
            ),
            float_initializer("R", &[1, 3 * h, h], weights((3 * h * h) as usize, &mut r)),
            int64_initializer("one", &[1]),
            int64_initializer("zero1", &[0]),
            int64_initializer("start", &[0]),
            TensorProto {
                name: "zero".into(),
                data_type: DataType::Int64 as i32,
                int64_data: vec![0],
                ..Default::default()
            },
        ],
        input: vec![value_info(
            "x",
            DataType::Float,
            Some(&[Dim::S("seq"), Dim::S("batch"), Dim::N(f)]),
        )],
        output: vec![value_info("y", DataType::Float, None)],
        ..Default::default()
    };
    let model = Model::from_bytes(&model_bytes(graph, 13)).unwrap();
    let x = random(&[11, 2, f as usize], 9);
    let d = chunked_vs_whole(&model, &[x]).unwrap_or_else(|e| panic!("{e}"));
    assert!(d <= 1e-6, "{d:e}");
}

fn export_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/stream_exports")
        .join(name)
}

/// PyTorch exports (scripts/gen_stream_exports.py, both exporters) whose ops before or after
/// the GRU work on one step at a time: `F.interpolate` over the features (Resize; the dynamo
/// exporter writes linear interpolation as GatherND and arithmetic), a feature subset (Gather,
/// GatherND), `y[torch.arange(b), :, 1:3]` (GatherND over the batch axis), `max_pool1d` over
/// the features with time as the pool's channel axis (MaxPool; typed over a channel of one,
/// src/passes/channel_pools.rs), and the same written as `max_pool2d` over `x.unsqueeze(1)`. The whole run equals PyTorch's
/// output; every chunk schedule, and what `--chunk` runs, equals the whole run exactly.
#[test]
fn per_step_resize_gathernd_and_pools_of_torch_exports_stream() {
    let x = rnn_run::npy::read_npy(export_fixture("x.npy")).unwrap();
    for name in [
        "interp",
        "interp_nearest",
        "idx_feat",
        "idx_batch",
        "pool",
        "pool2d",
    ] {
        let torch = rnn_run::npy::read_npy(export_fixture(&format!("{name}.npy"))).unwrap();
        for exporter in ["legacy", "dynamo"] {
            let case = format!("{name}_{exporter}");
            let model = Model::load(export_fixture(&format!("{case}.onnx"))).unwrap();
            assert_eq!(model.time_axes().unwrap(), vec![Some(1)], "{case}");
            let whole = model.run(vec![x.clone()]).unwrap();
            let d = common::streaming::max_abs_diff(&whole[0], &torch);
            assert!(d <= 1e-5, "{case}: whole run vs PyTorch {d:e}");
            let d = chunked_vs_whole(&model, std::slice::from_ref(&x))
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(d, 0.0, "{case}: chunked vs whole");
            let (chunked, _) = model.run_chunked(vec![x.clone()], 4).unwrap();
            assert_eq!(
                common::streaming::max_abs_diff(&chunked[0], &whole[0]),
                0.0,
                "{case}: --chunk 4"
            );
        }
    }
}
