//! End-to-end tests of the `rnn-run` command line: every test runs the built binary in a
//! temporary directory holding small ONNX models written by the test itself, so that the
//! snapshots (tests/snapshots/cli__*.snap) hold relative paths only.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use rnn_run::npy::{read_npy, write_npy};
use rnn_run::Tensor;
use tempfile::TempDir;
use tract_hir::internal::tract_ndarray::{Array, ArrayD, IxDyn};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{GraphProto, NodeProto};

mod common;
use common::proto::{
    attr_float, attr_int, attr_string, attr_strings, float_initializer, model_bytes, value_info,
    Dim,
};

// ------------------------------------------------------------------------------------------
// Building models

/// Deterministic weights in [-0.5, 0.5).
fn weights(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|k| (k as f32 * 0.7 + seed).sin() * 0.5)
        .collect()
}

const HIDDEN: usize = 3;
const FEATURES: usize = 2;

/// One forward LSTM with constant W, R, B; X `[seq, 2, 2]` is the only input. Outputs:
/// `Y`, `Y_h` and, `with_y_c`, `lstm/Y_c:0` (a name that is not file-system safe).
fn lstm_model(with_y_c: bool) -> Vec<u8> {
    let (h, i) = (HIDDEN as i64, FEATURES as i64);
    let node = NodeProto {
        name: "lstm".into(),
        op_type: "LSTM".into(),
        input: vec!["X".into(), "W".into(), "R".into(), "B".into()],
        output: if with_y_c {
            vec!["Y".into(), "Y_h".into(), "lstm/Y_c:0".into()]
        } else {
            vec!["Y".into(), "Y_h".into()]
        },
        attribute: vec![attr_int("hidden_size", h)],
        ..Default::default()
    };
    let graph = GraphProto {
        name: "lstm_graph".into(),
        node: vec![node],
        initializer: vec![
            float_initializer("W", &[1, 4 * h, i], weights(4 * HIDDEN * FEATURES, 0.1)),
            float_initializer("R", &[1, 4 * h, h], weights(4 * HIDDEN * HIDDEN, 1.3)),
            float_initializer("B", &[1, 8 * h], weights(8 * HIDDEN, 2.9)),
        ],
        // A fixed batch: tract's own engine (`--engine tract`) needs one when initial_h is absent.
        input: vec![value_info(
            "X",
            DataType::Float,
            Some(&[Dim::S("seq"), Dim::N(2), Dim::N(i)]),
        )],
        output: [
            value_info(
                "Y",
                DataType::Float,
                Some(&[Dim::S("seq"), Dim::N(1), Dim::N(2), Dim::N(h)]),
            ),
            value_info(
                "Y_h",
                DataType::Float,
                Some(&[Dim::N(1), Dim::N(2), Dim::N(h)]),
            ),
            value_info(
                "lstm/Y_c:0",
                DataType::Float,
                Some(&[Dim::N(1), Dim::N(2), Dim::N(h)]),
            ),
        ]
        .into_iter()
        .take(if with_y_c { 3 } else { 2 })
        .collect(),
        ..Default::default()
    };
    model_bytes(graph, 14)
}

/// A bidirectional GRU with two graph inputs, `X` and `h0`, and a few non-default attributes,
/// for name binding, `.npz` inputs and `inspect`.
fn gru_model() -> Vec<u8> {
    let (h, i) = (HIDDEN as i64, FEATURES as i64);
    let node = NodeProto {
        name: "encoder/gru".into(),
        op_type: "GRU".into(),
        input: vec![
            "X".into(),
            "W".into(),
            "R".into(),
            "".into(),
            "".into(),
            "h0".into(),
        ],
        output: vec!["".into(), "h_n".into()],
        attribute: vec![
            attr_string("direction", "bidirectional"),
            attr_int("linear_before_reset", 1),
            attr_float("clip", 5.0),
            attr_strings("activations", &["Sigmoid", "Tanh", "HardSigmoid", "Tanh"]),
        ],
        ..Default::default()
    };
    let graph = GraphProto {
        name: "gru_graph".into(),
        node: vec![node],
        initializer: vec![
            float_initializer("W", &[2, 3 * h, i], weights(2 * 3 * HIDDEN * FEATURES, 0.4)),
            float_initializer("R", &[2, 3 * h, h], weights(2 * 3 * HIDDEN * HIDDEN, 1.7)),
        ],
        input: vec![
            value_info(
                "X",
                DataType::Float,
                Some(&[Dim::S("seq"), Dim::S("batch"), Dim::N(i)]),
            ),
            value_info(
                "h0",
                DataType::Float,
                Some(&[Dim::N(2), Dim::S("batch"), Dim::N(h)]),
            ),
        ],
        output: vec![value_info(
            "h_n",
            DataType::Float,
            Some(&[Dim::N(2), Dim::S("batch"), Dim::N(h)]),
        )],
        ..Default::default()
    };
    model_bytes(graph, 14)
}

/// A reverse RNN with a symbolic batch and no initial_h, which tract's own engine cannot
/// lower; Relu activation, hidden size given only through R.
fn rnn_model() -> Vec<u8> {
    let (h, i) = (HIDDEN as i64, FEATURES as i64);
    let node = NodeProto {
        op_type: "RNN".into(),
        input: vec!["X".into(), "W".into(), "R".into()],
        output: vec!["Y".into()],
        attribute: vec![
            attr_string("direction", "reverse"),
            attr_strings("activations", &["Relu"]),
        ],
        ..Default::default()
    };
    let graph = GraphProto {
        name: "rnn_graph".into(),
        node: vec![node],
        initializer: vec![
            float_initializer("W", &[1, h, i], weights(HIDDEN * FEATURES, 0.2)),
            float_initializer("R", &[1, h, h], weights(HIDDEN * HIDDEN, 0.9)),
        ],
        input: vec![value_info(
            "X",
            DataType::Float,
            Some(&[Dim::S("seq"), Dim::S("batch"), Dim::N(i)]),
        )],
        output: vec![value_info(
            "Y",
            DataType::Float,
            Some(&[Dim::S("seq"), Dim::N(1), Dim::S("batch"), Dim::N(h)]),
        )],
        ..Default::default()
    };
    model_bytes(graph, 14)
}

