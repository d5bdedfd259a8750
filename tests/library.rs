//! The library API: typed errors a caller can match on, and one model shared by many threads.

use std::path::{Path, PathBuf};

use prost::Message;
use rnn_run::npy::read_npy;
use rnn_run::{Error, Model, Tensor};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

mod common;
use common::proto::{attr_int, attr_string, attr_strings, fixed, float_initializer, value_info};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn inputs(dir: &Path) -> Vec<Tensor> {
    (0..)
        .map(|i| dir.join(format!("input_{i}.npy")))
        .take_while(|p| p.exists())
        .map(|p| read_npy(&p).unwrap())
        .collect()
}

#[test]
fn model_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
}

#[test]
fn eight_threads_give_identical_results() {
    let dir = fixture("tutorial/lstm_legacy_long");
    let model = Model::load(dir.join("model.onnx")).unwrap();
    let ins = inputs(&dir);
    let reference = model.run(ins.clone()).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (model, ins) = (&model, ins.clone());
                s.spawn(move || {
                    (0..5)
                        .map(|_| model.run(ins.clone()).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for outs in h.join().unwrap() {
                assert_eq!(
                    outs, reference,
                    "a threaded run differs from the single-threaded one"
                );
            }
        }
    });
}

#[test]
fn missing_file_is_an_io_error() {
    match Model::load("no/such/model.onnx") {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("model.onnx")),
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

#[test]
fn random_bytes_are_an_invalid_model() {
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert!(matches!(
        Model::from_bytes(&bytes),
        Err(Error::InvalidModel { .. })
    ));
    assert!(matches!(
        Model::from_bytes(&[]),
        Err(Error::InvalidModel { .. })
    ));
}

#[test]
fn wrong_inputs_are_input_errors() {
    let dir = fixture("tutorial/lstm_legacy");
    let model = Model::load(dir.join("model.onnx")).unwrap();
    let mut ins = inputs(&dir);
    ins.pop();
    match model.run(ins) {
        Err(Error::Input { message, .. }) => {
            assert!(message.contains("takes 3 inputs"), "{message}")
        }
        other => panic!("expected Error::Input, got {other:?}"),
    }
    let mut ins = inputs(&dir);
    ins[0] = Tensor::from(ndarray::Array3::<f64>::zeros((1, 3, 5)));
    match model.run(ins) {
        Err(Error::Input { name, message }) => {
            assert_eq!(name, "input");
            assert!(
                message.contains("float32") && message.contains("float64"),
                "{message}"
            );
        }
        other => panic!("expected Error::Input, got {other:?}"),
    }
    let mut ins = inputs(&dir);
    ins[0] = Tensor::from(ndarray::Array3::<f32>::zeros((1, 3, 4)));
    match model.run(ins) {
        Err(Error::Input { message, .. }) => assert!(message.contains("axis 2 = 5"), "{message}"),
        other => panic!("expected Error::Input, got {other:?}"),
    }
}

// --- Node errors, on small hand-built models -------------------------------------------------

fn initializer(name: &str, dims: &[i64]) -> pb::TensorProto {
    let n: i64 = dims.iter().product();
    let data = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.05).collect();
    float_initializer(name, dims, data)
}

