//! Hostile inputs in one list, and the one check every refusal's message must pass: it names
//! the model's things (node, tensor, file) in plain words, never tract's internals.
//!
//! `tests/messages.rs` runs every case of [`library_cases`] and [`cli_cases`], reads every
//! `error:` line of the CLI snapshots and loads every model of `fixtures/robustness/`, then
//! checks each message with [`engine_internals`]. To add a refusal of your own, push a
//! [`Case`] onto one of the two lists (a closure returning the library's error, or a command
//! line with the files it needs); other tests may call [`assert_plain`] on a message too.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use rnn_run::{Error, Model, Tensor};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

use super::proto::{attr_int, float_initializer, model_bytes, value_info, Dim};

/// What in a message is the engine speaking, not the model: each pattern found, with where.
/// An empty list is a plain message.
pub fn engine_internals(message: &str) -> Vec<String> {
    let mut found = vec![];
    for needle in [
        "Sym(",
        "Val(",
        "Infering",
        "GivenAllRule",
        "registry/src",
        "\"\"",
        "''",
        "TDim",
        "OutletId",
        "InletId",
        "TypedFact",
        "InferenceFact",
        "SymbolValues",
        "TurnState",
        "DatumType",
        "panicked at",
        // An empty name between words: "Building node  (Constant)".
        "  (",
    ] {
        if message.contains(needle) {
            found.push(format!("'{needle}'"));
        }
    }
    let bytes = message.as_bytes();
    for (i, w) in bytes.windows(2).enumerate() {
        // `#54`: tract's node numbers.
        if w[0] == b'#' && w[1].is_ascii_digit() {
            found.push(format!("node number at {i}"));
        }
    }
    // `.rs:76`: a source path and line.
    if let Some(i) = message.find(".rs:") {
        if bytes.get(i + 4).is_some_and(u8::is_ascii_digit) {
            found.push(format!("source line at {i}"));
        }
    }
    // Rust Debug formatting: `StreamId(1)`, `Some("x")`, `Layout { size: 3 }`: a CamelCase
    // word (a capital, then a lower-case letter) directly followed by `(` or ` { `.
    let words: Vec<(usize, &str)> = word_spans(message);
    for (at, word) in words {
        let after = &message[at + word.len()..];
        let camel = word.len() >= 2
            && word.as_bytes()[0].is_ascii_uppercase()
            && word.as_bytes()[1].is_ascii_lowercase()
            && word.bytes().any(|b| b.is_ascii_lowercase());
        if camel && (after.starts_with('(') || after.starts_with(" { ")) {
            found.push(format!("Rust Debug formatting '{word}{}'", &after[..1]));
        }
    }
    found
}

