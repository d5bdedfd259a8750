//! PyTorch state dicts (fixtures/torch_weights, made by scripts/gen_torch_weights.py) loaded
//! straight into the native cells with `rnn_run::torch`: the results must match PyTorch, and
//! match the ONNX path (the same module exported by the legacy exporter) to 1e-6. The gate
//! reordering must reproduce the weights the exporter stored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{Array3, ArrayD, Axis, Ix1, Ix3, IxDyn};
use prost::Message;
use rnn_run::attrs::OpKind;
use rnn_run::gates::{reorder_gates, GateOrder};
use rnn_run::kernels::Float;
use rnn_run::npy::{read_npy, read_npz};
use rnn_run::torch::{Nonlinearity, TorchConfig, TorchKind, TorchOutput, TorchRecurrent};
use rnn_run::{Error, Model, Tensor};
use tract_onnx::pb;

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;
/// Torch path versus ONNX path: the same cells on the same weights.
const PATHS_ATOL: f64 = 1e-6;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("torch_weights")
}

fn meta(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("meta.json")).expect("meta.json");
    serde_json::from_str(&text).expect("meta.json is JSON")
}

/// The configuration the fixture's module was built with, from its meta.json.
fn config(meta: &serde_json::Value) -> TorchConfig {
    let kw = &meta["kwargs"];
    let kind = match meta["kind"].as_str().unwrap() {
        "RNN" => TorchKind::Rnn {
            nonlinearity: match kw["nonlinearity"].as_str().unwrap_or("tanh") {
                "relu" => Nonlinearity::Relu,
                _ => Nonlinearity::Tanh,
            },
        },
        "LSTM" => TorchKind::Lstm,
        "GRU" => TorchKind::Gru,
        other => panic!("kind {other}"),
    };
    TorchConfig {
        kind,
        num_layers: kw["num_layers"].as_u64().unwrap_or(1) as usize,
        bidirectional: kw["bidirectional"].as_bool().unwrap_or(false),
        batch_first: kw["batch_first"].as_bool().unwrap_or(false),
        bias: kw["bias"].as_bool().unwrap_or(true),
        prefix: meta["prefix"].as_str().unwrap_or("").to_string(),
    }
}

fn numbered(dir: &Path, prefix: &str) -> Vec<Tensor> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.npy")))
        .take_while(|p| p.exists())
        .map(|p| read_npy(&p).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn array3<T: Float + tract_hir::internal::Datum>(t: &Tensor) -> Array3<T> {
    t.to_plain_array_view::<T>()
        .unwrap()
        .to_owned()
        .into_dimensionality::<Ix3>()
        .unwrap()
}

fn to_f64(t: &Tensor) -> ArrayD<f64> {
    t.cast_to::<f64>()
        .unwrap()
        .to_plain_array_view::<f64>()
        .unwrap()
        .to_owned()
}

fn arr_f64<T: Float>(a: &Array3<T>) -> ArrayD<f64> {
    a.mapv(|v| v.to_f64().unwrap()).into_dyn()
}

/// Largest abs error; panics (naming `what`) when an element is out of `atol + rtol·|want|`.
fn compare(what: &str, got: &ArrayD<f64>, want: &ArrayD<f64>, rtol: f64, atol: f64) -> f64 {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= atol + rtol * w.abs(),
            "{what}: element {i}: got {g}, expected {w} (abs err {err:e})"
        );
        worst = worst.max(err);
    }
    worst
}

fn outputs_f64<T: Float>(o: &TorchOutput<T>) -> Vec<ArrayD<f64>> {
    let mut v = vec![arr_f64(&o.output), arr_f64(&o.h_n)];
    if let Some(c) = &o.c_n {
        v.push(arr_f64(c));
    }
    v
}

