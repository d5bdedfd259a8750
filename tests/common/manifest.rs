//! The `manifest.json` fixture folders (`fixtures/realworld`, `fixtures/graphs`,
//! `fixtures/streaming`): models, their calls (inputs and onnxruntime's outputs as `.npz`
//! keyed by name), states fed back from one call to the next, and tolerances.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rnn_run::npy::read_npz;
use rnn_run::{Model, Tensor};

pub struct Folder {
    pub dir: PathBuf,
    pub json: serde_json::Value,
}

/// A fixture folder under `fixtures/`.
pub fn folder(name: &str) -> Folder {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let text = std::fs::read_to_string(dir.join("manifest.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    Folder {
        dir,
        json: serde_json::from_str(&text).expect("manifest.json is JSON"),
    }
}

impl Folder {
    /// The models that have a file (some record only why the export failed).
    pub fn models(&self) -> Vec<&serde_json::Value> {
        self.json["models"]
            .as_array()
            .expect("models")
            .iter()
            .filter(|m| m["file"].is_string())
            .collect()
    }

    pub fn path(&self, relative: &serde_json::Value) -> PathBuf {
        self.dir.join(relative.as_str().expect("a path"))
    }

    /// Inputs in the model's input order, from an npz keyed by name.
    pub fn inputs(&self, model: &Model, relative: &serde_json::Value) -> Vec<Tensor> {
        let mut by_name = npz(&self.path(relative));
        model
            .inputs()
            .iter()
            .map(|i| {
                by_name
                    .remove(&i.name)
                    .unwrap_or_else(|| panic!("{relative}: no input '{}'", i.name))
            })
            .collect()
    }

    /// Expected outputs in the model's output order.
    pub fn expected(&self, model: &Model, relative: &serde_json::Value) -> Vec<Tensor> {
        let mut by_name = npz(&self.path(relative));
        model
            .outputs()
            .iter()
            .map(|o| {
                by_name
                    .remove(&o.name)
                    .unwrap_or_else(|| panic!("{relative}: no output '{}'", o.name))
            })
            .collect()
    }
}

pub fn npz(path: &Path) -> HashMap<String, Tensor> {
    read_npz(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// Largest abs error when every element passes `|got - want| <= atol + rtol·|want|` and the
/// shapes agree; otherwise what differs.
pub fn compare(got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Result<f64, String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?}, expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    if got.datum_type() != want.datum_type() {
        return Err(format!(
            "element type {:?}, expected {:?}",
            got.datum_type(),
            want.datum_type()
        ));
    }
    let g = got.cast_to::<f64>().map_err(|e| e.to_string())?;
    let w = want.cast_to::<f64>().map_err(|e| e.to_string())?;
    let g = g.to_plain_array_view::<f64>().unwrap();
    let w = w.to_plain_array_view::<f64>().unwrap();
    let mut worst = 0.0f64;
    for (i, (a, b)) in g.iter().zip(w.iter()).enumerate() {
        let err = (a - b).abs();
        if a.is_nan() != b.is_nan() || err > atol + rtol * b.abs() {
            return Err(format!(
                "element {i}: got {a}, expected {b} (abs err {err:e})"
            ));
        }
        if err.is_finite() {
            worst = worst.max(err);
        }
    }
    Ok(worst)
}

/// Runs every case of `model_json` through `model.run`, feeding states back between calls
/// from its own outputs; returns (calls run, largest abs error) or the failures.
pub fn run_cases(
    folder: &Folder,
    model_json: &serde_json::Value,
    model: &Model,
) -> Result<(usize, f64), Vec<String>> {
    let name = model_json["name"].as_str().unwrap_or("?");
    let mut failures = vec![];
    let mut calls_run = 0;
    let mut worst = 0.0f64;
    for case in model_json["cases"].as_array().expect("cases") {
        let case_name = case["name"].as_str().unwrap_or("?");
        let (rtol, atol) = (
            case["rtol"].as_f64().unwrap(),
            case["atol"].as_f64().unwrap(),
        );
        let feed_back: Vec<(usize, usize)> = case["feed_back"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(input, output)| {
                        let i = model.inputs().iter().position(|x| x.name == *input);
                        let o = model
                            .outputs()
                            .iter()
                            .position(|x| Some(x.name.as_str()) == output.as_str());
                        (i.expect("fed input"), o.expect("feeding output"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut previous: Option<Vec<Tensor>> = None;
        for (k, call) in case["calls"].as_array().expect("calls").iter().enumerate() {
            let mut inputs = folder.inputs(model, &call["inputs"]);
            if let Some(prev) = &previous {
                for &(i, o) in &feed_back {
                    inputs[i] = prev[o].clone();
                }
            }
            let outputs = match model.run(inputs) {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{name} [{case_name}] call {k}: {e}"));
                    break;
                }
            };
            calls_run += 1;
            let expected = folder.expected(model, &call["expected"]);
            for ((got, want), info) in outputs.iter().zip(&expected).zip(model.outputs()) {
                match compare(got, want, rtol, atol) {
                    Ok(e) => worst = worst.max(e),
                    Err(m) => failures.push(format!(
                        "{name} [{case_name}] call {k} output '{}': {m}",
                        info.name
                    )),
                }
            }
            previous = Some(outputs);
        }
    }
    if failures.is_empty() {
        Ok((calls_run, worst))
    } else {
        Err(failures)
    }
}
