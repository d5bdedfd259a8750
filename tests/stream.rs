//! Streaming: feeding a sequence chunk by chunk gives the same outputs as one whole run, and
//! models that cannot stream are refused with the node named.

mod common;

use std::path::{Path, PathBuf};

use common::manifest::{folder, Folder};
use common::streaming::{chunked_vs_whole, max_abs_diff, run_schedule};
use rnn_run::npy::read_npy;
use rnn_run::{Error, Model, StreamOutput, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn inputs(dir: &Path, prefix: &str) -> Vec<Tensor> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.npy")))
        .take_while(|p| p.exists())
        .map(|p| read_npy(&p).unwrap())
        .collect()
}

#[test]
fn chunked_runs_equal_whole_runs() {
    let cases = [
        ("tutorial/lstm_legacy_long", "input"),
        ("tutorial/gru_legacy_long", "input"),
        ("tutorial/rnn_legacy_long", "input"),
        ("tutorial/lstm_dynamo_long", "input"),
        ("tutorial/gru_dynamo_long", "input"),
        ("matrix/lstm_l3_bf_legacy_op17", "run_input"),
        ("matrix/gru_l3_bf_dynamo", "run_input"),
        ("matrix/rnn_tanh_l3_bf_legacy_op17", "run_input"),
        ("matrix/lstm_l1_nobias_noinit_legacy_op17", "run_input"),
        ("matrix/lstm_on_gru_legacy_op17", "run_input"),
        ("matrix/embed_lstm_linear_legacy_op17", "run_input"),
        ("matrix/lstm_l2_static_legacy_op14", "input"),
        // dynamo without dynamic_shapes: the length is written into Reshape targets.
        ("matrix/lstm_l2_static_dynamo", "input"),
        ("matrix/gru_l2_static_dynamo", "input"),
        ("matrix/gru_long_h192_dynamo", "input"),
    ];
    let mut worst = 0.0f64;
    for (name, prefix) in cases {
        let dir = fixture(name);
        let model = Model::load(dir.join("model.onnx")).unwrap();
        let d = chunked_vs_whole(&model, &inputs(&dir, prefix))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(d <= 1e-6, "{name}: chunked differs from whole by {d:e}");
        worst = worst.max(d);
    }
    eprintln!(
        "{} models, chunks 1/3/7/full/uneven: largest difference {worst:e}",
        cases.len()
    );
}

/// The streaming fixtures (`fixtures/streaming/`): PyTorch modules exported by both
/// exporters. Those marked `exact` stream under every schedule, with the time inputs and
/// per-step/final outputs the manifest names, and match onnxruntime's whole run; those
/// marked `refuse` are refused, naming the op that mixes time steps.
#[test]
fn streaming_fixtures_stream_exactly_or_are_refused_by_name() {
    let folder = folder("streaming");
    let (mut exact, mut refused) = (0, 0);
    let mut failures = vec![];
    for m in folder.models() {
        let name = m["name"].as_str().unwrap();
        let model = Model::load(folder.path(&m["file"])).unwrap();
        let case = &m["cases"][0];
        let call = &case["calls"][0];
        let ins = folder.inputs(&model, &call["inputs"]);
        if m["stream"] == "exact" {
            match check_exact(&folder, m, &model, &ins) {
                Ok(()) => exact += 1,
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        } else {
            let module = m["module"].as_str().unwrap();
            let named = refusal_names(module);
            match model.run_chunked(ins, 5) {
                Err(Error::NotStreamable(why)) if named.iter().all(|n| why.contains(n)) => {
                    refused += 1
                }
                Err(e) => failures.push(format!("{name}: refused without naming {named:?}: {e}")),
                Ok(_) => failures.push(format!("{name}: streamed, must be refused")),
            }
        }
    }
    eprintln!("streaming fixtures: {exact} streamed exactly, {refused} refused by name");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        exact >= 12 && refused >= 14,
        "{exact} exact, {refused} refused"
    );
}