/// A forward RNN with Relu whose weights and inputs are small multiples of powers of two: its
/// outputs are computed exactly in f32 whatever the order of the sums, so that snapshots of
/// printed values cannot change with the kernels.
fn exact_model() -> Vec<u8> {
    let node = NodeProto {
        name: "cell".into(),
        op_type: "RNN".into(),
        input: vec!["X".into(), "W".into(), "R".into(), "B".into()],
        output: vec!["Y".into(), "Y_h".into()],
        attribute: vec![
            attr_int("hidden_size", 3),
            attr_strings("activations", &["Relu"]),
        ],
        ..Default::default()
    };
    let graph = GraphProto {
        name: "exact_graph".into(),
        node: vec![node],
        initializer: vec![
            float_initializer("W", &[1, 3, 2], vec![0.5, -0.25, 0.25, 0.5, -0.5, 0.75]),
            float_initializer(
                "R",
                &[1, 3, 3],
                vec![0.5, 0.0, 0.25, 0.0, -0.5, 0.5, 0.25, 0.25, 0.0],
            ),
            float_initializer("B", &[1, 6], vec![0.125, 0.0, -0.25, 0.0, 0.25, 0.125]),
        ],
        input: vec![value_info(
            "X",
            DataType::Float,
            Some(&[Dim::S("seq"), Dim::S("batch"), Dim::N(2)]),
        )],
        output: vec![
            value_info(
                "Y",
                DataType::Float,
                Some(&[Dim::S("seq"), Dim::N(1), Dim::S("batch"), Dim::N(3)]),
            ),
            value_info(
                "Y_h",
                DataType::Float,
                Some(&[Dim::N(1), Dim::S("batch"), Dim::N(3)]),
            ),
        ],
        ..Default::default()
    };
    model_bytes(graph, 14)
}

/// `[3, 2, 2]` values in {-0.75, -0.5, ..., 1}, for [`exact_model`].
fn exact_input() -> Tensor {
    let data: Vec<f32> = (0..12)
        .map(|k| ((k * 5) % 8) as f32 * 0.25 - 0.75)
        .collect();
    Tensor::from(ArrayD::from_shape_vec(IxDyn(&[3, 2, 2]), data).unwrap())
}

fn array(shape: &[usize], seed: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|k| (k as f32 * 1.37 + seed).cos()).collect();
    Tensor::from(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
}