/// Maximal runs of ASCII letters, digits and `_`, with their byte offsets, skipping those that
/// continue a dotted or `::` path (`nn.LSTM(`, `torch.jit.load(`, `Model::load(` are code a
/// user types, not Debug output).
fn word_spans(s: &str) -> Vec<(usize, &str)> {
    let mut out = vec![];
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let pathed = start > 0 && (b[start - 1] == b'.' || b[start - 1] == b':');
            if !pathed {
                out.push((start, &s[start..i]));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Panics when `message` speaks of the engine (see [`engine_internals`]).
pub fn assert_plain(case: &str, message: &str) {
    let found = engine_internals(message);
    assert!(
        found.is_empty(),
        "{case}: the message speaks of the engine ({}):\n{message}",
        found.join(", ")
    );
}

/// A call that must fail: the message to check.
pub type Call = Box<dyn FnOnce() -> Result<(), String>>;

/// One hostile case: a name, and a call that must fail with the message to check.
pub struct Case {
    pub name: String,
    pub call: Call,
}

pub fn case(name: impl Into<String>, call: impl FnOnce() -> Result<(), String> + 'static) -> Case {
    Case {
        name: name.into(),
        call: Box::new(call),
    }
}

/// Loads model bytes and, when they load, runs them on zeros of the declared input shapes
/// (symbolic dimensions 1): the first error's message.
pub fn load_and_run(bytes: &[u8]) -> Result<(), String> {
    let model = Model::from_bytes(bytes).map_err(|e| e.to_string())?;
    let inputs = model
        .inputs()
        .iter()
        .map(|info| Tensor::zero_dt(info.dtype, &info.shape_with(1)).unwrap())
        .collect();
    model.run(inputs).map(|_| ()).map_err(|e| e.to_string())
}

/// `x [1] → Identity → y`, the nodes given instead when `nodes` is not empty.
pub fn graph_with(nodes: Vec<pb::NodeProto>, initializer: Vec<pb::TensorProto>) -> pb::GraphProto {
    let float = |name: &str| value_info(name, DataType::Float, Some(&[Dim::N(1)]));
    pb::GraphProto {
        node: nodes,
        initializer,
        input: vec![float("x")],
        output: vec![float("y")],
        ..Default::default()
    }
}

pub fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
    pb::NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// An `If` whose branches nest `depth` more `If`s, the innermost returning `x`.
pub fn nested_ifs(depth: usize) -> Vec<u8> {
    fn branch(depth: usize) -> pb::GraphProto {
        let out = value_info("r", DataType::Float, Some(&[Dim::N(1)]));
        let node = if depth == 0 {
            node("id", "Identity", &["x"], &["r"])
        } else {
            let mut n = node(&format!("if_{depth}"), "If", &["c"], &["r"]);
            n.attribute = vec![
                graph_attr("then_branch", branch(depth - 1)),
                graph_attr("else_branch", branch(depth - 1)),
            ];
            n
        };
        pb::GraphProto {
            node: vec![node],
            output: vec![out],
            ..Default::default()
        }
    }
    fn graph_attr(name: &str, g: pb::GraphProto) -> pb::AttributeProto {
        pb::AttributeProto {
            name: name.into(),
            r#type: pb::attribute_proto::AttributeType::Graph as i32,
            g: Some(g),
            ..Default::default()
        }
    }
    // Both branches share one subtree shape; keep the file small by nesting only then_branch.
    fn thin(depth: usize) -> pb::GraphProto {
        let out = value_info("r", DataType::Float, Some(&[Dim::N(1)]));
        let node = if depth == 0 {
            node("id", "Identity", &["x"], &["r"])
        } else {
            let mut n = node(&format!("if_{depth}"), "If", &["c"], &["r"]);
            n.attribute = vec![
                graph_attr("then_branch", thin(depth - 1)),
                graph_attr("else_branch", branch(0)),
            ];
            n
        };
        pb::GraphProto {
            node: vec![node],
            output: vec![out],
            ..Default::default()
        }
    }
    let mut top = thin(depth);
    top.node[0].output = vec!["y".into()];
    top.output = vec![value_info("y", DataType::Float, Some(&[Dim::N(1)]))];
    top.input = vec![
        value_info("x", DataType::Float, Some(&[Dim::N(1)])),
        value_info("c", DataType::Bool, Some(&[])),
    ];
    model_bytes(top, 17)
}

/// A safetensors file: `header` is the JSON after the 8-byte length, `data` the bytes after.
pub fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The refusals of the library (models built in code, files written to a temporary folder).
pub fn library_cases() -> Vec<Case> {
    let mut cases = vec![];
    let short = |dims: &[i64], n: usize| float_initializer("W", dims, vec![0.5; n]);
    let add_w = || vec![node("add", "Add", &["x", "W"], &["y"])];
    cases.push(case("initializer with too few floats", move || {
        load_and_run(&model_bytes(
            graph_with(add_w(), vec![short(&[2, 3], 5)]),
            17,
        ))
    }));
    cases.push(case("initializer with too many floats", move || {
        load_and_run(&model_bytes(graph_with(add_w(), vec![short(&[1], 3)]), 17))
    }));
    cases.push(case("initializer with short raw_data", move || {
        let mut t = short(&[4], 0);
        t.raw_data = vec![0; 10];
        load_and_run(&model_bytes(graph_with(add_w(), vec![t]), 17))
    }));
    cases.push(case("initializer with a negative dimension", move || {
        load_and_run(&model_bytes(graph_with(add_w(), vec![short(&[-2], 2)]), 17))
    }));
    cases.push(case("int64 initializer with too few values", || {
        let t = pb::TensorProto {
            name: "shape".into(),
            dims: vec![3],
            data_type: DataType::Int64 as i32,
            int64_data: vec![1],
            ..Default::default()
        };
        let nodes = vec![node("reshape", "Reshape", &["x", "shape"], &["y"])];
        load_and_run(&model_bytes(graph_with(nodes, vec![t]), 17))
    }));
    cases.push(case("unnamed Constant with a short value", || {
        let mut c = node("", "Constant", &[], &["k"]);
        c.attribute = vec![pb::AttributeProto {
            name: "value".into(),
            r#type: pb::attribute_proto::AttributeType::Tensor as i32,
            t: Some(float_initializer("", &[2, 2], vec![1.0])),
            ..Default::default()
        }];
        let nodes = vec![c, node("add", "Add", &["x", "k"], &["y"])];
        load_and_run(&model_bytes(graph_with(nodes, vec![]), 17))
    }));
    cases.push(case("unnamed Cast without a type", || {
        let nodes = vec![
            node("", "Cast", &["x"], &["k"]),
            node("id", "Identity", &["k"], &["y"]),
        ];
        load_and_run(&model_bytes(graph_with(nodes, vec![]), 17))
    }));
    cases.push(case("a cycle of two nodes", || {
        let nodes = vec![
            node("a", "Add", &["x", "b_out"], &["a_out"]),
            node("b", "Identity", &["a_out"], &["b_out"]),
            node("c", "Identity", &["a_out"], &["y"]),
        ];
        load_and_run(&model_bytes(graph_with(nodes, vec![]), 17))
    }));
    cases.push(case("a node writing the graph input", || {
        let nodes = vec![
            node("neg", "Neg", &["x"], &["x"]),
            node("id", "Identity", &["x"], &["y"]),
        ];
        load_and_run(&model_bytes(graph_with(nodes, vec![]), 17))
    }));
    cases.push(case("a node writing an initializer", move || {
        let nodes = vec![
            node("neg", "Neg", &["x"], &["W"]),
            node("add", "Add", &["x", "W"], &["y"]),
        ];
        load_and_run(&model_bytes(graph_with(nodes, vec![short(&[1], 1)]), 17))
    }));
    cases.push(case("subgraphs nested 120 deep", || {
        load_and_run(&nested_ifs(120))
    }));
    cases.push(case("a safetensors file as the model", || {
        let st = safetensors_bytes(
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0; 8],
        );
        load_and_run(&st)
    }));
    cases.push(case("bytes of no known format", || {
        let random: Vec<u8> = (0u32..512)
            .map(|k| (k.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        load_and_run(&random)
    }));
    cases.push(case("an empty model", || load_and_run(&[])));
    cases.push(case("a graph output nothing produces", || {
        load_and_run(&model_bytes(
            graph_with(vec![node("id", "Identity", &["x"], &["z"])], vec![]),
            17,
        ))
    }));
    cases.push(case("a graph output with an empty name", || {
        let mut g = graph_with(vec![node("id", "Identity", &["x"], &["y", ""])], vec![]);
        g.output.push(value_info("", DataType::Float, None));
        load_and_run(&model_bytes(g, 17))
    }));
    cases.push(case("an unknown operator", || {
        load_and_run(&model_bytes(
            graph_with(vec![node("f", "Frobnicate", &["x"], &["y"])], vec![]),
            17,
        ))
    }));
    cases.push(case("an LSTM whose hidden_size disagrees with R", || {
        let w = float_initializer("W", &[1, 8, 1], vec![0.1; 8]);
        let r = float_initializer("R", &[1, 8, 2], vec![0.1; 16]);
        let mut lstm = node("lstm", "LSTM", &["X", "W", "R"], &["Y"]);
        lstm.attribute = vec![attr_int("hidden_size", 3)];
        let graph = pb::GraphProto {
            node: vec![lstm],
            initializer: vec![w, r],
            input: vec![value_info(
                "X",
                DataType::Float,
                Some(&[Dim::N(3), Dim::N(1), Dim::N(1)]),
            )],
            output: vec![value_info("Y", DataType::Float, None)],
            ..Default::default()
        };
        load_and_run(&model_bytes(graph, 14))
    }));
    cases.push(case("run with a wrong input shape", || {
        let model = Model::from_bytes(&model_bytes(
            graph_with(vec![node("id", "Identity", &["x"], &["y"])], vec![]),
            17,
        ))
        .unwrap();
        let x = Tensor::from(ndarray::arr1(&[1.0f32, 2.0]));
        model.run(vec![x]).map(|_| ()).map_err(|e| e.to_string())
    }));
    cases.push(case("run with a wrong input type", || {
        let model = Model::from_bytes(&model_bytes(
            graph_with(vec![node("id", "Identity", &["x"], &["y"])], vec![]),
            17,
        ))
        .unwrap();
        let x = Tensor::from(ndarray::arr1(&[1i64]));
        model.run(vec![x]).map(|_| ()).map_err(|e| e.to_string())
    }));
    cases.push(case("run with no inputs", || {
        let model = Model::from_bytes(&model_bytes(
            graph_with(vec![node("id", "Identity", &["x"], &["y"])], vec![]),
            17,
        ))
        .unwrap();
        model.run(vec![]).map(|_| ()).map_err(|e| e.to_string())
    }));
    cases.push(case("safetensors of an unknown element type", || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let header = r#"{"weight_ih_l0":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#;
        std::fs::write(&path, safetensors_bytes(header, &[0; 8])).unwrap();
        torch_lstm_from(&path)
    }));
    cases.push(case("safetensors cut short", || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let header = r#"{"weight_ih_l0":{"dtype":"F32","shape":[8,1],"data_offsets":[0,32]}}"#;
        std::fs::write(&path, safetensors_bytes(header, &[0; 8])).unwrap();
        torch_lstm_from(&path)
    }));
    cases.push(case("safetensors missing parameters", || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let header = r#"{"weight_ih_l0":{"dtype":"F32","shape":[8,1],"data_offsets":[0,32]}}"#;
        std::fs::write(&path, safetensors_bytes(header, &[0; 32])).unwrap();
        torch_lstm_from(&path)
    }));
    cases.push(case("a missing model file", || {
        Model::load("no/such/model.onnx")
            .map(|_| ())
            .map_err(|e| e.to_string())
    }));
    cases.push(case("a directory as the model", || {
        let dir = tempfile::tempdir().unwrap();
        Model::load(dir.path())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }));
    cases.push(case("a corrupt .npy", || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        std::fs::write(
            &path,
            b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'fortran_",
        )
        .unwrap();
        rnn_run::npy::read_npy(&path)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }));
    cases.push(case("a broken .npz", || {
        rnn_run::npy::parse_npz(b"PK\x03\x04 not really a zip", "broken.npz")
            .map(|_| ())
            .map_err(|e| e.to_string())
    }));
    #[cfg(unix)]
    for (what, call) in fifo_calls() {
        cases.push(case(format!("a FIFO as {what}"), call));
    }
    cases
}