/// One RNN node, X [T=4, B=2, I=3] as input, W/R/B as initializers with the given shapes.
fn rnn_model(
    attrs: Vec<pb::AttributeProto>,
    w: &[i64],
    r: &[i64],
    extra_inputs: &[&str],
) -> Vec<u8> {
    let mut node_inputs = vec!["X".to_string(), "W".into(), "R".into()];
    node_inputs.extend(extra_inputs.iter().map(|s| s.to_string()));
    let mut graph_inputs = vec![value_info("X", DataType::Float, Some(&fixed(&[4, 2, 3])))];
    if extra_inputs.contains(&"sequence_lens") {
        graph_inputs.push(value_info(
            "sequence_lens",
            DataType::Int32,
            Some(&fixed(&[2])),
        ));
    }
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 14,
        }],
        graph: Some(pb::GraphProto {
            name: "g".into(),
            node: vec![pb::NodeProto {
                name: "rnn0".into(),
                op_type: "RNN".into(),
                input: node_inputs,
                output: vec!["Y".into()],
                attribute: attrs,
                ..Default::default()
            }],
            initializer: vec![initializer("W", w), initializer("R", r)],
            input: graph_inputs,
            output: vec![value_info("Y", DataType::Float, None)],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

fn node_error(bytes: &[u8]) -> String {
    match Model::from_bytes(bytes) {
        Err(Error::Node(e)) => {
            assert_eq!(e.node, "rnn0");
            assert_eq!(e.op, "RNN");
            e.message
        }
        other => panic!("expected Error::Node, got {other:?}"),
    }
}

#[test]
fn node_errors_name_the_attribute_and_what_was_expected() {
    let ok = rnn_model(
        vec![attr_int("hidden_size", 5)],
        &[1, 5, 3],
        &[1, 5, 5],
        &[],
    );
    Model::from_bytes(&ok).expect("the well-formed model loads");

    let m = node_error(&rnn_model(
        vec![
            attr_int("hidden_size", 5),
            attr_strings("activations", &["Swish"]),
        ],
        &[1, 5, 3],
        &[1, 5, 5],
        &[],
    ));
    assert!(m.contains("unknown function 'Swish'"), "{m}");

    let m = node_error(&rnn_model(
        vec![
            attr_int("hidden_size", 5),
            attr_strings("activations", &["Tanh", "Tanh"]),
        ],
        &[1, 5, 3],
        &[1, 5, 5],
        &[],
    ));
    assert!(
        m.contains("expected 1 functions") && m.contains("found 2"),
        "{m}"
    );

    let m = node_error(&rnn_model(
        vec![
            attr_int("hidden_size", 5),
            attr_string("direction", "sideways"),
        ],
        &[1, 5, 3],
        &[1, 5, 5],
        &[],
    ));
    assert!(m.contains("'direction'") && m.contains("sideways"), "{m}");

    let m = node_error(&rnn_model(
        vec![attr_int("hidden_size", 6)],
        &[1, 5, 3],
        &[1, 5, 5],
        &[],
    ));
    assert!(
        m.contains("input W") && m.contains("[1, 6, 3]") && m.contains("[1, 5, 3]"),
        "{m}"
    );

    let m = node_error(&rnn_model(
        vec![attr_int("layout", 2)],
        &[1, 5, 3],
        &[1, 5, 5],
        &[],
    ));
    assert!(m.contains("'layout'") && m.contains("found 2"), "{m}");

    let m = node_error(&rnn_model(
        vec![attr_int("input_forget", 1)],
        &[1, 5, 3],
        &[1, 5, 5],
        &[],
    ));
    assert!(m.contains("input_forget"), "{m}");
}

#[test]
fn sequence_lens_out_of_range_is_a_node_error_at_run_time() {
    let bytes = rnn_model(vec![], &[1, 5, 3], &[1, 5, 5], &["", "sequence_lens"]);
    let model = Model::from_bytes(&bytes).unwrap();
    let x = Tensor::from(ndarray::Array3::<f32>::zeros((4, 2, 3)));
    let run = |lens: [i32; 2]| model.run(vec![x.clone(), Tensor::from(ndarray::arr1(&lens))]);
    run([4, 1]).expect("lengths within the sequence run");
    for bad in [[5, 1], [-1, 2]] {
        match run(bad) {
            Err(Error::Node(e)) => {
                assert!(
                    e.message.contains("sequence_lens") && e.message.contains("≤ 4"),
                    "{e}"
                )
            }
            other => panic!("expected Error::Node, got {other:?}"),
        }
    }
}

#[test]
fn non_finite_inputs_propagate() {
    let bytes = rnn_model(vec![], &[1, 5, 3], &[1, 5, 5], &[]);
    let model = Model::from_bytes(&bytes).unwrap();
    let mut x = ndarray::Array3::<f32>::zeros((4, 2, 3));
    x[[1, 0, 0]] = f32::NAN;
    x[[0, 1, 0]] = f32::INFINITY;
    let y = model.run(vec![Tensor::from(x)]).unwrap();
    let y = y[0].to_plain_array_view::<f32>().unwrap();
    assert!(y[[0, 0, 0, 0]].is_finite());
    assert!(y[[1, 0, 0, 0]].is_nan(), "NaN at step 1 reaches Y");
    assert!(y.iter().all(|v| !v.is_infinite()), "tanh bounds infinities");
}

/// A float16 model computes in float32 and returns float16: it must agree with the same
/// model in float32 to float16's precision.
#[test]
fn float16_models_run() {
    use tract_hir::internal::f16;
    let f32_bytes = rnn_model(vec![], &[1, 5, 3], &[1, 5, 5], &[]);
    let mut proto = pb::ModelProto::decode(&*f32_bytes).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    for init in &mut graph.initializer {
        init.data_type = 10;
        init.raw_data = init
            .float_data
            .drain(..)
            .flat_map(|v| f16::from_f32(v).to_bits().to_le_bytes())
            .collect();
    }
    for vi in graph.input.iter_mut().chain(graph.output.iter_mut()) {
        if let Some(pb::type_proto::Value::TensorType(t)) =
            vi.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.elem_type = 10;
        }
    }
    let f16_model = Model::from_bytes(&proto.encode_to_vec()).unwrap();
    let f32_model = Model::from_bytes(&f32_bytes).unwrap();
    let x = ndarray::Array3::<f32>::from_shape_fn((4, 2, 3), |(t, b, i)| {
        (t as f32 - 1.5) * 0.3 + b as f32 * 0.2 - i as f32 * 0.1
    });
    let want = f32_model.run(vec![Tensor::from(x.clone())]).unwrap();
    let got = f16_model
        .run(vec![Tensor::from(x.mapv(f16::from_f32))])
        .unwrap();
    assert_eq!(got[0].datum_type(), rnn_run::DatumType::F16);
    let got = got[0].cast_to::<f32>().unwrap();
    let got = got.to_plain_array_view::<f32>().unwrap();
    let want = want[0].to_plain_array_view::<f32>().unwrap();
    for (g, w) in got.iter().zip(want.iter()) {
        assert!((g - w).abs() < 2e-3, "float16 {g} vs float32 {w}");
    }
}

/// A `hidden_size` far beyond the weights present is refused from the shapes, before anything
/// of that size is allocated.
#[test]
fn huge_hidden_size_is_refused_before_allocating() {
    let m = node_error(&rnn_model(
        vec![attr_int("hidden_size", 1 << 40)],
        &[1, 5, 3],
        &[1, 5, 5],
        &[],
    ));
    assert!(m.contains("input W") && m.contains("1099511627776"), "{m}");
    let m = node_error(&rnn_model(
        vec![attr_int("hidden_size", i64::MAX / 2)],
        &[1, 5, 3],
        &[1, 5, 5],
        &[],
    ));
    assert!(m.contains("hidden_size") || m.contains("input W"), "{m}");
}

/// The cells' public API: an LSTM state built without a cell state starts from C = 0 (as an
/// absent `initial_c` does) instead of panicking.
#[test]
fn lstm_state_without_cell_state_starts_from_zero() {
    use ndarray::{Array1, Array2, Array3};
    use rnn_run::cells::{Cell, DirWeights, Lstm, State};
    let w = Array2::from_shape_fn((12, 2), |(i, j)| (i as f32 - j as f32) * 0.05);
    let r = Array2::from_shape_fn((12, 3), |(i, j)| (i as f32 + j as f32) * 0.02);
    let b = Array1::from_shape_fn(24, |i| i as f32 * 0.01);
    let cell = Lstm::new(
        DirWeights::from_onnx(w.view(), r.view(), Some(b.view()), None),
        &[],
        None,
        false,
    );
    let xs = Array3::from_shape_fn((4, 2, 2), |(t, b, i)| (t + b + i) as f32 * 0.1);
    let h0 = Array2::from_shape_fn((2, 3), |(b, j)| (b + j) as f32 * 0.1);
    let mut without_c = State::new(h0.clone(), None);
    let mut with_zero_c = State::new(h0, Some(Array2::zeros((2, 3))));
    let a = cell.seq(&mut without_c, xs.view());
    let b = cell.seq(&mut with_zero_c, xs.view());
    assert_eq!(a, b);
    assert_eq!(without_c, with_zero_c);
}

/// `Layer::run_into` writes into the caller's arrays: only the outputs asked for, the same
/// values `Layer::run` returns, in either layout; arrays of the wrong shape are refused with
/// the output named.
#[test]
fn layer_run_into_writes_only_the_outputs_given() {
    use ndarray::{Array3, Array4, ArrayD};
    use rnn_run::attrs::NodeSpec;
    use rnn_run::layer::{Layer, OutputViews, RunInputs};
    for layout in [0, 1] {
        let mut node = pb::NodeProto {
            name: "lstm".into(),
            op_type: "LSTM".into(),
            input: vec!["X".into(), "W".into(), "R".into(), "B".into()],
            output: vec!["Y".into(), "Y_h".into(), "Y_c".into()],
            attribute: vec![
                attr_int("hidden_size", 3),
                attr_string("direction", "bidirectional"),
            ],
            ..Default::default()
        };
        node.attribute.push(attr_int("layout", layout));
        let spec = NodeSpec::from_node(&node, 14).unwrap();
        let w = ArrayD::from_shape_fn(vec![2, 12, 2], |i| (i[1] as f64 - i[2] as f64) * 0.05);
        let r = ArrayD::from_shape_fn(vec![2, 12, 3], |i| (i[0] + i[1] + i[2]) as f64 * 0.02);
        let b = ArrayD::from_shape_fn(vec![2, 24], |i| (i[1] as f64 - i[0] as f64) * 0.01);
        let layer = Layer::from_onnx(&spec, w.view(), r.view(), Some(b.view()), None).unwrap();
        // [T=5, B=2] (layout 0) or [B=2, T=5] (layout 1).
        let x_shape = if layout == 0 { [5, 2, 2] } else { [2, 5, 2] };
        let x = ArrayD::from_shape_fn(x_shape.to_vec(), |i| {
            (i[0] * 3 + i[1]) as f64 * 0.1 - i[2] as f64
        });
        let whole = layer.run(x.view(), RunInputs::default(), None).unwrap();

        let (y_shape, s_shape) = layer.output_shapes(x.shape()).unwrap();
        let mut y_c = Array3::zeros(s_shape);
        let views = OutputViews {
            y_c: Some(y_c.view_mut()),
            ..Default::default()
        };
        layer
            .run_into(x.view(), RunInputs::default(), None, views)
            .unwrap();
        assert_eq!(y_c, whole.y_c.clone().unwrap(), "layout {layout}");
        let mut y = Array4::zeros(y_shape);
        let views = OutputViews {
            y: Some(y.view_mut()),
            ..Default::default()
        };
        layer
            .run_into(x.view(), RunInputs::default(), None, views)
            .unwrap();
        assert_eq!(y, whole.y, "layout {layout}");
        // The directions differ, so a mixed-up direction axis would show.
        assert_ne!(
            whole.y_h.index_axis(ndarray::Axis(layout as usize), 0),
            whole.y_h.index_axis(ndarray::Axis(layout as usize), 1)
        );

        let mut wrong = Array3::zeros([s_shape[0] + 1, s_shape[1], s_shape[2]]);
        let views = OutputViews {
            y_h: Some(wrong.view_mut()),
            ..Default::default()
        };
        let err = layer
            .run_into(x.view(), RunInputs::default(), None, views)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("output Y_h: expected an array of shape"),
            "{err}"
        );
    }
}