/// A temporary directory with the models `lstm.onnx`, `lstm_hy.onnx` (no Y_c), `gru.onnx`,
/// `rnn.onnx`, `exact.onnx`, and the inputs `x.npy` (`[4, 2, 2]`), `h0.npy` (`[2, 2, 3]`) and
/// `xe.npy` (for `exact.onnx`).
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("lstm.onnx"), lstm_model(true)).unwrap();
        fs::write(dir.path().join("lstm_hy.onnx"), lstm_model(false)).unwrap();
        fs::write(dir.path().join("gru.onnx"), gru_model()).unwrap();
        fs::write(dir.path().join("rnn.onnx"), rnn_model()).unwrap();
        fs::write(dir.path().join("exact.onnx"), exact_model()).unwrap();
        write_npy(dir.path().join("xe.npy"), &exact_input()).unwrap();
        write_npy(dir.path().join("x.npy"), &array(&[4, 2, FEATURES], 0.0)).unwrap();
        write_npy(dir.path().join("h0.npy"), &array(&[2, 2, HIDDEN], 0.5)).unwrap();
        Fixture { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Writes arrays into an .npz as `np.savez` does (stored members), with the zip crate's
    /// writer.
    fn write_npz(&self, name: &str, arrays: &[(&str, &Tensor)]) {
        self.write_zip(name, arrays, zip::CompressionMethod::Stored);
    }

    /// The same, deflated, as `np.savez_compressed` does.
    fn write_npz_compressed(&self, name: &str, arrays: &[(&str, &Tensor)]) {
        self.write_zip(name, arrays, zip::CompressionMethod::Deflated);
    }

    fn write_zip(&self, name: &str, arrays: &[(&str, &Tensor)], method: zip::CompressionMethod) {
        use std::io::Write;
        let file = fs::File::create(self.path(name)).unwrap();
        let mut npz = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        for (key, t) in arrays {
            npz.start_file(format!("{key}.npy"), options).unwrap();
            npz.write_all(&rnn_run::npy::npy_bytes(t).unwrap()).unwrap();
        }
        npz.finish().unwrap();
    }

    fn cmd(&self, args: &[&str]) -> Run {
        let out = Command::cargo_bin("rnn-run")
            .unwrap()
            .current_dir(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// Exit code and stderr, for error snapshots.
    fn error_report(&self) -> String {
        assert!(self.stdout.is_empty(), "stdout: {}", self.stdout);
        assert!(
            self.stderr.starts_with("error: "),
            "stderr: {}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "stderr: {}", self.stderr);
        format!("exit code: {}\n{}", self.code, self.stderr)
    }
}

/// The text report without the lines holding timings.
fn without_timings(s: &str) -> String {
    s.lines()
        .map(|l| {
            if l.starts_with("time: ") {
                "time: [redacted]"
            } else if l.starts_with("bench: ") {
                "bench: [redacted]"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_ok(run: &Run) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

fn assert_error(run: &Run) {
    assert_eq!(
        run.code, 2,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

fn f32_values(t: &Tensor) -> Vec<f32> {
    t.to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

// ------------------------------------------------------------------------------------------
// Running

#[test]
fn plain_run_reports_every_output() {
    let f = Fixture::new();
    let run = f.cmd(&["exact.onnx", "xe.npy"]);
    assert_ok(&run);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    insta::assert_snapshot!("plain_run", without_timings(&run.stdout));

    let run = f.cmd(&["lstm.onnx", "x.npy"]);
    assert_ok(&run);
    for line in [
        "output 0: Y  float32  [4, 1, 2, 3]",
        "output 1: Y_h  float32  [1, 2, 3]",
        "output 2: lstm/Y_c:0  float32  [1, 2, 3]",
    ] {
        assert!(run.stdout.contains(line), "{}", run.stdout);
    }
    assert!(run.stdout.contains("(24 values)"), "{}", run.stdout);
    assert!(
        run.stdout.lines().any(|l| l.starts_with("time: load ")),
        "{}",
        run.stdout
    );
}

#[test]
fn json_document_lists_outputs_in_graph_order() {
    let f = Fixture::new();
    let run = f.cmd(&["lstm.onnx", "x.npy", "--json"]);
    assert_ok(&run);
    let v = run.json();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for k in ["model", "outputs", "load_ms", "run_ms"] {
        assert!(keys.contains(&k), "{keys:?}");
    }
    for k in ["ok", "bench"] {
        assert!(!keys.contains(&k), "{keys:?}");
    }
    // Keys come out in a readable order too.
    let text = &run.stdout;
    assert!(text.find("\"model\"").unwrap() < text.find("\"outputs\"").unwrap());
    assert!(text.find("\"outputs\"").unwrap() < text.find("\"load_ms\"").unwrap());
    assert_eq!(v["model"], "lstm.onnx");
    assert!(v["load_ms"].as_f64().unwrap() >= 0.0);
    assert!(v["run_ms"].as_f64().unwrap() >= 0.0);
    let outputs = v["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Y", "Y_h", "lstm/Y_c:0"]);
    assert_eq!(outputs[0]["shape"], serde_json::json!([4, 1, 2, 3]));
    assert_eq!(outputs[1]["shape"], serde_json::json!([1, 2, 3]));
    assert_eq!(outputs[2]["shape"], serde_json::json!([1, 2, 3]));
    for o in outputs {
        assert_eq!(o["dtype"], "float32");
        assert!(o["path"].is_null());
        assert!(o.get("ok").is_none());
    }
}

#[test]
fn output_dir_holds_one_npy_per_output() {
    let f = Fixture::new();
    let run = f.cmd(&["lstm.onnx", "x.npy", "--output", "out/run1", "--json"]);
    assert_ok(&run);
    let v = run.json();
    let paths: Vec<&str> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "out/run1/Y.npy",
            "out/run1/Y_h.npy",
            "out/run1/lstm_Y_c_0.npy"
        ]
    );
    let y = read_npy(f.path("out/run1/Y.npy")).unwrap();
    let y_h = read_npy(f.path("out/run1/Y_h.npy")).unwrap();
    let y_c = read_npy(f.path("out/run1/lstm_Y_c_0.npy")).unwrap();
    assert_eq!(y.shape(), &[4, 1, 2, 3]);
    assert_eq!(y_h.shape(), &[1, 2, 3]);
    assert_eq!(y_c.shape(), &[1, 2, 3]);
    // Y_h is the last step of Y.
    let y = f32_values(&y);
    assert_eq!(&y[y.len() - 6..], &f32_values(&y_h)[..]);
    // The values are sane LSTM states.
    assert!(y.iter().all(|v| v.abs() < 1.0));
    assert!(f32_values(&y_c).iter().any(|v| *v != 0.0));

    // The text form says where each file went.
    let run = f.cmd(&["lstm.onnx", "x.npy", "--output", "out/run2"]);
    assert_ok(&run);
    assert!(
        run.stdout.contains("written to out/run2/lstm_Y_c_0.npy"),
        "{}",
        run.stdout
    );
    for name in ["Y", "Y_h", "lstm_Y_c_0"] {
        let a = fs::read(f.path(&format!("out/run1/{name}.npy"))).unwrap();
        let b = fs::read(f.path(&format!("out/run2/{name}.npy"))).unwrap();
        assert_eq!(a, b, "{name} differs between two runs");
    }
}

/// A symbolic link planted in the `--output` folder under an output's file name is replaced
/// by the output, never followed: the file it points to keeps its bytes, and no temporary
/// file stays behind.
#[cfg(unix)]
#[test]
fn output_through_a_planted_link_replaces_the_link() {
    let f = Fixture::new();
    fs::create_dir(f.path("out")).unwrap();
    fs::write(f.path("victim.txt"), b"precious").unwrap();
    std::os::unix::fs::symlink(f.path("victim.txt"), f.path("out/Y.npy")).unwrap();
    // A dangling link too: following it would create a file elsewhere.
    std::os::unix::fs::symlink(f.path("created_elsewhere.npy"), f.path("out/Y_h.npy")).unwrap();
    let run = f.cmd(&["lstm.onnx", "x.npy", "--output", "out"]);
    assert_ok(&run);
    assert_eq!(fs::read(f.path("victim.txt")).unwrap(), b"precious");
    assert!(!f.path("created_elsewhere.npy").exists());
    for name in ["Y", "Y_h", "lstm_Y_c_0"] {
        let path = f.path(&format!("out/{name}.npy"));
        assert!(
            fs::symlink_metadata(&path).unwrap().file_type().is_file(),
            "{name}.npy is not a regular file"
        );
        read_npy(&path).unwrap();
    }
    let mut left: Vec<String> = fs::read_dir(f.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["Y.npy", "Y_h.npy", "lstm_Y_c_0.npy"]);
}

/// The library's writer replaces a link as the command line does.
#[cfg(unix)]
#[test]
fn write_npy_replaces_a_link_instead_of_following_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("victim"), b"precious").unwrap();
    std::os::unix::fs::symlink(dir.path().join("victim"), dir.path().join("a.npy")).unwrap();
    let t = array(&[2, 3], 0.25);
    write_npy(dir.path().join("a.npy"), &t).unwrap();
    assert_eq!(fs::read(dir.path().join("victim")).unwrap(), b"precious");
    assert_eq!(read_npy(dir.path().join("a.npy")).unwrap(), t);
}

/// `--output` naming an existing file (not a folder) is refused by name.
#[test]
fn output_naming_a_file_is_refused_in_words() {
    let f = Fixture::new();
    let run = f.cmd(&["lstm.onnx", "x.npy", "--output", "x.npy"]);
    assert_error(&run);
    assert!(
        run.stderr
            .contains("--output x.npy: exists and is not a folder"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("os error"), "{}", run.stderr);
}

/// Writes the model's outputs into `ref/` and returns their tensors.
fn reference_outputs(f: &Fixture) -> Vec<Tensor> {
    assert_ok(&f.cmd(&["lstm.onnx", "x.npy", "--output", "ref"]));
    ["Y", "Y_h", "lstm_Y_c_0"]
        .iter()
        .map(|n| read_npy(f.path(&format!("ref/{n}.npy"))).unwrap())
        .collect()
}

/// Writes the outputs of `exact.onnx` into `eref/` and returns them.
fn exact_references(f: &Fixture) -> Vec<Tensor> {
    assert_ok(&f.cmd(&["exact.onnx", "xe.npy", "--output", "eref"]));
    ["Y", "Y_h"]
        .iter()
        .map(|n| read_npy(f.path(&format!("eref/{n}.npy"))).unwrap())
        .collect()
}

#[test]
fn expect_passes_against_directory_files_and_npz() {
    let f = Fixture::new();
    let refs = reference_outputs(&f);

    let run = f.cmd(&["lstm.onnx", "x.npy", "--expect", "ref"]);
    assert_ok(&run);
    assert!(
        run.stdout
            .contains("expect: all 3 outputs match the reference"),
        "{}",
        run.stdout
    );

    // Within tolerance but not equal: the report shows the largest error.
    let exact = exact_references(&f);
    fs::create_dir(f.path("close")).unwrap();
    for (i, t) in exact.iter().enumerate() {
        let mut t = t.clone();
        if i == 1 {
            t.to_plain_array_view_mut::<f32>().unwrap()[[0, 0, 1]] += 2e-6;
        }
        write_npy(f.path(&format!("close/expected_{i}.npy")), &t).unwrap();
    }
    let run = f.cmd(&["exact.onnx", "xe.npy", "--expect", "close"]);
    assert_ok(&run);
    insta::assert_snapshot!("expect_pass", without_timings(&run.stdout));

    let run = f.cmd(&[
        "lstm.onnx",
        "x.npy",
        "--expect",
        "ref/Y.npy",
        "ref/Y_h.npy",
        "ref/lstm_Y_c_0.npy",
        "--rtol",
        "0",
        "--atol",
        "0",
        "--json",
    ]);
    assert_ok(&run);
    let v = run.json();
    assert_eq!(v["ok"], true);
    for o in v["outputs"].as_array().unwrap() {
        assert_eq!(o["ok"], true);
        assert_eq!(o["max_abs_err"], 0.0);
        assert_eq!(o["max_rel_err"], 0.0);
    }

    // A directory of expected_<i>.npy files, as the fixtures hold.
    fs::create_dir(f.path("fixture_style")).unwrap();
    for (i, t) in refs.iter().enumerate() {
        write_npy(f.path(&format!("fixture_style/expected_{i}.npy")), t).unwrap();
    }
    assert_ok(&f.cmd(&["lstm.onnx", "x.npy", "--expect", "fixture_style"]));

    // One .npz keyed by output name, as np.savez(**outputs) writes it.
    let keyed: Vec<(&str, &Tensor)> = ["Y", "Y_h", "lstm/Y_c:0"].into_iter().zip(&refs).collect();
    f.write_npz("ref.npz", &keyed);
    let run = f.cmd(&["lstm.onnx", "x.npy", "--expect", "ref.npz", "--json"]);
    assert_ok(&run);
    assert_eq!(run.json()["ok"], true);
    // The same, deflated as np.savez_compressed writes it.
    f.write_npz_compressed("ref_compressed.npz", &keyed);
    let run = f.cmd(&[
        "lstm.onnx",
        "x.npy",
        "--expect",
        "ref_compressed.npz",
        "--json",
    ]);
    assert_ok(&run);
    assert_eq!(run.json()["ok"], true);
}

/// Archives written by numpy itself (scripts/gen_file_fixtures.py): `np.savez` and
/// `np.savez_compressed` inputs, `np.savez_compressed` references, for the tutorial LSTM.
#[test]
fn numpy_written_npz_inputs_and_references() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let model = root.join("tutorial/lstm_legacy/model.onnx");
    let expected = root.join("npz/tutorial_lstm_expected_compressed.npz");
    for inputs in [
        "tutorial_lstm_inputs.npz",
        "tutorial_lstm_inputs_compressed.npz",
    ] {
        let out = Command::cargo_bin("rnn-run")
            .unwrap()
            .arg(&model)
            .arg(root.join("npz").join(inputs))
            .arg("--expect")
            .arg(&expected)
            .arg("--json")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{inputs}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["ok"], true, "{inputs}");
        assert!(
            v["outputs"][0]["reference"]
                .as_str()
                .unwrap()
                .ends_with("tutorial_lstm_expected_compressed.npz[output]"),
            "{v}"
        );
    }
}

#[test]
fn expect_mismatch_exits_1_naming_output_and_index() {
    let f = Fixture::new();
    let refs = exact_references(&f);
    fs::create_dir(f.path("bad")).unwrap();
    for (i, t) in refs.iter().enumerate() {
        let mut t = t.clone();
        if i == 1 {
            let mut view = t.to_plain_array_view_mut::<f32>().unwrap();
            view[[0, 1, 2]] += 0.001;
            view[[0, 0, 0]] += 0.00001; // within atol + rtol * |expected|
        }
        write_npy(f.path(&format!("bad/expected_{i}.npy")), &t).unwrap();
    }
    let run = f.cmd(&["exact.onnx", "xe.npy", "--expect", "bad"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("worst vs tolerance and largest abs err at [0, 1, 2]"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("output 'Y_h'"), "{}", run.stderr);
    assert!(run.stderr.contains("[0, 1, 2]"), "{}", run.stderr);
    assert!(!run.stderr.contains("output 'Y'"), "{}", run.stderr);
    insta::assert_snapshot!("expect_fail_stdout", without_timings(&run.stdout));
    insta::assert_snapshot!("expect_fail_stderr", run.stderr);

    let run = f.cmd(&["exact.onnx", "xe.npy", "--expect", "bad", "--json"]);
    assert_eq!(run.code, 1);
    let v = run.json();
    assert_eq!(v["ok"], false);
    let outputs = v["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["ok"], true);
    assert_eq!(outputs[1]["ok"], false);
    assert_eq!(outputs[1]["mismatched"], 1);
    assert_eq!(
        outputs[1]["worst_vs_tolerance"]["index"],
        serde_json::json!([0, 1, 2])
    );
    assert_eq!(
        outputs[1]["largest_abs_err_at"]["index"],
        serde_json::json!([0, 1, 2])
    );
    let err = outputs[1]["max_abs_err"].as_f64().unwrap();
    assert!((err - 0.001).abs() < 1e-5, "{err}");

    // A looser tolerance accepts it.
    assert_ok(&f.cmd(&["exact.onnx", "xe.npy", "--expect", "bad", "--atol", "0.01"]));
    // A tolerance of zero rejects the small change too.
    let run = f.cmd(&[
        "exact.onnx",
        "xe.npy",
        "--expect",
        "bad",
        "--atol",
        "0",
        "--rtol",
        "0",
        "--json",
    ]);
    assert_eq!(run.code, 1);
    let v = run.json();
    assert_eq!(v["outputs"][1]["mismatched"], 2);
    // With no tolerance, the 1e-5 change at [0, 0, 0] fails too; the 1e-3 one at [0, 1, 2]
    // stays the largest absolute error.
    assert_eq!(
        v["outputs"][1]["largest_abs_err_at"]["index"],
        serde_json::json!([0, 1, 2])
    );
}

/// Where the worst element relative to the tolerance and the largest absolute error are
/// different elements, both are shown, each labelled.
#[test]
fn expect_shows_worst_vs_tolerance_and_largest_abs_err() {
    let f = Fixture::new();
    let refs = exact_references(&f);
    fs::create_dir(f.path("two")).unwrap();
    for (i, t) in refs.iter().enumerate() {
        let mut t = t.clone();
        if i == 1 {
            let mut view = t.to_plain_array_view_mut::<f32>().unwrap();
            // Y_h[0, 0, 0] is 0: 1e-4 off is 10 times the tolerance there. Y_h[0, 1, 2] is
            // 1.0390625: 2e-4 off is about 1.8 times its tolerance, the larger error.
            view[[0, 0, 0]] += 0.0001;
            view[[0, 1, 2]] += 0.0002;
        }
        write_npy(f.path(&format!("two/expected_{i}.npy")), &t).unwrap();
    }
    let run = f.cmd(&["exact.onnx", "xe.npy", "--expect", "two"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    insta::assert_snapshot!("expect_two_places_stdout", without_timings(&run.stdout));
    insta::assert_snapshot!("expect_two_places_stderr", run.stderr);
    let run = f.cmd(&["exact.onnx", "xe.npy", "--expect", "two", "--json"]);
    let v = run.json();
    let y_h = &v["outputs"][1];
    assert_eq!(
        y_h["worst_vs_tolerance"]["index"],
        serde_json::json!([0, 0, 0])
    );
    assert_eq!(
        y_h["largest_abs_err_at"]["index"],
        serde_json::json!([0, 1, 2])
    );
}

/// An output that is all NaN where the reference holds numbers: the errors are NaN (not 0),
/// every element a mismatch, and the NaN are counted, in text and JSON.
#[test]
fn expect_nan_output_reports_nan() {
    let f = Fixture::new();
    let refs = reference_outputs(&f);
    let nan_x = Tensor::from(ArrayD::from_elem(IxDyn(&[4, 2, FEATURES]), f32::NAN));
    write_npy(f.path("nan_x.npy"), &nan_x).unwrap();
    fs::create_dir(f.path("refs")).unwrap();
    for (i, t) in refs.iter().enumerate() {
        write_npy(f.path(&format!("refs/expected_{i}.npy")), t).unwrap();
    }
    let run = f.cmd(&["lstm.onnx", "nan_x.npy", "--expect", "refs"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    insta::assert_snapshot!("expect_nan_output_stdout", without_timings(&run.stdout));
    insta::assert_snapshot!("expect_nan_output_stderr", run.stderr);

    let run = f.cmd(&["lstm.onnx", "nan_x.npy", "--expect", "refs", "--json"]);
    assert_eq!(run.code, 1);
    let v = run.json();
    for (i, o) in v["outputs"].as_array().unwrap().iter().enumerate() {
        let n = refs[i].len();
        assert_eq!(o["ok"], false, "{o}");
        assert_eq!(o["max_abs_err"], "NaN", "{o}");
        assert_eq!(o["max_rel_err"], "NaN", "{o}");
        assert_eq!(o["mismatched"], n, "{o}");
        assert_eq!(
            o["nan"],
            serde_json::json!({"output": n, "reference": 0, "one_sided": n})
        );
        assert_eq!(o["largest_abs_err_at"]["got"], "NaN", "{o}");
    }
}

#[test]
fn expect_shape_mismatch_names_both_shapes() {
    let f = Fixture::new();
    let refs = reference_outputs(&f);
    write_npy(f.path("y.npy"), &refs[0]).unwrap();
    write_npy(f.path("short.npy"), &array(&[1, 2], 0.0)).unwrap();
    write_npy(f.path("c.npy"), &refs[2]).unwrap();
    let run = f.cmd(&[
        "lstm.onnx",
        "x.npy",
        "--expect",
        "y.npy",
        "short.npy",
        "c.npy",
    ]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("output 'Y_h'")
            && run.stderr.contains("got [1, 2, 3], expected [1, 2]"),
        "{}",
        run.stderr
    );
}

#[test]
fn expect_nan_rules() {
    let f = Fixture::new();
    let refs = reference_outputs(&f);
    let mut nan_ref = refs[1].clone();
    nan_ref.to_plain_array_view_mut::<f32>().unwrap()[[0, 0, 1]] = f32::NAN;
    write_npy(f.path("y.npy"), &refs[0]).unwrap();
    write_npy(f.path("nan.npy"), &nan_ref).unwrap();
    write_npy(f.path("c.npy"), &refs[2]).unwrap();
    let run = f.cmd(&[
        "lstm.onnx",
        "x.npy",
        "--expect",
        "y.npy",
        "nan.npy",
        "c.npy",
    ]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("worst vs tolerance and largest abs err at [0, 0, 1]: got"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("expected NaN"), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "max abs err NaN, max rel err NaN; NaN: 0 in the output, 1 in the reference, 1 on \
             one side only"
        ),
        "{}",
        run.stdout
    );
}

/// Outputs computed by onnxruntime 1.32 for the models and inputs of [`Fixture`] (with
/// `hidden_size=3` added where onnxruntime requires it).
const ORT_LSTM_Y_H: [f32; 6] = [
    -0.069979526,
    -0.104576476,
    -0.19888927,
    -0.13870203,
    -0.09229426,
    -0.100558035,
];
const ORT_LSTM_Y_C: [f32; 6] = [
    -0.14483655,
    -0.16623296,
    -0.34816137,
    -0.4363121,
    -0.17756346,
    -0.14776783,
];
const ORT_GRU_H_N: [f32; 12] = [
    0.1104714,
    -0.09515395,
    -0.092445694,
    0.203812,
    -0.04236123,
    0.054903947,
    -0.0016061515,
    -0.35394466,
    -0.27663764,
    0.14893062,
    0.43215036,
    0.09760288,
];
const ORT_RNN_Y: [f32; 24] = [
    0.76730776,
    0.46814704,
    0.0,
    0.0,
    0.0,
    0.11211029,
    0.7429203,
    0.5980174,
    0.0,
    0.0,
    0.0,
    0.25056356,
    0.42601427,
    0.3534963,
    0.0,
    0.0,
    0.0,
    0.13487028,
    0.12453122,
    0.0,
    0.0,
    0.043324627,
    0.42454353,
    0.10099227,
];

fn tensor(shape: &[usize], values: &[f32]) -> Tensor {
    Tensor::from(ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap())
}

#[test]
fn outputs_match_onnxruntime() {
    let f = Fixture::new();
    write_npy(f.path("y_h.npy"), &tensor(&[1, 2, 3], &ORT_LSTM_Y_H)).unwrap();
    write_npy(f.path("y_c.npy"), &tensor(&[1, 2, 3], &ORT_LSTM_Y_C)).unwrap();
    write_npy(f.path("h_n.npy"), &tensor(&[2, 2, 3], &ORT_GRU_H_N)).unwrap();
    write_npy(f.path("rnn_y.npy"), &tensor(&[4, 1, 2, 3], &ORT_RNN_Y)).unwrap();
    // Y itself is checked through Y_h (its last step) in output_dir_holds_one_npy_per_output.
    let run = f.cmd(&["lstm.onnx", "x.npy", "--output", "out", "--json"]);
    assert_ok(&run);
    let y = read_npy(f.path("out/Y.npy")).unwrap();
    write_npy(f.path("y.npy"), &y).unwrap();
    let run = f.cmd(&[
        "lstm.onnx",
        "x.npy",
        "--expect",
        "y.npy",
        "y_h.npy",
        "y_c.npy",
    ]);
    assert_ok(&run);
    let run = f.cmd(&["gru.onnx", "x.npy", "h0.npy", "--expect", "h_n.npy"]);
    assert_ok(&run);
    let run = f.cmd(&["rnn.onnx", "x.npy", "--expect", "rnn_y.npy"]);
    assert_ok(&run);
}

#[test]
fn tolerance_arguments_are_checked() {
    let f = Fixture::new();
    reference_outputs(&f);
    for args in [
        &["--rtol", "abc"][..],
        &["--atol=-1"],
        &["--rtol", "-0.5"],
        &["--atol", "nan"],
        &["--rtol", "inf"],
        &["--rtol"],
    ] {
        let mut all = vec!["lstm.onnx", "x.npy", "--expect", "ref"];
        all.extend_from_slice(args);
        let run = f.cmd(&all);
        assert_error(&run);
        assert!(
            run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
    }
    error_case(
        &f,
        "bad_rtol",
        &["lstm.onnx", "x.npy", "--expect", "ref", "--rtol", "abc"],
    );
    error_case(
        &f,
        "negative_atol",
        &["lstm.onnx", "x.npy", "--expect", "ref", "--atol=-1"],
    );
    // Tolerances are accepted without --expect and with scientific notation.
    assert_ok(&f.cmd(&[
        "lstm.onnx",
        "x.npy",
        "--expect",
        "ref",
        "--rtol",
        "1e-3",
        "--atol",
        "0",
    ]));
}

#[test]
fn expect_reference_count_must_match_outputs() {
    let f = Fixture::new();
    reference_outputs(&f);
    let run = f.cmd(&["lstm.onnx", "x.npy", "--expect", "ref/Y.npy"]);
    assert_error(&run);
    insta::assert_snapshot!("expect_wrong_count", run.error_report());
    let run = f.cmd(&[
        "lstm.onnx",
        "x.npy",
        "--expect",
        "x.npy",
        "x.npy",
        "missing.npy",
    ]);
    assert_error(&run);
    assert!(run.stderr.contains("missing.npy"), "{}", run.stderr);
    fs::create_dir(f.path("empty")).unwrap();
    let run = f.cmd(&["lstm.onnx", "x.npy", "--expect", "empty"]);
    assert_error(&run);
    assert!(
        run.stderr.contains("no reference for output 'Y'"),
        "{}",
        run.stderr
    );
}

#[test]
fn bench_reports_runs_and_times() {
    let f = Fixture::new();
    let run = f.cmd(&["lstm.onnx", "x.npy", "--bench", "3", "--json"]);
    assert_ok(&run);
    let v = run.json();
    let bench = &v["bench"];
    assert_eq!(bench["runs"], 3);
    let (min, med, max) = (
        bench["min_ms"].as_f64().unwrap(),
        bench["median_ms"].as_f64().unwrap(),
        bench["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 <= min && min <= med && med <= max, "{bench}");

    let run = f.cmd(&["lstm.onnx", "x.npy", "--bench", "3", "--threads", "2"]);
    assert_ok(&run);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("bench: "))
        .unwrap();
    assert!(line.starts_with("bench: 3 runs, median "), "{line}");
    assert!(!run.stdout.contains("thread"), "{}", run.stdout);

    assert_error(&f.cmd(&["lstm.onnx", "x.npy", "--bench", "0"]));
    assert_error(&f.cmd(&["lstm.onnx", "x.npy", "--bench", "many"]));
}

#[test]
fn engine_tract_agrees_with_native() {
    let f = Fixture::new();
    reference_outputs(&f);
    // tract's own LSTM cannot produce Y_c for a batch above 1, hence the model without it.
    let run = f.cmd(&[
        "lstm_hy.onnx",
        "x.npy",
        "--engine",
        "tract",
        "--expect",
        "ref/Y.npy",
        "ref/Y_h.npy",
        "--json",
    ]);
    assert_ok(&run);
    assert_eq!(run.json()["ok"], true);
    let run = f.cmd(&["inspect", "lstm.onnx", "--engine", "tract", "--json"]);
    assert_ok(&run);
    assert_eq!(run.json()["recurrent_nodes"][0]["engine"], "tract");
    let run = f.cmd(&["lstm.onnx", "x.npy", "--engine", "onnxruntime"]);
    assert_error(&run);
}

#[test]
fn recurrent_weights_in_half_precision_are_reported_and_round_the_outputs() {
    let f = Fixture::new();
    let full = f.cmd(&["lstm.onnx", "x.npy", "--json", "--output", "full"]);
    assert_ok(&full);
    assert!(full.json().get("recurrent_weights").is_none());
    let y = |dir: &str| f32_values(&read_npy(f.path(dir).join("Y.npy")).unwrap());
    for format in ["bf16", "f16"] {
        let args = ["lstm.onnx", "x.npy", "--recurrent-weights", format];
        let run = f.cmd(&[&args[..], &["--json", "--output", format]].concat());
        assert_ok(&run);
        assert_eq!(run.json()["recurrent_weights"], format);
        let text = f.cmd(&args);
        assert!(
            text.stdout
                .contains(&format!("recurrent weights: {format} (rounded")),
            "{}",
            text.stdout
        );
        // The rounding shows in the outputs, well inside 1e-3 on this small model.
        let (rounded, exact) = (y(format), y("full"));
        assert_ne!(rounded, exact, "{format}");
        let diff = rounded
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-3, "{format}: {diff}");
    }
    let run = f.cmd(&[
        "lstm.onnx",
        "x.npy",
        "--recurrent-weights",
        "bf16",
        "--engine",
        "tract",
    ]);
    assert_error(&run);
    assert!(run.stderr.contains("--recurrent-weights"), "{}", run.stderr);
    let run = f.cmd(&["lstm.onnx", "x.npy", "--recurrent-weights", "f8"]);
    assert_error(&run);
}

#[test]
fn engine_tract_failure_is_a_clean_error() {
    // tract's own lowering cannot handle a symbolic batch without initial_h; whatever it does
    // (an error or a panic inside tract), the tool reports one error line and exits with 2.
    let f = Fixture::new();
    for model in ["rnn.onnx", "lstm.onnx"] {
        let run = f.cmd(&[model, "x.npy", "--engine", "tract"]);
        if run.code != 0 {
            assert_error(&run);
            run.error_report();
        }
    }
    let run = f.cmd(&["rnn.onnx", "x.npy"]);
    assert_ok(&run);
    assert!(
        run.stdout.contains("output 0: Y  float32  [4, 1, 2, 3]"),
        "{}",
        run.stdout
    );
}

// ------------------------------------------------------------------------------------------
// Input binding

#[test]
fn inputs_bind_by_position_name_or_npz() {
    let f = Fixture::new();
    let positional = f.cmd(&["gru.onnx", "x.npy", "h0.npy", "--output", "pos"]);
    assert_ok(&positional);
    let h_n = read_npy(f.path("pos/h_n.npy")).unwrap();
    assert_eq!(h_n.shape(), &[2, 2, HIDDEN]);

    assert_ok(&f.cmd(&[
        "gru.onnx",
        "h0=h0.npy",
        "X=x.npy",
        "--expect",
        "pos",
        "--rtol",
        "0",
        "--atol",
        "0",
    ]));
    assert_ok(&f.cmd(&[
        "gru.onnx",
        "x.npy",
        "h0=h0.npy",
        "--expect",
        "pos",
        "--rtol",
        "0",
        "--atol",
        "0",
    ]));

    let x = read_npy(f.path("x.npy")).unwrap();
    let h0 = read_npy(f.path("h0.npy")).unwrap();
    // Keys as input names (numpy adds ".npy" to member names; both spellings are read).
    f.write_npz("inputs.npz", &[("h0", &h0), ("X", &x)]);
    assert_ok(&f.cmd(&[
        "gru.onnx",
        "inputs.npz",
        "--expect",
        "pos",
        "--rtol",
        "0",
        "--atol",
        "0",
    ]));

    // np.savez_compressed's deflated members read the same.
    f.write_npz_compressed("inputs_compressed.npz", &[("h0", &h0), ("X", &x)]);
    assert_ok(&f.cmd(&[
        "gru.onnx",
        "inputs_compressed.npz",
        "--expect",
        "pos",
        "--rtol",
        "0",
        "--atol",
        "0",
    ]));

    // An .npz for some inputs, a name= binding for the rest.
    f.write_npz("only_x.npz", &[("X", &x)]);
    assert_ok(&f.cmd(&[
        "gru.onnx",
        "only_x.npz",
        "h0=h0.npy",
        "--expect",
        "pos/h_n.npy",
    ]));

    // np.savez(path, x, h0) names positional arrays arr_0, arr_1: they bind by position.
    f.write_npz("positional.npz", &[("arr_0", &x), ("arr_1", &h0)]);
    assert_ok(&f.cmd(&[
        "gru.onnx",
        "positional.npz",
        "--expect",
        "pos",
        "--rtol",
        "0",
        "--atol",
        "0",
    ]));

    // The same input twice is an error.
    let run = f.cmd(&["gru.onnx", "x.npy", "h0.npy", "X=x.npy"]);
    assert_error(&run);
    assert!(run.stderr.contains("'X' is given twice"), "{}", run.stderr);
}

#[test]
fn inputs_of_other_dtypes_are_read() {
    // float64, int64 and int32 files are read and reported with their type.
    let f = Fixture::new();
    let x64 = read_npy(f.path("x.npy"))
        .unwrap()
        .cast_to::<f64>()
        .unwrap()
        .into_owned();
    write_npy(f.path("x64.npy"), &x64).unwrap();
    let run = f.cmd(&["lstm.onnx", "x64.npy"]);
    assert_error(&run);
    assert!(
        run.stderr
            .contains("expected element type float32, found float64"),
        "{}",
        run.stderr
    );
    for (t, name) in [
        (x64.cast_to::<i64>().unwrap().into_owned(), "int64"),
        (x64.cast_to::<i32>().unwrap().into_owned(), "int32"),
    ] {
        write_npy(f.path("xi.npy"), &t).unwrap();
        let run = f.cmd(&["lstm.onnx", "xi.npy"]);
        assert_error(&run);
        assert!(
            run.stderr.contains(&format!("found {name}")),
            "{}",
            run.stderr
        );
    }
}

// ------------------------------------------------------------------------------------------
// inspect

#[test]
fn inspect_text() {
    let f = Fixture::new();
    let run = f.cmd(&["inspect", "lstm.onnx"]);
    assert_ok(&run);
    insta::assert_snapshot!("inspect_lstm", run.stdout);
    let run = f.cmd(&["inspect", "gru.onnx"]);
    assert_ok(&run);
    insta::assert_snapshot!("inspect_gru", run.stdout);
    let run = f.cmd(&["inspect", "rnn.onnx"]);
    assert_ok(&run);
    insta::assert_snapshot!("inspect_rnn", run.stdout);
}

#[test]
fn inspect_json() {
    let f = Fixture::new();
    let run = f.cmd(&["inspect", "gru.onnx", "--json"]);
    assert_ok(&run);
    let v = run.json();
    assert_eq!(v["model"], "gru.onnx");
    assert_eq!(v["opset"], 14);
    let inputs = v["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0]["name"], "X");
    assert_eq!(inputs[0]["dtype"], "float32");
    assert_eq!(inputs[0]["shape"], serde_json::json!(["seq", "batch", 2]));
    assert_eq!(inputs[1]["shape"], serde_json::json!([2, "batch", 3]));
    assert_eq!(v["outputs"][0]["name"], "h_n");
    let node = &v["recurrent_nodes"][0];
    assert_eq!(node["name"], "encoder/gru");
    assert_eq!(node["op"], "GRU");
    assert_eq!(node["direction"], "bidirectional");
    assert_eq!(node["hidden_size"], "from R");
    assert_eq!(node["layout"], 0);
    assert_eq!(
        node["activations"],
        serde_json::json!([
            "Sigmoid",
            "Tanh",
            "HardSigmoid(alpha=0.2, beta=0.5)",
            "Tanh"
        ])
    );
    assert_eq!(node["clip"], 5.0);
    assert_eq!(node["linear_before_reset"], true);
    assert_eq!(node["input_forget"], false);
    assert_eq!(
        node["optional_inputs"],
        serde_json::json!({"B": false, "sequence_lens": false, "initial_h": true})
    );
    assert_eq!(
        node["outputs"],
        serde_json::json!({"Y": false, "Y_h": true})
    );
    assert_eq!(node["engine"], "native");
    assert!(node["weights_prepared"].is_boolean());
    insta::assert_snapshot!("inspect_gru_json", run.stdout);

    let run = f.cmd(&["inspect", "lstm.onnx", "--json"]);
    assert_ok(&run);
    let node = &run.json()["recurrent_nodes"][0];
    assert_eq!(node["hidden_size"], 3);
    assert_eq!(
        node["activations"],
        serde_json::json!(["Sigmoid", "Tanh", "Tanh"])
    );
    assert!(node["clip"].is_null());
    assert_eq!(
        node["optional_inputs"],
        serde_json::json!({"B": true, "sequence_lens": false, "initial_h": false, "initial_c": false, "P": false})
    );
    assert_eq!(
        node["outputs"],
        serde_json::json!({"Y": true, "Y_h": true, "Y_c": true})
    );
    assert_eq!(node["weights_prepared"], true);
}

// ------------------------------------------------------------------------------------------
// Errors: exit code 2 and one `error: ` message on stderr

fn npy_with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn error_case(f: &Fixture, name: &str, args: &[&str]) {
    let run = f.cmd(args);
    assert_error(&run);
    insta::assert_snapshot!(name, run.error_report());
}

#[test]
fn error_model_files() {
    let f = Fixture::new();
    fs::write(f.path("empty.onnx"), b"").unwrap();
    let random: Vec<u8> = (0u32..512)
        .map(|k| (k.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(f.path("random.onnx"), random).unwrap();
    error_case(&f, "err_missing_model", &["missing.onnx", "x.npy"]);
    error_case(&f, "err_empty_model", &["empty.onnx", "x.npy"]);
    error_case(&f, "err_random_model", &["random.onnx", "x.npy"]);
    error_case(
        &f,
        "err_inspect_missing_model",
        &["inspect", "missing.onnx"],
    );
}

/// PyTorch checkpoints (made by scripts/gen_file_fixtures.py) are said to be what they are,
/// with how to export them or load a recurrent module's state dict.
#[test]
fn error_pytorch_checkpoints() {
    let f = Fixture::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/robustness");
    for (from, to) in [
        ("torch_lstm_state_dict.pt", "lstm.pt"),
        ("torch_lstm_legacy.pt", "legacy.pt"),
        ("torch_lstm_module.pt", "module.pth"),
        ("torch_conv_gru_module.pt", "denoiser.pt"),
        ("lstm_proj_l2_dynamo.onnx", "lstm_proj.onnx"),
    ] {
        fs::copy(root.join(from), f.path(to)).unwrap();
    }
    error_case(&f, "err_pytorch_state_dict", &["lstm.pt", "x.npy"]);
    error_case(&f, "err_pytorch_legacy", &["legacy.pt", "x.npy"]);
    error_case(&f, "err_pytorch_module", &["inspect", "module.pth"]);
    // torch.save(model) of a Conv1d -> GRU -> Linear module: a whole module, not a state dict,
    // and not something rnn_run::torch runs (it would run only the GRU).
    error_case(&f, "err_pytorch_custom_module", &["inspect", "denoiser.pt"]);
    // The dynamo export of a two-layer nn.LSTM(proj_size=3): invalid (onnxruntime refuses it);
    // said at load, by `inspect` too, instead of tract's "Impossible to unify 2 with 1" at run.
    error_case(&f, "err_lstm_proj_dynamo_run", &["lstm_proj.onnx", "x.npy"]);
    let out = f.cmd(&["inspect", "lstm_proj.onnx"]);
    assert_ne!(out.code, 0);
    let text = &out.stdout;
    assert!(
        text.contains("node 'node_Concat_123' (Concat): the export is invalid")
            && text.contains("nn.LSTM(hidden_size=6, proj_size=3)")
            && text.contains("rnn_run::torch::TorchRecurrent"),
        "{text}"
    );
}

#[test]
fn error_input_files() {
    let f = Fixture::new();
    fs::write(
        f.path("corrupt.npy"),
        b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'fortran_",
    )
    .unwrap();
    fs::write(
        f.path("huge.npy"),
        npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 2, 2), }",
            &[0u8; 64],
        ),
    )
    .unwrap();
    fs::write(f.path("text.npy"), b"just some text\n").unwrap();
    error_case(&f, "err_missing_input", &["lstm.onnx", "nothere.npy"]);
    error_case(&f, "err_corrupt_npy", &["lstm.onnx", "corrupt.npy"]);
    error_case(&f, "err_not_npy", &["lstm.onnx", "text.npy"]);
    error_case(&f, "err_huge_npy", &["lstm.onnx", "huge.npy"]);
}

#[test]
fn error_input_mismatch() {
    let f = Fixture::new();
    write_npy(
        f.path("x64.npy"),
        &read_npy(f.path("x.npy")).unwrap().cast_to::<f64>().unwrap(),
    )
    .unwrap();
    write_npy(f.path("rank2.npy"), &array(&[4, FEATURES], 0.0)).unwrap();
    write_npy(f.path("wide.npy"), &array(&[4, 2, 5], 0.0)).unwrap();
    error_case(&f, "err_wrong_dtype", &["lstm.onnx", "x64.npy"]);
    error_case(&f, "err_wrong_rank", &["lstm.onnx", "rank2.npy"]);
    error_case(&f, "err_wrong_feature_size", &["lstm.onnx", "wide.npy"]);
    error_case(&f, "err_too_few_inputs", &["gru.onnx", "x.npy"]);
    error_case(&f, "err_no_inputs", &["lstm.onnx"]);
    error_case(&f, "err_too_many_inputs", &["lstm.onnx", "x.npy", "x.npy"]);
    error_case(
        &f,
        "err_unknown_name",
        &["gru.onnx", "x.npy", "hidden=h0.npy"],
    );
}

#[test]
fn error_npz_inputs() {
    let f = Fixture::new();
    let x = read_npy(f.path("x.npy")).unwrap();
    f.write_npz("partial.npz", &[("X", &x)]);
    f.write_npz("extra.npz", &[("X", &x), ("Z", &x)]);
    fs::write(f.path("broken.npz"), b"PK\x03\x04 not really a zip").unwrap();
    error_case(&f, "err_npz_missing_key", &["gru.onnx", "partial.npz"]);
    error_case(&f, "err_npz_unknown_key", &["gru.onnx", "extra.npz"]);
    error_case(&f, "err_npz_broken", &["gru.onnx", "broken.npz"]);
}

#[test]
fn usage_errors() {
    let f = Fixture::new();
    error_case(&f, "usage_no_arguments", &[]);
    error_case(
        &f,
        "usage_unknown_option",
        &["lstm.onnx", "x.npy", "--frobnicate"],
    );
    let run = f.cmd(&["lstm.onnx", "x.npy", "--frobnicate"]);
    assert_error(&run);
    assert!(run.stderr.contains("--frobnicate"), "{}", run.stderr);
    error_case(&f, "usage_inspect_no_model", &["inspect"]);
    let run = f.cmd(&["--help"]);
    assert_ok(&run);
    assert!(run.stdout.contains("--expect"), "{}", run.stdout);
    assert!(run.stdout.contains("inspect"), "{}", run.stdout);
    let run = f.cmd(&["inspect", "--help"]);
    assert_ok(&run);
    assert!(run.stdout.contains("--json"), "{}", run.stdout);
    // The output directory cannot be created where a file stands.
    let run = f.cmd(&["lstm.onnx", "x.npy", "--output", "x.npy"]);
    assert_error(&run);
    assert!(run.stderr.contains("x.npy"), "{}", run.stderr);
}

// ------------------------------------------------------------------------------------------
// The fixtures exported from PyTorch / the ONNX node tests, when present.

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut dirs = vec![];
    for name in [
        "onnx_node/test_lstm_defaults",
        "onnx_node/test_gru_defaults",
        "tutorial/lstm_legacy",
    ] {
        let dir = root.join(name);
        if dir.join("model.onnx").is_file() && dir.join("meta.json").is_file() {
            dirs.push(dir);
        }
    }
    dirs
}

#[test]
fn fixtures_match_their_references() {
    for dir in fixture_dirs() {
        let meta: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let n_inputs = meta["inputs"].as_array().map(|a| a.len()).unwrap_or(0);
        let mut args: Vec<String> = vec!["model.onnx".into()];
        args.extend((0..n_inputs).map(|i| format!("input_{i}.npy")));
        args.extend(["--expect".into(), ".".into(), "--json".into()]);
        if let Some(r) = meta["rtol"].as_f64() {
            args.extend(["--rtol".into(), r.to_string()]);
        }
        if let Some(a) = meta["atol"].as_f64() {
            args.extend(["--atol".into(), a.to_string()]);
        }
        let out = Command::cargo_bin("rnn-run")
            .unwrap()
            .current_dir(&dir)
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}:\n{stdout}\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["ok"], true, "{}", dir.display());
    }
}

#[test]
fn arrays_round_trip_through_the_library_reader() {
    // Tensors written by write_npy come back identical, for each supported element type.
    let dir = tempfile::tempdir().unwrap();
    let f32s = array(&[2, 3], 0.25);
    let tensors = [
        f32s.clone(),
        f32s.cast_to::<f64>().unwrap().into_owned(),
        Tensor::from(Array::from_shape_vec((2, 2), vec![1i64, -2, 3, -4]).unwrap()),
        Tensor::from(Array::from_shape_vec((3,), vec![7i32, 8, 9]).unwrap()),
    ];
    for (i, t) in tensors.iter().enumerate() {
        let p = dir.path().join(format!("{i}.npy"));
        write_npy(&p, t).unwrap();
        assert_eq!(&read_npy(&p).unwrap(), t);
    }
}