/// `TorchRecurrent::<f32>::from_safetensors` for a one-layer `nn.LSTM(1, 2)`.
fn torch_lstm_from(path: &Path) -> Result<(), String> {
    use rnn_run::torch::{TorchConfig, TorchKind, TorchRecurrent};
    TorchRecurrent::<f32>::from_safetensors(path, TorchConfig::new(TorchKind::Lstm))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Creates a FIFO (named pipe) at `path` with `mkfifo`.
#[cfg(unix)]
pub fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Runs `f` on another thread; if it has not returned within `limit`, writes to (and so
/// unblocks) every FIFO in `fifos` and panics: a reader blocked on a FIFO fails the test
/// instead of hanging it.
pub fn within<R: Send + 'static>(
    limit: Duration,
    fifos: &[PathBuf],
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => {
            for fifo in fifos {
                let fifo = fifo.clone();
                // Opening for writing unblocks the reader; never block here ourselves.
                std::thread::spawn(move || {
                    let _ = std::fs::OpenOptions::new().write(true).open(fifo);
                });
            }
            panic!("still blocked after {limit:?} (a FIFO opened for reading?)");
        }
    }
}

/// Every library reader given a FIFO: each call must fail promptly ([`within`] 10 s).
#[cfg(unix)]
pub fn fifo_calls() -> Vec<(&'static str, Call)> {
    fn guarded(
        name: &'static str,
        f: impl FnOnce(&Path) -> Result<(), String> + Send + 'static,
    ) -> Call {
        Box::new(move || {
            let dir = tempfile::tempdir().unwrap();
            let fifo = dir.path().join(name);
            mkfifo(&fifo);
            let path = fifo.clone();
            within(Duration::from_secs(10), &[fifo], move || f(&path))
        })
    }
    use rnn_run::torch::{TorchConfig, TorchKind, TorchRecurrent};
    let text = |e: Error| e.to_string();
    vec![
        (
            "the model",
            guarded("model.onnx", move |p| {
                Model::load(p).map(|_| ()).map_err(text)
            }),
        ),
        (
            "the model to describe",
            guarded("model.onnx", move |p| {
                rnn_run::ModelInfo::from_file(p).map(|_| ()).map_err(text)
            }),
        ),
        (
            "a .npy",
            guarded("x.npy", move |p| {
                rnn_run::npy::read_npy(p).map(|_| ()).map_err(text)
            }),
        ),
        (
            "a .npz",
            guarded("x.npz", move |p| {
                rnn_run::npy::read_npz(p).map(|_| ()).map_err(text)
            }),
        ),
        (
            "torch weights (.npz)",
            guarded("w.npz", move |p| {
                TorchRecurrent::<f32>::from_npz(p, TorchConfig::new(TorchKind::Lstm))
                    .map(|_| ())
                    .map_err(text)
            }),
        ),
        (
            "torch weights (.safetensors)",
            guarded("w.safetensors", move |p| {
                TorchRecurrent::<f32>::from_safetensors(p, TorchConfig::new(TorchKind::Gru))
                    .map(|_| ())
                    .map_err(text)
            }),
        ),
        (
            "external data",
            Box::new(move || {
                let dir = tempfile::tempdir().unwrap();
                let src =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tutorial/lstm_dynamo");
                std::fs::copy(src.join("model.onnx"), dir.path().join("model.onnx")).unwrap();
                let fifo = dir.path().join("model.onnx.data");
                mkfifo(&fifo);
                let model = dir.path().join("model.onnx");
                within(Duration::from_secs(10), &[fifo], move || {
                    Model::load(model).map(|_| ()).map_err(text)
                })
            }),
        ),
    ]
}