/// Misusing the cells' API (shapes that disagree) is a programming error: it panics, naming
/// what disagrees, instead of indexing out of bounds inside a kernel.
#[test]
#[should_panic(expected = "x's input size is not the cell's")]
fn cell_step_with_the_wrong_input_size_panics_with_a_message() {
    use ndarray::{Array1, Array2};
    use rnn_run::cells::{Cell, DirWeights, Gru};
    let w = Array2::<f32>::zeros((9, 2));
    let r = Array2::<f32>::zeros((9, 3));
    let b = Array1::<f32>::zeros(18);
    let cell = Gru::new(
        DirWeights::from_onnx(w.view(), r.view(), Some(b.view()), None),
        &[],
        None,
        false,
    );
    let mut state = cell.zero_state(1);
    cell.step(&mut state, Array2::zeros((1, 5)).view());
}

/// Runs are served by plans specialized to their inputs' shapes, cached by signature: the
/// same shapes reuse the plan, new shapes make one (and say how long it took through
/// `prepare`), and the least recently used is dropped past the cache's capacity.
#[test]
fn plans_are_cached_by_input_signature() {
    let dir = fixture("tutorial/lstm_legacy_batch");
    let options = rnn_run::LoadOptions {
        plan_cache: 2,
        ..Default::default()
    };
    let model = Model::load_with(dir.join("model.onnx"), &options).unwrap();
    let ins = inputs(&dir);
    let with_steps = |n: usize| -> Vec<Tensor> {
        let mut v = ins.clone();
        v[0] = ins[0].slice(0, 0, n).unwrap();
        v
    };
    assert!(model.prepare(&with_steps(4)).unwrap() > std::time::Duration::ZERO);
    assert_eq!(
        model.prepare(&with_steps(4)).unwrap(),
        std::time::Duration::ZERO
    );
    let first = model.run(with_steps(4)).unwrap();
    let stats = model.plan_stats();
    assert_eq!((stats.built, stats.cached, stats.hits), (1, 1, 2));
    model.run(with_steps(3)).unwrap();
    model.run(with_steps(2)).unwrap();
    let stats = model.plan_stats();
    assert_eq!((stats.built, stats.cached, stats.evicted), (3, 2, 1));
    // The evicted plan is made again and computes the same.
    assert_eq!(model.run(with_steps(4)).unwrap(), first);
    assert_eq!(model.plan_stats().built, 4);
}