/// Runs one fixture in element type `T`; returns (max error vs PyTorch, max error vs ONNX).
fn check_fixture_typed<T: Float + tract_hir::internal::Datum>(
    dir: &Path,
    cfg: TorchConfig,
) -> (f64, f64) {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let from_npz = TorchRecurrent::<T>::from_npz(dir.join("state_dict.npz"), cfg.clone())
        .unwrap_or_else(|e| panic!("{name}: npz: {e}"));
    let from_st =
        TorchRecurrent::<T>::from_safetensors(dir.join("state_dict.safetensors"), cfg.clone())
            .unwrap_or_else(|e| panic!("{name}: safetensors: {e}"));
    let proj = meta(dir)["kwargs"]["proj_size"]
        .as_u64()
        .map(|p| p as usize);
    assert_eq!(from_npz.proj_size(), proj, "{name}");
    // An LSTM with projections has no ONNX-equivalent layers.
    let onnx_layers = if proj.is_some() { 0 } else { cfg.num_layers };
    assert_eq!(from_npz.layers().len(), onnx_layers);

    let inputs = numbered(dir, "input");
    let expected: Vec<ArrayD<f64>> = numbered(dir, "expected").iter().map(to_f64).collect();
    let x = array3::<T>(&inputs[0]);
    let h0 = array3::<T>(&inputs[1]);
    let c0 = inputs.get(2).map(array3::<T>);
    let run = |m: &TorchRecurrent<T>| {
        m.forward(x.view(), Some(h0.view()), c0.as_ref().map(|c| c.view()))
            .unwrap_or_else(|e| panic!("{name}: forward: {e}"))
    };
    let got = run(&from_npz);
    assert_eq!(got, run(&from_st), "{name}: npz and safetensors disagree");
    let got = outputs_f64(&got);
    assert_eq!(got.len(), expected.len(), "{name}: output count");

    let mut vs_torch = 0.0f64;
    for (i, (g, w)) in got.iter().zip(&expected).enumerate() {
        vs_torch = vs_torch.max(compare(
            &format!("{name}: output {i} vs PyTorch"),
            g,
            w,
            RTOL,
            ATOL,
        ));
    }

    if !dir.join("model.onnx").exists() {
        // nn.LSTM(proj_size=...): ONNX cannot express it, so there is no export to compare.
        assert!(proj.is_some(), "{name}: model.onnx is missing");
        eprintln!("{name}: max abs err vs PyTorch {vs_torch:.3e} (no ONNX export)");
        return (vs_torch, 0.0);
    }
    let model = Model::load(dir.join("model.onnx")).unwrap_or_else(|e| panic!("{name}: {e}"));
    let onnx = model
        .run(inputs.clone())
        .unwrap_or_else(|e| panic!("{name}: onnx run: {e}"));
    assert_eq!(onnx.len(), got.len(), "{name}: ONNX output count");
    let mut vs_onnx = 0.0f64;
    for (i, (g, o)) in got.iter().zip(&onnx).enumerate() {
        vs_onnx = vs_onnx.max(compare(
            &format!("{name}: output {i} vs ONNX path"),
            g,
            &to_f64(o),
            0.0,
            PATHS_ATOL,
        ));
    }
    eprintln!("{name}: max abs err vs PyTorch {vs_torch:.3e}, vs ONNX path {vs_onnx:.3e}");
    (vs_torch, vs_onnx)
}

fn check_fixture(name: &str) {
    let dir = root().join(name);
    let meta = meta(&dir);
    let cfg = config(&meta);
    match meta["dtype"].as_str().unwrap() {
        "float32" => check_fixture_typed::<f32>(&dir, cfg),
        "float64" => check_fixture_typed::<f64>(&dir, cfg),
        other => panic!("{name}: dtype {other}"),
    };
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {
        const FIXTURES: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                check_fixture(stringify!($name));
            }
        )*
    };
}