/// What a refusal of each refused module must say: the op, and what it does to time.
fn refusal_names(module: &str) -> &'static [&'static str] {
    match module {
        "lstm_mean_fc" => &["Reduce<Sum>", "sums (or averages) over the time axis"],
        "lstm_max" => &["Reduce<Max>", "maximum over the time axis"],
        "lstm_first_step" | "lstm_step4" => &["(Gather)", "reads given steps of the time axis"],
        "gru_two_inputs_lookahead" => &["(Conv)", "looks ahead along the time axis"],
        "seq2seq_gru" => &[
            "GRU",
            "starts from a state computed after the chunk's last step",
        ],
        "lstm_softmax_pool" => &["(Softmax)", "softmax across steps"],
        "lstm_cumsum" => &["(CumSum)", "not known to keep time steps apart"],
        other => panic!("no expected refusal for {other}"),
    }
}

fn check_exact(
    folder: &Folder,
    m: &serde_json::Value,
    model: &Model,
    ins: &[Tensor],
) -> Result<(), String> {
    let axes = model.time_axes().map_err(|e| e.to_string())?;
    for t in m["time_inputs"].as_array().unwrap() {
        let ix = model
            .inputs()
            .iter()
            .position(|i| i.name == t["name"])
            .unwrap();
        if axes[ix] != t["axis"].as_u64().map(|a| a as usize) {
            return Err(format!("time axes {axes:?}, manifest {t}"));
        }
    }
    let d = chunked_vs_whole(model, ins).map_err(|e| e.to_string())?;
    if d > 1e-5 {
        return Err(format!("chunked differs from whole by {d:e}"));
    }
    // Against onnxruntime, chunk by chunk (one step at a time).
    let got = run_schedule(model, ins, &[1], None).map_err(|e| e.to_string())?;
    let case = &m["cases"][0];
    let want = folder.expected(model, &case["calls"][0]["expected"]);
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        common::manifest::compare(g, w, 1e-4, 1e-5).map_err(|e| format!("output {k}: {e}"))?;
    }
    // The outputs' kinds, as the manifest says.
    let start: Vec<Tensor> = ins
        .iter()
        .zip(&axes)
        .filter(|(_, a)| a.is_none())
        .map(|(t, _)| t.clone())
        .collect();
    let mut stream = model.stream_from(start).map_err(|e| e.to_string())?;
    let chunk: Vec<Tensor> = ins
        .iter()
        .zip(&axes)
        .filter_map(|(t, a)| a.map(|a| t.slice(a, 0, 2).unwrap()))
        .collect();
    stream.push(chunk).map_err(|e| e.to_string())?;
    for (info, kind) in model.outputs().iter().zip(stream.outputs()) {
        let per_step = m["per_step_outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == info.name.as_str());
        let expected = match per_step {
            Some(o) => StreamOutput::PerStep {
                axis: o["axis"].as_u64().unwrap() as usize,
            },
            None => StreamOutput::Final,
        };
        if *kind != expected {
            return Err(format!(
                "output '{}': {kind:?}, manifest {expected:?}",
                info.name
            ));
        }
    }
    Ok(())
}

fn refusal(name: &str) -> String {
    let dir = fixture(name);
    let model = Model::load(dir.join("model.onnx")).unwrap();
    let prefix = if dir.join("run_input_0.npy").exists() {
        "run_input"
    } else {
        "input"
    };
    match model.run_chunked(inputs(&dir, prefix), 3) {
        Err(Error::NotStreamable(m)) => m,
        Err(e) => panic!("{name}: wrong error kind: {e}"),
        Ok(_) => panic!("{name}: streaming should be refused"),
    }
}

#[test]
fn bidirectional_models_are_refused_naming_the_node() {
    let m = refusal("matrix/lstm_l1_bi_legacy_op17");
    assert!(
        m.contains("LSTM") && m.contains("bidirectional") && m.contains("node '"),
        "{m}"
    );
}

#[test]
fn sequence_lens_models_are_refused() {
    let m = refusal("matrix/gru_packed_legacy_op17");
    assert!(m.contains("sequence_lens"), "{m}");
}

#[test]
fn unrolled_models_are_refused() {
    let m = refusal("tutorial/rnn_dynamo");
    assert!(m.contains("no RNN, LSTM or GRU node"), "{m}");
}