/// A command line to run in a temporary folder: files to write first, FIFOs to make, and
/// the arguments. It must exit with code 2 and one `error:` line, within 20 s.
pub struct CliCase {
    pub name: &'static str,
    pub files: Vec<(&'static str, Vec<u8>)>,
    pub fifos: Vec<&'static str>,
    pub args: Vec<&'static str>,
}

/// `x [1] → Identity → y`, and an input for it.
pub fn identity_files() -> Vec<(&'static str, Vec<u8>)> {
    let model = model_bytes(
        graph_with(vec![node("id", "Identity", &["x"], &["y"])], vec![]),
        17,
    );
    let x = rnn_run::npy::npy_bytes(&Tensor::from(ndarray::arr1(&[1.0f32]))).unwrap();
    vec![("model.onnx", model), ("x.npy", x)]
}

/// The command line's refusals.
pub fn cli_cases() -> Vec<CliCase> {
    let files = identity_files();
    let with = |extra: Vec<(&'static str, Vec<u8>)>| {
        let mut f = files.clone();
        f.extend(extra);
        f
    };
    let safetensors = safetensors_bytes(
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    vec![
        CliCase {
            name: "--output naming a file",
            files: files.clone(),
            fifos: vec![],
            args: vec!["model.onnx", "x.npy", "--output", "x.npy"],
        },
        CliCase {
            name: "a safetensors file as the model",
            files: with(vec![("weights.safetensors", safetensors.clone())]),
            fifos: vec![],
            args: vec!["weights.safetensors", "x.npy"],
        },
        CliCase {
            name: "inspect a safetensors file",
            files: with(vec![("weights.safetensors", safetensors)]),
            fifos: vec![],
            args: vec!["inspect", "weights.safetensors"],
        },
        CliCase {
            name: "a FIFO as the model",
            files: files.clone(),
            fifos: vec!["fifo.onnx"],
            args: vec!["fifo.onnx", "x.npy"],
        },
        CliCase {
            name: "inspect a FIFO",
            files: files.clone(),
            fifos: vec!["fifo.onnx"],
            args: vec!["inspect", "fifo.onnx"],
        },
        CliCase {
            name: "a FIFO as an input",
            files: files.clone(),
            fifos: vec!["fifo.npy"],
            args: vec!["model.onnx", "fifo.npy"],
        },
        CliCase {
            name: "a FIFO as a named input",
            files: files.clone(),
            fifos: vec!["fifo.npy"],
            args: vec!["model.onnx", "x=fifo.npy"],
        },
        CliCase {
            name: "a FIFO as an .npz of inputs",
            files: files.clone(),
            fifos: vec!["fifo.npz"],
            args: vec!["model.onnx", "fifo.npz"],
        },
        CliCase {
            name: "a FIFO as the --expect file",
            files: files.clone(),
            fifos: vec!["fifo.npy"],
            args: vec!["model.onnx", "x.npy", "--expect", "fifo.npy"],
        },
        CliCase {
            name: "a FIFO as the --expect .npz",
            files: files.clone(),
            fifos: vec!["fifo.npz"],
            args: vec!["model.onnx", "x.npy", "--expect", "fifo.npz"],
        },
        CliCase {
            name: "a nested model",
            files: with(vec![("nested.onnx", nested_ifs(120))]),
            fifos: vec![],
            args: vec!["inspect", "nested.onnx"],
        },
    ]
}

/// Runs a [`CliCase`] with the `rnn-run` binary at `bin`: its stderr. Panics when the run
/// takes over 20 s (FIFOs are then written to so the process can end), exits otherwise than
/// with code 2, or prints other than one `error:` line.
pub fn run_cli_case(bin: &Path, c: &CliCase) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in &c.files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let fifos: Vec<PathBuf> = c.fifos.iter().map(|f| dir.path().join(f)).collect();
    #[cfg(unix)]
    for f in &fifos {
        mkfifo(f);
    }
    let mut child = Command::new(bin)
        .args(&c.args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            for fifo in &fifos {
                let fifo = fifo.clone();
                std::thread::spawn(move || {
                    let _ = std::fs::OpenOptions::new().write(true).open(fifo);
                });
            }
            let _ = child.kill();
            panic!("{}: rnn-run still running after 20 s", c.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{}: stderr: {stderr}", c.name);
    assert!(
        stderr.starts_with("error: "),
        "{}: stderr: {stderr}",
        c.name
    );
    assert_eq!(stderr.lines().count(), 1, "{}: stderr: {stderr}", c.name);
    stderr.trim_end().to_string()
}

/// Every `.onnx` in `fixtures/robustness/`, as (file name, bytes).
pub fn robustness_models() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/robustness");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The decoded form, for tests that mutate a model.
pub fn decode(bytes: &[u8]) -> pb::ModelProto {
    pb::ModelProto::decode(bytes).unwrap()
}
