//! rnn-run behind `ort`'s own public API, as an application uses it: sessions from files and
//! bytes, names, element types and shapes, runs with named inputs, outputs read as ndarray
//! views, state fed back call after call, threads, and the errors. References are the
//! fixtures' expected outputs (PyTorch for the tutorial models, onnxruntime for the real ones),
//! read with rnn-run's npy reader; nothing here runs a model without going through ort.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, TensorRef, ValueType};
use ort::ErrorCode;
use rnn_run::npy::{read_npy, read_npz};
use rnn_run::TensorExt;

/// The backend, set once, and ort's one environment per process.
fn setup() -> &'static ort::environment::Environment {
    static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        assert!(ort::set_api(rnn_run_ort::api()));
        ort::init().build().unwrap()
    })
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn session(path: &Path) -> Session {
    let env = setup();
    Session::builder(env)
        .unwrap()
        .commit_from_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `|got - want| <= atol + rtol * |want|` everywhere, shapes equal.
fn assert_close(got: ArrayViewD<f32>, want: ArrayViewD<f32>, rtol: f32, atol: f32, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let worst = got
        .iter()
        .zip(want.iter())
        .map(|(&g, &w)| (g - w).abs() - (atol + rtol * w.abs()))
        .fold(f32::NEG_INFINITY, f32::max);
    assert!(worst <= 0.0, "{what}: off by {worst} beyond the tolerance");
}

fn f32_array(t: &rnn_run::Tensor) -> ArrayD<f32> {
    t.to_array::<f32>().unwrap()
}

/// Every tutorial fixture (RNN, LSTM, GRU; legacy and dynamo exports, some with external
/// data; seq and batch symbolic) through ort, inputs by position, against PyTorch's outputs.
#[test]
fn tutorial_fixtures_match_pytorch() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures().join("tutorial"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 18);
    for dir in dirs {
        let mut session = session(&dir.join("model.onnx"));
        let read = |prefix: &str| -> Vec<ArrayD<f32>> {
            (0..)
                .map(|i| dir.join(format!("{prefix}_{i}.npy")))
                .take_while(|p| p.exists())
                .map(|p| f32_array(&read_npy(&p).unwrap()))
                .collect()
        };
        let inputs = read("input");
        let expected = read("expected");
        assert_eq!(inputs.len(), session.inputs().len(), "{}", dir.display());
        let values: Vec<ort::session::SessionInputValue> = inputs
            .iter()
            .map(|a| TensorRef::from_array_view(a.view()).unwrap().into())
            .collect();
        let outputs = session.run(values.as_slice()).unwrap();
        assert_eq!(outputs.len(), expected.len());
        for (i, want) in expected.iter().enumerate() {
            let got = outputs[i].try_extract_array::<f32>().unwrap();
            let what = format!("{} output {i}", dir.display());
            assert_close(got, want.view(), 1e-4, 1e-5, &what);
        }
    }
}

/// Names, element types and shapes as ort reports them; `seq` and `batch` stay symbolic.
#[test]
fn inputs_and_outputs_describe_the_graph() {
    let session = session(&fixtures().join("tutorial/lstm_legacy/model.onnx"));
    let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    assert_eq!(names, ["input", "h0", "c0"]);
    let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    assert_eq!(names, ["output", "hn", "cn"]);
    match session.inputs()[0].dtype() {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => {
            assert_eq!(*ty, TensorElementType::Float32);
            assert_eq!(&shape[..], [-1, -1, 5]);
            let symbols: Vec<&str> = dimension_symbols.iter().map(|s| s.as_str()).collect();
            assert_eq!(symbols, ["seq", "batch", ""]);
        }
        other => panic!("not a tensor: {other:?}"),
    }
    match session.outputs()[1].dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            assert_eq!(*ty, TensorElementType::Float32);
            assert_eq!(&shape[..], [2, -1, 6]);
        }
        other => panic!("not a tensor: {other:?}"),
    }
}