fixtures!(
    rnn_tanh_l1,
    rnn_relu_l1_bf,
    rnn_relu_l2_bi,
    rnn_tanh_l2_bf_nobias,
    lstm_l1,
    lstm_l2,
    lstm_l1_bi_bf,
    lstm_l2_bi_nobias,
    lstm_l1_f64,
    gru_l1,
    gru_l2_bi_bf,
    gru_l1_nobias,
    gru_l2_prefix,
    lstm_proj_l1,
    lstm_proj_l2_bi_bf,
    lstm_proj_l2_nobias_f64,
);

#[test]
fn every_fixture_is_tested() {
    let mut on_disk: Vec<String> = std::fs::read_dir(root())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("meta.json").exists())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

// ---------------------------------------------------------------------------------------
// Gate reordering against what the legacy exporter stored
// ---------------------------------------------------------------------------------------

fn initializer_f64(t: &pb::TensorProto) -> ArrayD<f64> {
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let values: Vec<f64> = match (t.data_type, t.raw_data.is_empty()) {
        (1, false) => t
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        (1, true) => t.float_data.iter().map(|&v| v as f64).collect(),
        (11, false) => t
            .raw_data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        (11, true) => t.double_data.clone(),
        (dt, _) => panic!("initializer {}: data type {dt}", t.name),
    };
    ArrayD::from_shape_vec(IxDyn(&shape), values).unwrap()
}

/// One exported node: its op, W, R and B.
type NodeWeights = (OpKind, ArrayD<f64>, ArrayD<f64>, Option<ArrayD<f64>>);

/// (W, R, B) of each recurrent node of the exported model, in graph order (= layer order).
fn exported_weights(path: &Path) -> Vec<NodeWeights> {
    let proto = pb::ModelProto::decode(&*std::fs::read(path).unwrap()).unwrap();
    let graph = proto.graph.unwrap();
    let inits: HashMap<&str, &pb::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let get = |name: &str| {
        initializer_f64(
            inits
                .get(name)
                .unwrap_or_else(|| panic!("{name} is not an initializer")),
        )
    };
    graph
        .node
        .iter()
        .filter_map(|n| OpKind::from_op_type(&n.op_type).map(|op| (op, n)))
        .map(|(op, n)| {
            let b = n.input.get(3).filter(|s| !s.is_empty()).map(|s| get(s));
            (op, get(&n.input[1]), get(&n.input[2]), b)
        })
        .collect()
}

fn state_dict(dir: &Path) -> HashMap<String, ArrayD<f64>> {
    read_npz(dir.join("state_dict.npz"))
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, to_f64(&t)))
        .collect()
}