/// Threads running one model at different shapes share its plan cache and each get their
/// own results.
#[test]
fn threads_share_the_plan_cache() {
    let dir = fixture("tutorial/lstm_legacy_batch");
    let model = Model::load(dir.join("model.onnx")).unwrap();
    let ins = inputs(&dir);
    let with_steps = |n: usize| -> Vec<Tensor> {
        let mut v = ins.clone();
        v[0] = ins[0].slice(0, 0, n).unwrap();
        v
    };
    let expected: Vec<Vec<Tensor>> = (1..=4).map(|n| model.run(with_steps(n)).unwrap()).collect();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (model, expected, with_steps) = (&model, &expected, &with_steps);
            s.spawn(move || {
                for k in 0..20 {
                    let n = 1 + (t + k) % 4;
                    assert_eq!(model.run(with_steps(n)).unwrap(), expected[n - 1]);
                }
            });
        }
    });
    assert!(
        model.plan_stats().built <= 4 + 8,
        "{:?}",
        model.plan_stats()
    );
}

/// A scalar integer input that chooses a branch (Silero VAD's sample rate) is part of the
/// signature: the same shapes at another rate make another plan, running the other branch.
#[test]
fn a_sample_rate_input_chooses_the_branch() {
    let folder = common::manifest::folder("graphs");
    let m = folder
        .models()
        .into_iter()
        .find(|m| m["name"] == "unnamed_dims")
        .unwrap()
        .clone();
    let model = Model::load(folder.path(&m["file"])).unwrap();
    assert!(matches!(model.typing(), rnn_run::Typing::Deferred(_)));
    let mut built = 0;
    for case in m["cases"].as_array().unwrap() {
        let call = &case["calls"][0];
        let got = model.run(folder.inputs(&model, &call["inputs"])).unwrap();
        let want = folder.expected(&model, &call["expected"]);
        for (g, w) in got.iter().zip(&want) {
            common::manifest::compare(g, w, 1e-4, 1e-5).unwrap();
        }
        assert!(model.plan_stats().built > built);
        built = model.plan_stats().built;
    }
    // Same shapes, other rate: another plan, another branch (an LSTM or a GRU).
    let call = &m["cases"][0]["calls"][0];
    let mut ins = folder.inputs(&model, &call["inputs"]);
    let sr = model.inputs().iter().position(|i| i.name == "sr").unwrap();
    let rate = ins[sr].cast_to_scalar::<i64>().unwrap();
    let at_rate = model.run(ins.clone()).unwrap();
    let before = model.plan_stats().built;
    ins[sr] = Tensor::from(if rate == 16000 { 8000i64 } else { 16000 });
    let other = model.run(ins).unwrap();
    assert_eq!(model.plan_stats().built, before + 1);
    assert_ne!(at_rate[0], other[0]);
}