/// A symbolic batch axis: one session runs batch 1, 5 and 2, and each batch entry computes
/// what it computes alone (the LSTM's batch entries are independent).
#[test]
fn symbolic_batch_axis_runs_any_batch() {
    let mut session = session(&fixtures().join("tutorial/lstm_legacy/model.onnx"));
    let x5 = ArrayD::from_shape_fn(IxDyn(&[3, 5, 5]), |i| {
        ((i[0] * 31 + i[1] * 7 + i[2]) as f32 * 0.37).sin()
    });
    let run = |session: &mut Session, x: ArrayD<f32>| -> ArrayD<f32> {
        let batch = x.shape()[1];
        let h = ArrayD::<f32>::zeros(IxDyn(&[2, batch, 6]));
        let outputs = session
            .run(ort::inputs![
                "input" => Tensor::from_array(x).unwrap(),
                "h0" => Tensor::from_array(h.clone()).unwrap(),
                "c0" => Tensor::from_array(h).unwrap(),
            ])
            .unwrap();
        outputs["output"]
            .try_extract_array::<f32>()
            .unwrap()
            .to_owned()
    };
    let all = run(&mut session, x5.clone());
    assert_eq!(all.shape(), [3, 5, 6]);
    for b in [0usize, 4] {
        let one = run(
            &mut session,
            x5.slice(ndarray::s![.., b..b + 1, ..])
                .to_owned()
                .into_dyn(),
        );
        assert_close(
            one.view(),
            all.slice(ndarray::s![.., b..b + 1, ..]).into_dyn(),
            0.0,
            1e-6,
            &format!("batch entry {b}"),
        );
    }
    let two = run(
        &mut session,
        x5.slice(ndarray::s![.., 1..3, ..]).to_owned().into_dyn(),
    );
    assert_eq!(two.shape(), [3, 2, 6]);
}

/// One call of a Silero case: input frames, sr, the state onnxruntime was given, and its
/// `output`.
type SileroCall = (ArrayD<f32>, ArrayD<i64>, ArrayD<f32>, ArrayD<f32>);

/// The case's calls.
fn silero_case(case: &str) -> Vec<SileroCall> {
    let dir = fixtures().join("realworld/cases/silero_vad_16k_op15");
    (0..)
        .map(|k| {
            (
                dir.join(format!("{case}_call{k}_inputs.npz")),
                dir.join(format!("{case}_call{k}_expected.npz")),
            )
        })
        .take_while(|(i, _)| i.exists())
        .map(|(inputs, expected)| {
            let inputs = read_npz(inputs).unwrap();
            let expected = read_npz(expected).unwrap();
            let get = |set: &[(String, rnn_run::Tensor)], name: &str| {
                set.iter().find(|(n, _)| n == name).unwrap().1.clone()
            };
            (
                f32_array(&get(&inputs, "input")),
                get(&inputs, "sr").to_array::<i64>().unwrap(),
                f32_array(&get(&inputs, "state")),
                f32_array(&get(&expected, "output")),
            )
        })
        .collect()
}

/// Silero VAD as its users run it through ort: frame after frame, `stateN` of each call fed
/// back as `state` of the next (our own, not the reference's), inputs named in another order
/// than the graph's; speech probabilities match onnxruntime's for batch 1 and batch 2.
#[test]
fn silero_vad_state_fed_back_frame_by_frame() {
    for (case, calls) in [("16k_carry", 8), ("16k_batch2_carry", 4)] {
        let mut session = session(&fixtures().join("realworld/silero_vad_16k_op15.onnx"));
        let frames = silero_case(case);
        assert_eq!(frames.len(), calls);
        let mut state = frames[0].2.clone();
        for (k, (input, sr, _, want)) in frames.iter().enumerate() {
            let outputs = session
                .run(ort::inputs![
                    "sr" => TensorRef::from_array_view(sr.view()).unwrap(),
                    "state" => TensorRef::from_array_view(state.view()).unwrap(),
                    "input" => TensorRef::from_array_view(input.view()).unwrap(),
                ])
                .unwrap();
            let prob = outputs["output"].try_extract_array::<f32>().unwrap();
            assert_close(prob, want.view(), 1e-3, 1e-4, &format!("{case} call {k}"));
            state = outputs["stateN"]
                .try_extract_array::<f32>()
                .unwrap()
                .to_owned();
        }
    }
}

