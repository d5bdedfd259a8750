//! Every committed fixture (PyTorch exports and the ONNX backend node tests) runs through the
//! library and matches its reference outputs within the tolerance its `meta.json` records.

use std::path::{Path, PathBuf};

mod common;

use common::manifest::compare;
use rnn_run::npy::read_npy;
use rnn_run::{Model, Tensor};

fn fixture_dirs(group: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(group);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    dirs
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..)
        .map(|i| dir.join(format!("{prefix}_{i}.npy")))
        .take_while(|p| p.exists())
        .collect()
}

struct Meta {
    rtol: f64,
    atol: f64,
    expect_error: bool,
}

fn meta(dir: &Path) -> Meta {
    let text = std::fs::read_to_string(dir.join("meta.json")).unwrap_or_else(|_| "{}".into());
    let v: serde_json::Value = serde_json::from_str(&text).expect("meta.json is JSON");
    Meta {
        rtol: v["rtol"].as_f64().unwrap_or(1e-4),
        atol: v["atol"].as_f64().unwrap_or(1e-5),
        expect_error: v["expect_error"].as_bool().unwrap_or(false),
    }
}

/// Runs every fixture of a group; returns (cases run, largest abs error).
fn run_group(group: &str, min_cases: usize) -> (usize, f64) {
    let dirs = fixture_dirs(group);
    let mut failures = vec![];
    let mut worst = 0.0f64;
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let meta = meta(dir);
        let model = Model::load(dir.join("model.onnx"));
        if meta.expect_error {
            match &model {
                Ok(_) => failures.push(format!("{name}: loaded, but a clear refusal was expected")),
                Err(e) => {
                    let msg = e.to_string();
                    eprintln!("{name}: refused: {msg}");
                    // The message must name the node's input and the shapes that disagree.
                    if !(msg.contains("initial_")
                        && msg.contains("expected")
                        && msg.contains("R is"))
                    {
                        failures.push(format!("{name}: refusal does not name the shapes: {msg}"));
                    }
                }
            }
            continue;
        }
        let model = match model {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: load: {e}"));
                continue;
            }
        };
        for (inputs, expected) in [("input", "expected"), ("run_input", "run_expected")] {
            let ins = numbered(dir, inputs);
            if ins.is_empty() {
                continue;
            }
            let ins: Vec<Tensor> = ins.iter().map(|p| read_npy(p).unwrap()).collect();
            let outs = match model.run(ins) {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{name} ({inputs}): run: {e}"));
                    continue;
                }
            };
            let refs = numbered(dir, expected);
            assert_eq!(refs.len(), outs.len(), "{name}: output count");
            for (k, (got, want)) in outs.iter().zip(&refs).enumerate() {
                let want = read_npy(want).unwrap();
                match compare(got, &want, meta.rtol, meta.atol) {
                    Ok(e) => worst = worst.max(e),
                    Err(msg) => failures.push(format!("{name} ({inputs}) output {k}: {msg}")),
                }
            }
        }
    }
    eprintln!(
        "{group}: {} fixtures, largest abs error {worst:e}",
        dirs.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        dirs.len() >= min_cases,
        "{group}: only {} fixtures found",
        dirs.len()
    );
    (dirs.len(), worst)
}

#[test]
fn onnx_backend_node_tests() {
    run_group("onnx_node", 18);
}

#[test]
fn pytorch_tutorial_exports() {
    run_group("tutorial", 18);
}

#[test]
fn pytorch_export_matrix() {
    run_group("matrix", 100);
}