/// A dynamo export keeps its weights in `model.onnx.data`: from bytes, the directory must be
/// given, and without it the refusal says which tensor and what to call instead.
#[test]
fn models_from_bytes_find_external_data_in_the_directory_given() {
    let dir = fixture("tutorial/lstm_dynamo");
    assert!(dir.join("model.onnx.data").exists());
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    match Model::from_bytes(&bytes) {
        Err(Error::InvalidModel { message, .. }) => {
            assert!(message.contains("from_bytes_in"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let from_bytes = Model::from_bytes_in(&bytes, &dir).unwrap();
    let from_file = Model::load(dir.join("model.onnx")).unwrap();
    let ins = inputs(&dir);
    assert_eq!(
        from_bytes.run(ins.clone()).unwrap(),
        from_file.run(ins).unwrap()
    );
}

/// OpenVINO's export of Silero VAD names 15 nodes `F0::anon`. tract checks node names only
/// in a debug build, where this model failed to type, to run and to pool; it must do all
/// three in every build (CI runs this file in a debug build too).
#[test]
fn a_model_repeating_node_names_types_runs_and_pools() {
    use rnn_run::TensorExt;
    let f = common::manifest::folder("realworld");
    let m = f
        .models()
        .into_iter()
        .find(|m| m["name"] == "silero_vad_openvino_16k")
        .unwrap();
    let model = Model::load(f.path(&m["file"])).unwrap();
    assert_eq!(model.typing(), rnn_run::Typing::Symbolic);
    let call = f.inputs(&model, &m["cases"][0]["calls"][0]["inputs"]);
    let outputs = model.run(call.clone()).unwrap();
    assert_eq!(outputs.len(), model.outputs().len());
    let names: Vec<&str> = model.inputs().iter().map(|i| i.name.as_str()).collect();
    let position = |n: &str| names.iter().position(|x| *x == n).unwrap();
    let input = position("input");
    let options = rnn_run::PoolOptions {
        feedback: vec![("state".into(), "stateN".into())],
        ..Default::default()
    };
    let pool = model.stream_pool(options, vec![]).unwrap();
    let id = pool.open().unwrap();
    let frame = pool
        .push(id, vec![call[input].clone()])
        .unwrap()
        .wait()
        .unwrap();
    let want = outputs[0].array_view::<f32>().unwrap();
    let got = frame.outputs[0].array_view::<f32>().unwrap();
    assert_eq!(got, want);
}

/// A user who has only ndarray arrays runs a model and reads its outputs without naming a
/// tract type: arrays into `Model::run` through `inputs!` (also mixed: Silero VAD's i64 `sr`
/// beside f32 arrays), arrays out through `TensorExt`. The arrays' results are the
/// ones of the same data given as tensors, and Silero's match onnxruntime's reference.
#[test]
fn ndarray_arrays_in_and_out_without_tract_types() {
    use ndarray::{Array0, Array3, ArrayD};
    use rnn_run::{inputs, TensorExt};

    let model = Model::load(fixture("tutorial/lstm_legacy/model.onnx")).unwrap();
    let x = Array3::from_shape_fn((4, 2, 5), |(t, b, i)| (t * 10 + b * 5 + i) as f32 * 0.01);
    let h0 = Array3::<f32>::from_elem((2, 2, 6), 0.1);
    let c0 = Array3::<f32>::from_elem((2, 2, 6), -0.2);
    let from_arrays = model
        .run(inputs![x.clone(), h0.clone(), c0.clone()])
        .unwrap();
    let from_tensors = model
        .run(vec![Tensor::from(x), Tensor::from(h0), Tensor::from(c0)])
        .unwrap();
    for (a, t) in from_arrays.iter().zip(&from_tensors) {
        let a: ArrayD<f32> = a.to_array().unwrap();
        assert_eq!(a, t.to_array::<f32>().unwrap());
    }
    assert_eq!(
        from_arrays[0].array_view::<f32>().unwrap().shape(),
        [4, 2, 6]
    );

    // Mixed element types, from the Silero VAD case's first call.
    let model = Model::load(fixture("realworld/silero_vad_16k_op15.onnx")).unwrap();
    let case = fixture("realworld/cases/silero_vad_16k_op15");
    let given = rnn_run::npy::read_npz(case.join("16k_carry_call0_inputs.npz")).unwrap();
    let want = rnn_run::npy::read_npz(case.join("16k_carry_call0_expected.npz")).unwrap();
    let array = |name: &str| -> ArrayD<f32> {
        given
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .to_array()
            .unwrap()
    };
    let sr = Array0::from_elem((), 16000i64);
    let outputs = model
        .run(inputs![array("input"), array("state"), sr])
        .unwrap();
    let prob: ArrayD<f32> = outputs[0].to_array().unwrap();
    let expected: ArrayD<f32> = want
        .iter()
        .find(|(n, _)| n == "output")
        .unwrap()
        .1
        .to_array()
        .unwrap();
    assert_eq!(prob.shape(), [1, 1]);
    assert!(
        (prob[[0, 0]] - expected[[0, 0]]).abs() < 1e-4,
        "{prob} vs {expected}"
    );
}