/// NSNet2 (GRUs, a symbolic batch and frame axis) from bytes, against onnxruntime.
#[test]
fn nsnet2_from_bytes_matches_onnxruntime() {
    let bytes = std::fs::read(fixtures().join("realworld/nsnet2-20ms-baseline.onnx")).unwrap();
    let env = setup();
    let mut session = Session::builder(env)
        .unwrap()
        .commit_from_memory(&bytes)
        .unwrap();
    for case in ["100frames", "batch2_40frames"] {
        let dir = fixtures().join("realworld/cases/nsnet2-20ms-baseline");
        let input =
            f32_array(&read_npz(dir.join(format!("{case}_call0_inputs.npz"))).unwrap()[0].1);
        let want =
            f32_array(&read_npz(dir.join(format!("{case}_call0_expected.npz"))).unwrap()[0].1);
        let outputs = session
            .run(ort::inputs![
                TensorRef::from_array_view(input.view()).unwrap()
            ])
            .unwrap();
        let got = outputs["output"].try_extract_array::<f32>().unwrap();
        assert_close(got, want.view(), 1e-3, 1e-4, case);
    }
}

/// `with_intra_threads` reaches rnn-run's worker threads; results are bit-identical.
#[test]
fn intra_threads_give_identical_results() {
    let path = fixtures().join("realworld/nsnet2-20ms-baseline.onnx");
    let dir = fixtures().join("realworld/cases/nsnet2-20ms-baseline");
    let input = f32_array(&read_npz(dir.join("100frames_call0_inputs.npz")).unwrap()[0].1);
    let env = setup();
    let mut results = Vec::new();
    for threads in [1, 2] {
        let mut session = Session::builder(env)
            .unwrap()
            .with_intra_threads(threads)
            .unwrap()
            .commit_from_file(&path)
            .unwrap();
        let outputs = session
            .run(ort::inputs![
                TensorRef::from_array_view(input.view()).unwrap()
            ])
            .unwrap();
        results.push(outputs[0].try_extract_array::<f32>().unwrap().to_owned());
    }
    assert_eq!(results[0], results[1]);
}

/// Asking for one output only (`OutputSelector`): only it comes back, and it is the same
/// final hidden state the full run returns.
#[test]
fn selected_outputs_only() {
    use ort::session::{OutputSelector, RunOptions};
    let mut session = session(&fixtures().join("tutorial/gru_legacy/model.onnx"));
    let x = ArrayD::<f32>::ones(IxDyn(&[2, 1, 5]));
    let h = ArrayD::<f32>::zeros(IxDyn(&[2, 1, 6]));
    let hn_name = session.outputs()[1].name().to_string();
    let full = session
        .run(ort::inputs![
            TensorRef::from_array_view(x.view()).unwrap(),
            TensorRef::from_array_view(h.view()).unwrap(),
        ])
        .unwrap();
    // The last output step of the last layer is its final hidden state.
    let y = full[0].try_extract_array::<f32>().unwrap();
    let h_n = full[1].try_extract_array::<f32>().unwrap().to_owned();
    assert_eq!(
        y.slice(ndarray::s![1, .., ..]),
        h_n.slice(ndarray::s![1, .., ..])
    );
    drop(full);

    let options = RunOptions::new()
        .unwrap()
        .with_outputs(OutputSelector::no_default().with(hn_name.clone()));
    let outputs = session
        .run_with_options(
            ort::inputs![
                TensorRef::from_array_view(x.view()).unwrap(),
                TensorRef::from_array_view(h.view()).unwrap(),
            ],
            &options,
        )
        .unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(
        outputs[hn_name.as_str()]
            .try_extract_array::<f32>()
            .unwrap(),
        h_n
    );
}