#[test]
fn reorder_matches_the_legacy_export_and_round_trips() {
    let mut checked = 0;
    for name in FIXTURES {
        let dir = root().join(name);
        if !dir.join("model.onnx").exists() {
            continue; // LSTM projections: no export
        }
        let cfg = config(&meta(&dir));
        let sd = state_dict(&dir);
        let nodes = exported_weights(&dir.join("model.onnx"));
        assert_eq!(nodes.len(), cfg.num_layers, "{name}: one node per layer");
        for (layer, (op, w, r, b)) in nodes.iter().enumerate() {
            assert_eq!(*op, cfg.kind.op());
            assert_eq!(b.is_some(), cfg.bias, "{name}: B present iff bias");
            for d in 0..cfg.num_directions() {
                let sfx = if d == 1 { "_reverse" } else { "" };
                let key = |p: &str| format!("{}{p}_l{layer}{sfx}", cfg.prefix);
                let pairs = [
                    ("weight_ih", w.index_axis(Axis(0), d)),
                    ("weight_hh", r.index_axis(Axis(0), d)),
                ];
                for (param, stored) in pairs {
                    let torch = &sd[&key(param)];
                    let onnx =
                        reorder_gates(*op, torch.view(), GateOrder::PyTorch, GateOrder::Onnx);
                    assert_eq!(
                        onnx.view(),
                        stored,
                        "{name}: {} reordered vs the exported W/R",
                        key(param)
                    );
                    let back = reorder_gates(*op, onnx.view(), GateOrder::Onnx, GateOrder::PyTorch);
                    assert_eq!(&back, torch, "{name}: {} round trip", key(param));
                    checked += 1;
                }
                if let Some(b) = b {
                    let b = b
                        .index_axis(Axis(0), d)
                        .into_dimensionality::<Ix1>()
                        .unwrap();
                    let gh = b.len() / 2;
                    for (half, param) in [(0, "bias_ih"), (1, "bias_hh")] {
                        let torch = sd[&key(param)]
                            .clone()
                            .into_dimensionality::<Ix1>()
                            .unwrap();
                        let onnx =
                            reorder_gates(*op, torch.view(), GateOrder::PyTorch, GateOrder::Onnx);
                        assert_eq!(
                            onnx.view(),
                            b.slice(ndarray::s![half * gh..(half + 1) * gh]),
                            "{name}: {}",
                            key(param)
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    // 13 fixtures, 24 layer-directions: 48 weights and 42 biases (three fixtures have none).
    assert_eq!(checked, 90);
}

#[test]
fn reorder_round_trips_with_known_permutations() {
    // Gate k of PyTorch's order filled with the value k, hidden 2, 3 columns.
    for (op, g, onnx_order) in [
        (OpKind::Lstm, 4, vec![0.0, 3.0, 1.0, 2.0]),
        (OpKind::Gru, 3, vec![1.0, 0.0, 2.0]),
    ] {
        let torch = ndarray::Array2::from_shape_fn((g * 2, 3), |(row, _)| (row / 2) as f64);
        let onnx = reorder_gates(op, torch.view(), GateOrder::PyTorch, GateOrder::Onnx);
        let blocks: Vec<f64> = (0..g).map(|k| onnx[[k * 2, 0]]).collect();
        assert_eq!(blocks, onnx_order, "{op:?}");
        let back = reorder_gates(op, onnx.view(), GateOrder::Onnx, GateOrder::PyTorch);
        assert_eq!(back, torch, "{op:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Behaviour and errors
// ---------------------------------------------------------------------------------------

fn state_dict_f32(dir: &Path) -> HashMap<String, ArrayD<f32>> {
    read_npz(dir.join("state_dict.npz"))
        .unwrap()
        .into_iter()
        .filter(|(_, t)| t.datum_type() == rnn_run::DatumType::F32)
        .map(|(k, t)| (k, t.to_plain_array_view::<f32>().unwrap().to_owned()))
        .collect()
}

fn lstm_l2_state() -> (HashMap<String, ArrayD<f32>>, TorchConfig) {
    (
        state_dict_f32(&root().join("lstm_l2")),
        TorchConfig {
            num_layers: 2,
            ..TorchConfig::new(TorchKind::Lstm)
        },
    )
}

fn param_error(r: Result<TorchRecurrent<f32>, Error>) -> (String, String) {
    match r {
        Err(Error::Parameter { key, message }) => (key, message),
        Err(other) => panic!("expected a parameter error, got {other}"),
        Ok(_) => panic!("expected a parameter error, got a module"),
    }
}

#[test]
fn missing_and_misshapen_parameters_are_named() {
    let (sd, cfg) = lstm_l2_state();
    assert!(TorchRecurrent::from_tensors(&sd, cfg.clone()).is_ok());

    let mut m = sd.clone();
    m.remove("weight_hh_l1");
    let (key, msg) = param_error(TorchRecurrent::from_tensors(&m, cfg.clone()));
    assert_eq!(key, "weight_hh_l1");
    assert!(msg.contains("missing"), "{msg}");

    let mut m = sd.clone();
    m.insert("weight_ih_l1".into(), ArrayD::zeros(IxDyn(&[20, 4])));
    let (key, msg) = param_error(TorchRecurrent::from_tensors(&m, cfg.clone()));
    assert_eq!(key, "weight_ih_l1");
    assert!(
        msg.contains("expected shape [20, 5]") && msg.contains("found [20, 4]"),
        "{msg}"
    );

    let mut m = sd.clone();
    m.insert("bias_hh_l0".into(), ArrayD::zeros(IxDyn(&[15])));
    let (key, msg) = param_error(TorchRecurrent::from_tensors(&m, cfg.clone()));
    assert_eq!(key, "bias_hh_l0");
    assert!(
        msg.contains("expected shape [20]") && msg.contains("found [15]"),
        "{msg}"
    );

    // bias=True expected, but the state dict has none.
    let nobias: HashMap<_, _> = sd
        .iter()
        .filter(|(k, _)| !k.starts_with("bias"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (key, msg) = param_error(TorchRecurrent::from_tensors(&nobias, cfg.clone()));
    assert_eq!(key, "bias_ih_l0");
    assert!(msg.contains("bias: false"), "{msg}");
    assert!(TorchRecurrent::from_tensors(
        &nobias,
        TorchConfig {
            bias: false,
            ..cfg.clone()
        }
    )
    .is_ok());
}

#[test]
fn configuration_mismatches_are_named() {
    let (sd, cfg) = lstm_l2_state();
    // Wrong kind: the LSTM's weight_hh_l0 is [20, 5], a GRU expects [15, 5].
    let (key, msg) = param_error(TorchRecurrent::from_tensors(
        &sd,
        TorchConfig {
            kind: TorchKind::Gru,
            ..cfg.clone()
        },
    ));
    assert_eq!(key, "weight_hh_l0");
    assert!(
        msg.contains("found [20, 5]") && msg.contains("nn.LSTM"),
        "{msg}"
    );

    // Too few layers: layer 1's keys are unexpected.
    let (key, msg) = param_error(TorchRecurrent::from_tensors(
        &sd,
        TorchConfig {
            num_layers: 1,
            ..cfg.clone()
        },
    ));
    assert!(key.ends_with("_l1"), "{key}");
    assert!(msg.contains("num_layers = 1"), "{msg}");

    // Too many layers: layer 2 is missing.
    let (key, _) = param_error(TorchRecurrent::from_tensors(
        &sd,
        TorchConfig {
            num_layers: 3,
            ..cfg.clone()
        },
    ));
    assert_eq!(key, "weight_ih_l2");

    // Bidirectional expected: the reverse weights are missing.
    let (key, _) = param_error(TorchRecurrent::from_tensors(
        &sd,
        TorchConfig {
            bidirectional: true,
            ..cfg.clone()
        },
    ));
    assert_eq!(key, "weight_ih_l0_reverse");

    // bias=false but biases present.
    let (key, msg) = param_error(TorchRecurrent::from_tensors(
        &sd,
        TorchConfig {
            bias: false,
            ..cfg.clone()
        },
    ));
    assert!(key.starts_with("bias_"), "{key}");
    assert!(msg.contains("bias = false"), "{msg}");

    // weight_hr_l0 makes it an LSTM with projections: weight_hh must then be [4·H, P].
    let mut m = sd.clone();
    m.insert("weight_hr_l0".into(), ArrayD::zeros(IxDyn(&[3, 5])));
    let (key, msg) = param_error(TorchRecurrent::from_tensors(&m, cfg.clone()));
    assert_eq!(key, "weight_hh_l0");
    assert!(
        msg.contains("expected shape [20, 3]") && msg.contains("proj_size 3"),
        "{msg}"
    );
    // proj_size must be below hidden_size, as nn.LSTM requires.
    let mut m = sd.clone();
    m.insert("weight_hr_l0".into(), ArrayD::zeros(IxDyn(&[5, 5])));
    let (key, msg) = param_error(TorchRecurrent::from_tensors(&m, cfg.clone()));
    assert_eq!(key, "weight_hr_l0");
    assert!(msg.contains("0 < proj_size < hidden_size"), "{msg}");
    // A projection on a later layer only.
    let mut m = sd.clone();
    m.insert("weight_hr_l1".into(), ArrayD::zeros(IxDyn(&[3, 5])));
    let (key, msg) = param_error(TorchRecurrent::from_tensors(&m, cfg.clone()));
    assert_eq!(key, "weight_hr_l1");
    assert!(msg.contains("weight_hr_l0 is missing"), "{msg}");
    // Projections on another module than nn.LSTM.
    let gru = state_dict_f32(&root().join("gru_l1"));
    let mut m = gru.clone();
    m.insert("weight_hr_l0".into(), ArrayD::zeros(IxDyn(&[3, 5])));
    let (key, msg) = param_error(TorchRecurrent::from_tensors(
        &m,
        TorchConfig::new(TorchKind::Gru),
    ));
    assert_eq!(key, "weight_hr_l0");
    assert!(msg.contains("nn.LSTM only"), "{msg}");
}

/// An LSTM with projections: a missing weight_hr of a later layer is named, and h0 must be
/// proj_size wide while c0 stays hidden_size wide.
#[test]
fn projections_are_checked() {
    let dir = root().join("lstm_proj_l2_bi_bf");
    let cfg = config(&meta(&dir));
    let sd = state_dict_f32(&dir);
    let mut m = sd.clone();
    m.remove("weight_hr_l1_reverse");
    let (key, msg) = param_error(TorchRecurrent::from_tensors(&m, cfg.clone()));
    assert_eq!(key, "weight_hr_l1_reverse");
    assert!(msg.starts_with("missing"), "{msg}");

    let lstm = TorchRecurrent::from_tensors(&sd, cfg).unwrap();
    assert_eq!((lstm.hidden_size(), lstm.proj_size()), (5, Some(3)));
    let x = Array3::<f32>::zeros((2, 3, 4)); // batch_first: [batch, seq, input]
    let out = lstm.forward(x.view(), None, None).unwrap();
    assert_eq!(out.output.dim(), (2, 3, 6));
    assert_eq!(out.h_n.dim(), (4, 2, 3));
    assert_eq!(out.c_n.as_ref().unwrap().dim(), (4, 2, 5));
    let wrong_h0 = Array3::<f32>::zeros((4, 2, 5));
    match lstm.forward(x.view(), Some(wrong_h0.view()), None) {
        Err(Error::Input { name, message }) => {
            assert_eq!(name, "h0");
            assert!(
                message.contains("[4, 2, 3]") && message.contains("proj_size"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn prefix_is_suggested_and_other_keys_ignored() {
    let dir = root().join("gru_l2_prefix");
    let cfg = TorchConfig {
        num_layers: 2,
        ..TorchConfig::new(TorchKind::Gru)
    };
    let (key, msg) = param_error(TorchRecurrent::from_safetensors(
        dir.join("state_dict.safetensors"),
        cfg.clone(),
    ));
    assert_eq!(key, "weight_hh_l0");
    assert!(msg.contains("'encoder.'"), "{msg}");
    let (key, msg) = param_error(TorchRecurrent::from_npz(
        dir.join("state_dict.npz"),
        cfg.clone(),
    ));
    assert_eq!(key, "weight_hh_l0");
    assert!(msg.contains("'encoder.'"), "{msg}");
    // With the prefix, head.weight / head.bias are ignored.
    let m = TorchRecurrent::<f32>::from_npz(
        dir.join("state_dict.npz"),
        TorchConfig {
            prefix: "encoder.".into(),
            ..cfg
        },
    )
    .unwrap();
    assert_eq!((m.input_size(), m.hidden_size()), (4, 5));
    assert_eq!(m.layers()[0].spec().name, "encoder.l0");
}

#[test]
fn forward_checks_its_inputs_and_defaults_states_to_zero() {
    let (sd, cfg) = lstm_l2_state();
    let m = TorchRecurrent::from_tensors(&sd, cfg).unwrap();
    let x = Array3::<f32>::from_shape_fn((3, 2, 4), |(t, b, i)| {
        (t as f32 - b as f32 * 0.5 + i as f32 * 0.25).sin()
    });
    let zeros = Array3::<f32>::zeros((2, 2, 5));
    let implicit = m.forward(x.view(), None, None).unwrap();
    let explicit = m
        .forward(x.view(), Some(zeros.view()), Some(zeros.view()))
        .unwrap();
    assert_eq!(implicit, explicit);

    let input_err = |r: Result<TorchOutput<f32>, Error>| match r {
        Err(Error::Input { name, message }) => (name, message),
        other => panic!("expected an input error, got {other:?}"),
    };
    let (name, msg) = input_err(m.forward(Array3::<f32>::zeros((3, 2, 6)).view(), None, None));
    assert_eq!(name, "input");
    assert!(
        msg.contains("input_size 4") && msg.contains("[3, 2, 6]"),
        "{msg}"
    );
    let (name, msg) =
        input_err(m.forward(x.view(), Some(Array3::<f32>::zeros((1, 2, 5)).view()), None));
    assert_eq!(name, "h0");
    assert!(
        msg.contains("expected shape [2, 2, 5]") && msg.contains("found [1, 2, 5]"),
        "{msg}"
    );

    let gru = TorchRecurrent::<f32>::from_npz(
        root().join("gru_l1/state_dict.npz"),
        TorchConfig::new(TorchKind::Gru),
    )
    .unwrap();
    let c0 = Array3::<f32>::zeros((1, 2, 5));
    let (name, _) = input_err(gru.forward(x.view(), None, Some(c0.view())));
    assert_eq!(name, "c0");
    assert!(gru.forward(x.view(), None, None).unwrap().c_n.is_none());
}

#[test]
fn corrupt_files_are_io_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.safetensors");
    std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ").unwrap();
    match TorchRecurrent::<f32>::from_safetensors(&path, TorchConfig::new(TorchKind::Lstm)) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("bad.safetensors"), "{e}"),
        other => panic!("{other:?}"),
    }
    match TorchRecurrent::<f32>::from_npz(
        tmp.path().join("absent.npz"),
        TorchConfig::new(TorchKind::Lstm),
    ) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("absent.npz"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn float64_weights_run_in_float32_and_back() {
    // The f64 fixture's weights, converted on load, in f32: close to PyTorch's f64 numbers.
    let dir = root().join("lstm_l1_f64");
    let m = TorchRecurrent::<f32>::from_safetensors(
        dir.join("state_dict.safetensors"),
        TorchConfig::new(TorchKind::Lstm),
    )
    .unwrap();
    let inputs = numbered(&dir, "input");
    let f32s: Vec<Array3<f32>> = inputs
        .iter()
        .map(|t| {
            to_f64(t)
                .mapv(|v| v as f32)
                .into_dimensionality::<Ix3>()
                .unwrap()
        })
        .collect();
    let out = m
        .forward(f32s[0].view(), Some(f32s[1].view()), Some(f32s[2].view()))
        .unwrap();
    let expected = numbered(&dir, "expected");
    compare(
        "f64 weights in f32",
        &arr_f64(&out.output),
        &to_f64(&expected[0]),
        RTOL,
        ATOL,
    );
}

#[test]
fn nonlinearity_is_honoured() {
    // The relu fixture run as tanh must disagree with PyTorch: the activation is really used.
    let dir = root().join("rnn_relu_l2_bi");
    let mut cfg = config(&meta(&dir));
    assert_eq!(
        cfg.kind,
        TorchKind::Rnn {
            nonlinearity: Nonlinearity::Relu
        }
    );
    cfg.kind = TorchKind::Rnn {
        nonlinearity: Nonlinearity::Tanh,
    };
    let m = TorchRecurrent::<f32>::from_npz(dir.join("state_dict.npz"), cfg).unwrap();
    let inputs = numbered(&dir, "input");
    let out = m
        .forward(
            array3::<f32>(&inputs[0]).view(),
            Some(array3::<f32>(&inputs[1]).view()),
            None,
        )
        .unwrap();
    let want = to_f64(&numbered(&dir, "expected")[0]);
    let worst = arr_f64(&out.output)
        .iter()
        .zip(want.iter())
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    assert!(worst > 0.1, "{worst}");
}

#[test]
fn half_precision_safetensors_load() {
    // lstm_l2's weights stored as float16 and bfloat16 (as `model.half()` / `.bfloat16()` would
    // save them), loaded into f32: the numbers stay within those formats' precision.
    use safetensors::{tensor::TensorView, Dtype};
    let dir = root().join("lstm_l2");
    let (sd, cfg) = lstm_l2_state();
    let inputs: Vec<Array3<f32>> = numbered(&dir, "input").iter().map(array3::<f32>).collect();
    let want = to_f64(&numbered(&dir, "expected")[0]);
    let tmp = tempfile::tempdir().unwrap();
    for (dtype, encode, tol) in [
        (
            Dtype::F16,
            (|v: f32| tract_hir::internal::f16::from_f32(v).to_bits()) as fn(f32) -> u16,
            1e-3,
        ),
        (Dtype::BF16, |v: f32| (v.to_bits() >> 16) as u16, 5e-3),
    ] {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = sd
            .iter()
            .map(|(k, a)| {
                (
                    k.clone(),
                    a.shape().to_vec(),
                    a.iter().flat_map(|&v| encode(v).to_le_bytes()).collect(),
                )
            })
            .collect();
        let views = bytes.iter().map(|(k, shape, data)| {
            (
                k.as_str(),
                TensorView::new(dtype, shape.clone(), data).unwrap(),
            )
        });
        let path = tmp.path().join(format!("{dtype:?}.safetensors"));
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        let m = TorchRecurrent::<f32>::from_safetensors(&path, cfg.clone()).unwrap();
        let out = m
            .forward(
                inputs[0].view(),
                Some(inputs[1].view()),
                Some(inputs[2].view()),
            )
            .unwrap();
        let worst = compare(
            &format!("{dtype:?} weights"),
            &arr_f64(&out.output),
            &want,
            0.0,
            tol,
        );
        assert!(
            worst > 0.0,
            "{dtype:?}: the weights were rounded, the outputs must move"
        );
        eprintln!("{dtype:?} weights: max abs err vs PyTorch f32 {worst:.2e}");
    }
}

/// `np.savez_compressed` state dicts (deflated members) load like `np.savez` ones: the
/// fixture's archive rewritten with deflate by the zip crate gives the same module.
#[test]
fn compressed_npz_state_dict_loads() {
    use std::io::Write;
    let dir = root().join("lstm_l2_bi_nobias");
    let cfg = config(&meta(&dir));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state_dict_compressed.npz");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (key, t) in read_npz(dir.join("state_dict.npz")).unwrap() {
        zip.start_file(format!("{key}.npy"), options).unwrap();
        zip.write_all(&rnn_run::npy::npy_bytes(&t).unwrap())
            .unwrap();
    }
    zip.finish().unwrap();
    let stored = TorchRecurrent::<f32>::from_npz(dir.join("state_dict.npz"), cfg.clone()).unwrap();
    let deflated = TorchRecurrent::<f32>::from_npz(&path, cfg).unwrap();
    let x = Array3::<f32>::from_shape_fn((3, 2, 4), |(t, b, i)| (t + 2 * b + 3 * i) as f32 * 0.1);
    assert_eq!(
        stored.forward(x.view(), None, None).unwrap(),
        deflated.forward(x.view(), None, None).unwrap()
    );
}