/// The stream-start inputs are given once, when the stream starts; a push takes the inputs
/// with a time axis only, and one that passes the others is refused, not silently ignored.
#[test]
fn initial_states_are_given_at_the_start_and_never_ignored() {
    let dir = fixture("tutorial/lstm_legacy_long");
    let model = Model::load(dir.join("model.onnx")).unwrap();
    let ins = inputs(&dir, "input");
    assert_eq!(model.time_axes().unwrap(), vec![Some(0), None, None]);
    match model.stream() {
        Err(Error::Input { message, .. }) => {
            assert!(message.contains("h0, c0"), "{message}")
        }
        other => panic!("a stream without its initial states must be refused: {other:?}"),
    }
    let mut stream = model.stream_from(ins[1..].to_vec()).unwrap();
    assert_eq!(stream.start_inputs(), vec!["h0", "c0"]);
    match stream.push(ins.clone()) {
        Err(Error::Input { message, .. }) => {
            assert!(
                message.contains("given when the stream started"),
                "{message}"
            )
        }
        other => panic!("a push with the initial states must be refused: {other:?}"),
    }
    // Other initial states give other outputs: they are used.
    let mut doubled: Vec<Tensor> = ins[1..].to_vec();
    for t in &mut doubled {
        *t = t
            .cast_to::<f32>()
            .unwrap()
            .to_plain_array_view::<f32>()
            .unwrap()
            .mapv(|v| v * 2.0 + 0.5)
            .into();
    }
    let mut other = model.stream_from(doubled).unwrap();
    let a = stream.push(vec![ins[0].clone()]).unwrap();
    let b = other.push(vec![ins[0].clone()]).unwrap();
    assert!(max_abs_diff(&a[0], &b[0]) > 1e-3);
}

#[test]
fn reset_starts_over() {
    let dir = fixture("tutorial/lstm_legacy_long");
    let model = Model::load(dir.join("model.onnx")).unwrap();
    let ins = inputs(&dir, "input");
    let mut stream = model.stream_from(ins[1..].to_vec()).unwrap();
    let x = vec![ins[0].clone()];
    let first = stream.push(x.clone()).unwrap();
    let second = stream.push(x.clone()).unwrap();
    assert!(
        max_abs_diff(&first[0], &second[0]) > 1e-3,
        "state must carry between pushes"
    );
    stream.reset().unwrap();
    let again = stream.push(x).unwrap();
    assert_eq!(max_abs_diff(&first[0], &again[0]), 0.0);
}

/// A model exported with a fixed sequence length streams chunks of any length, and a chunk
/// whose other dimensions change within a stream is refused.
#[test]
fn chunks_of_any_length_fit_a_fixed_length_export() {
    let dir = fixture("matrix/lstm_l2_static_dynamo");
    let model = Model::load(dir.join("model.onnx")).unwrap();
    let ins = inputs(&dir, "input");
    let axes = model.time_axes().unwrap();
    let (ix, axis) = axes
        .iter()
        .enumerate()
        .find_map(|(i, a)| a.map(|a| (i, a)))
        .unwrap();
    let start: Vec<Tensor> = ins
        .iter()
        .zip(&axes)
        .filter(|(_, a)| a.is_none())
        .map(|(t, _)| t.clone())
        .collect();
    let mut stream = model.stream_from(start).unwrap();
    let long =
        Tensor::stack_tensors(axis, &[ins[ix].clone(), ins[ix].clone(), ins[ix].clone()]).unwrap();
    let out = stream.push(vec![long]).unwrap();
    assert!(out[0].shape().contains(&(3 * ins[ix].shape()[axis])));
}

#[test]
fn a_chunk_cannot_change_the_batch_within_a_stream() {
    let dir = fixture("matrix/lstm_l1_nobias_noinit_legacy_op17");
    let model = Model::load(dir.join("model.onnx")).unwrap();
    let x = inputs(&dir, "run_input").remove(0);
    let axis = model.time_axes().unwrap()[0].unwrap();
    let batch_axis = if axis == 0 { 1 } else { 0 };
    let mut stream = model.stream().unwrap();
    stream.push(vec![x.slice(axis, 0, 2).unwrap()]).unwrap();
    let other_batch = Tensor::stack_tensors(batch_axis, &[x.clone(), x]).unwrap();
    match stream.push(vec![other_batch.slice(axis, 0, 2).unwrap()]) {
        Err(Error::Input { message, .. }) => assert!(message.contains("first chunk"), "{message}"),
        other => panic!("{other:?}"),
    }
}