fn error_of<T>(result: ort::Result<T>) -> ort::Error {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn missing_file_is_no_such_file() {
    let env = setup();
    let err = error_of(
        Session::builder(env)
            .unwrap()
            .commit_from_file("no/such/model.onnx"),
    );
    assert_eq!(err.code(), ErrorCode::NoSuchFile, "{err}");
    assert!(err.to_string().contains("no/such/model.onnx"), "{err}");
}

#[test]
fn bytes_that_are_no_model_are_an_invalid_graph() {
    let env = setup();
    let err = error_of(
        Session::builder(env)
            .unwrap()
            .commit_from_memory(b"certainly not protobuf"),
    );
    assert_eq!(err.code(), ErrorCode::InvalidGraph, "{err}");
}

/// A dynamo export keeps its weights in model.onnx.data: from bytes there is no folder to find
/// them in, and the error says so (and what to call instead) rather than running without them.
#[test]
fn external_data_from_bytes_is_refused_by_name() {
    let bytes = std::fs::read(fixtures().join("tutorial/lstm_dynamo/model.onnx")).unwrap();
    let env = setup();
    let err = error_of(Session::builder(env).unwrap().commit_from_memory(&bytes));
    assert_eq!(err.code(), ErrorCode::InvalidGraph, "{err}");
    let text = err.to_string();
    assert!(text.contains("external data file"), "{err}");
    assert!(text.contains("commit_from_file(path)"), "{err}");
}

#[test]
fn wrong_inputs_are_invalid_arguments_naming_them() {
    let mut session = session(&fixtures().join("tutorial/lstm_legacy/model.onnx"));
    let x = ArrayD::<f32>::zeros(IxDyn(&[1, 3, 5]));
    let h = ArrayD::<f32>::zeros(IxDyn(&[2, 3, 6]));

    let err = error_of(session.run(ort::inputs![
        "input" => TensorRef::from_array_view(x.view()).unwrap(),
        "h0" => TensorRef::from_array_view(h.view()).unwrap(),
    ]));
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    assert!(err.to_string().contains("input 'c0'"), "{err}");

    let err = error_of(session.run(ort::inputs![
        "input" => TensorRef::from_array_view(x.view()).unwrap(),
        "h0" => TensorRef::from_array_view(h.view()).unwrap(),
        "hidden" => TensorRef::from_array_view(h.view()).unwrap(),
    ]));
    assert!(err.to_string().contains("no input 'hidden'"), "{err}");
    assert!(err.to_string().contains("'input', 'h0', 'c0'"), "{err}");

    // A dimension that disagrees with the graph: rnn-run's message, naming input and shape.
    let wide = ArrayD::<f32>::zeros(IxDyn(&[1, 3, 7]));
    let err = error_of(session.run(ort::inputs![
        TensorRef::from_array_view(wide.view()).unwrap(),
        TensorRef::from_array_view(h.view()).unwrap(),
        TensorRef::from_array_view(h.view()).unwrap(),
    ]));
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    assert!(err.to_string().contains("input 'input'"), "{err}");

    // Another element type than the graph's.
    let x64 = ArrayD::<f64>::zeros(IxDyn(&[1, 3, 5]));
    let err = error_of(session.run(ort::inputs![
        TensorRef::from_array_view(x64.view()).unwrap(),
        TensorRef::from_array_view(h.view()).unwrap(),
        TensorRef::from_array_view(h.view()).unwrap(),
    ]));
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
}

/// What rnn-run does not do fails as NotImplemented, saying what.
#[test]
fn unsupported_features_are_not_implemented() {
    let session = session(&fixtures().join("tutorial/lstm_legacy/model.onnx"));
    let err = error_of(session.create_binding());
    assert_eq!(err.code(), ErrorCode::NotImplemented, "{err}");
    assert!(err.to_string().contains("I/O binding"), "{err}");

    let err = error_of(Tensor::<String>::from_string_array((
        [1usize],
        &["text"][..],
    )));
    assert_eq!(err.code(), ErrorCode::NotImplemented, "{err}");
}
