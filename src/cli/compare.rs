//! `--expect`: finding the reference arrays and comparing outputs with them.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use rnn_run::{npy, IoInfo, Tensor};

use super::format::{fmt_exact, fmt_g, fmt_index, with_values_f64};

/// A reference array and where it came from.
pub struct Reference {
    pub tensor: Tensor,
    pub source: String,
}

/// Finds one reference per output: files in output order, a directory holding
/// `<safe name>.npy` or `expected_<i>.npy`, or one `.npz` keyed by output name.
pub fn load_references(
    refs: &[PathBuf],
    outputs: &[IoInfo],
    safe: &[String],
) -> Result<Vec<Reference>> {
    let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
    let read = |path: &Path| -> Result<Reference> {
        let tensor = npy::read_npy(path).map_err(|e| anyhow!("cannot read reference {e}"))?;
        Ok(Reference {
            tensor,
            source: path.display().to_string(),
        })
    };
    if let [one] = refs {
        if one.is_dir() {
            return names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let candidates = [format!("{}.npy", safe[i]), format!("expected_{i}.npy")];
                    match candidates.iter().map(|c| one.join(c)).find(|p| p.is_file()) {
                        Some(p) => read(&p),
                        None => bail!(
                            "no reference for output '{name}' in {} (looked for {})",
                            one.display(),
                            candidates.join(" and ")
                        ),
                    }
                })
                .collect();
        }
        if one
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npz"))
        {
            let arrays =
                npy::read_npz(one).map_err(|e| anyhow!("cannot read references from {e}"))?;
            let keys: Vec<&str> = arrays.iter().map(|(k, _)| k.as_str()).collect();
            return names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let wanted = [
                        name.to_string(),
                        safe[i].clone(),
                        format!("expected_{i}"),
                        format!("arr_{i}"),
                    ];
                    let found = wanted
                        .iter()
                        .find_map(|w| arrays.iter().find(|(k, _)| k == w));
                    match found {
                        Some((key, t)) => Ok(Reference {
                            tensor: t.clone(),
                            source: format!("{}[{key}]", one.display()),
                        }),
                        None => bail!(
                            "{} has no reference for output '{name}' (it holds {})",
                            one.display(),
                            if keys.is_empty() {
                                "no arrays".to_string()
                            } else {
                                keys.iter()
                                    .map(|k| format!("'{k}'"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        ),
                    }
                })
                .collect();
        }
    }
    if refs.len() != names.len() {
        bail!(
            "--expect got {} file{} but the model has {} output{} ({}); give one .npy per output \
             in output order, a directory, or one .npz",
            refs.len(),
            if refs.len() == 1 { "" } else { "s" },
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        );
    }
    refs.iter().map(|p| read(p)).collect()
}

/// The element that differs most, relative to the tolerance.
pub struct Worst {
    pub index: Vec<usize>,
    pub got: f64,
    pub expected: f64,
}

/// How one output compares with its reference.
pub struct Comparison {
    /// Set when the comparison could not be made element-wise (shapes differ).
    pub error: Option<String>,
    pub max_abs: Option<f64>,
    pub max_rel: Option<f64>,
    pub mismatched: usize,
    pub total: usize,
    pub worst: Option<Worst>,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.mismatched == 0
    }
}

/// Compares in f64: an element passes when |got - expected| <= atol + rtol * |expected|;
/// NaN equals NaN at the same place, infinities must match exactly.
pub fn compare(got: &Tensor, expected: &Tensor, rtol: f64, atol: f64) -> Result<Comparison> {
    if got.shape() != expected.shape() {
        return Ok(Comparison {
            error: Some(format!(
                "shape mismatch: got {}, expected {}",
                fmt_index(got.shape()),
                fmt_index(expected.shape())
            )),
            max_abs: None,
            max_rel: None,
            mismatched: 0,
            total: got.len(),
            worst: None,
        });
    }
    let found = with_values_f64(got, |a| {
        with_values_f64(expected, |b| differences(a, b, rtol, atol))
            .ok_or_else(|| anyhow!("cannot compare references of this element type"))
    })
    .ok_or_else(|| anyhow!("cannot compare outputs of this element type"))??;
    let (max_abs, max_rel, mismatched, worst) = found;
    let worst = worst.map(|(k, got_k, expected_k)| Worst {
        index: unravel(k, got.shape()),
        got: got_k,
        expected: expected_k,
    });
    Ok(Comparison {
        error: None,
        max_abs: Some(max_abs),
        max_rel: Some(max_rel),
        mismatched,
        total: got.len(),
        worst,
    })
}

/// Max abs and rel differences, the mismatch count, and the worst element (flat index, got,
/// expected), reading both value streams once.
#[allow(clippy::type_complexity)]
fn differences(
    a: &mut dyn Iterator<Item = f64>,
    b: &mut dyn Iterator<Item = f64>,
    rtol: f64,
    atol: f64,
) -> (f64, f64, usize, Option<(usize, f64, f64)>) {
    let mut max_abs = 0f64;
    let mut max_rel = 0f64;
    let mut mismatched = 0;
    // (badness, diff, flat index, got, expected); badness = diff / allowed, infinite for NaN
    // or inf mismatches.
    let mut worst: Option<(f64, f64, usize, f64, f64)> = None;
    for (k, (x, y)) in a.zip(b).enumerate() {
        let (diff, pass) = if x.is_nan() || y.is_nan() {
            if x.is_nan() && y.is_nan() {
                (0.0, true)
            } else {
                (f64::NAN, false)
            }
        } else if x == y {
            (0.0, true)
        } else {
            let diff = (x - y).abs();
            let pass = x.is_finite() && y.is_finite() && diff <= atol + rtol * y.abs();
            (diff, pass)
        };
        if !diff.is_nan() {
            max_abs = max_abs.max(diff);
            let rel = if diff == 0.0 { 0.0 } else { diff / y.abs() };
            max_rel = max_rel.max(rel);
        }
        if !pass {
            mismatched += 1;
        }
        let allowed = atol + rtol * y.abs();
        let badness = if diff.is_nan() || (!pass && diff.is_infinite()) {
            f64::INFINITY
        } else if allowed > 0.0 && allowed.is_finite() {
            diff / allowed
        } else if diff > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        let key = (badness, if diff.is_nan() { f64::INFINITY } else { diff });
        let better = match worst {
            None => true,
            Some((wb, wd, ..)) => key.0 > wb || (key.0 == wb && key.1 > wd),
        };
        if better {
            worst = Some((key.0, key.1, k, x, y));
        }
    }
    (
        max_abs,
        max_rel,
        mismatched,
        worst.map(|(_, _, k, x, y)| (k, x, y)),
    )
}

fn unravel(mut k: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &d) in index.iter_mut().zip(shape).rev() {
        if d > 0 {
            *slot = k % d;
            k /= d;
        }
    }
    index
}

impl Comparison {
    /// `largest error at [2, 0, 1]: got 0.51234, expected 0.5124`.
    pub fn worst_line(
        &self,
        got_dt: rnn_run::DatumType,
        exp_dt: rnn_run::DatumType,
    ) -> Option<String> {
        self.worst.as_ref().map(|w| {
            format!(
                "largest error at {}: got {}, expected {}",
                fmt_index(&w.index),
                fmt_exact(w.got, got_dt),
                fmt_exact(w.expected, exp_dt)
            )
        })
    }

    /// One line for people.
    pub fn describe(&self, rtol: f64, atol: f64) -> String {
        if let Some(e) = &self.error {
            return format!("FAIL, {e}");
        }
        let errs = format!(
            "max abs err {}, max rel err {}",
            fmt_g(self.max_abs.unwrap_or(f64::NAN), 3),
            fmt_g(self.max_rel.unwrap_or(f64::NAN), 3)
        );
        if self.ok() {
            format!("ok ({errs})")
        } else {
            format!(
                "FAIL, {} of {} values outside atol {} + rtol {} x |expected| ({errs})",
                self.mismatched,
                self.total,
                fmt_g(atol, 6),
                fmt_g(rtol, 6)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnn_run::Tensor;
    use tract_hir::internal::tract_ndarray::arr2;

    #[test]
    fn finds_worst_and_nan_rules() {
        let got = Tensor::from(arr2(&[[1.0f32, 2.0], [f32::NAN, 4.0]]));
        let exp = Tensor::from(arr2(&[[1.0f32, 2.5], [f32::NAN, 4.0]]));
        let c = compare(&got, &exp, 1e-4, 1e-5).unwrap();
        assert!(!c.ok());
        assert_eq!(c.mismatched, 1);
        assert_eq!(c.worst.as_ref().unwrap().index, [0, 1]);
        assert_eq!(c.max_abs, Some(0.5));

        let nan_one = Tensor::from(arr2(&[[1.0f32, 2.5], [0.0, 4.0]]));
        let c = compare(&got, &nan_one, 1.0, 1.0).unwrap();
        assert_eq!(c.mismatched, 1);
        assert_eq!(c.worst.as_ref().unwrap().index, [1, 0]);

        let c = compare(&exp, &exp, 0.0, 0.0).unwrap();
        assert!(c.ok());
        let inf = Tensor::from(arr2(&[[f32::INFINITY]]));
        let one = Tensor::from(arr2(&[[1.0f32]]));
        assert!(!compare(&one, &inf, 1.0, 1.0).unwrap().ok());
        assert!(compare(&inf, &inf, 0.0, 0.0).unwrap().ok());
        let other = Tensor::from(arr2(&[[1.0f32, 2.0]]));
        assert!(compare(&one, &other, 1.0, 1.0).unwrap().error.is_some());
    }

    #[test]
    fn unravels() {
        assert_eq!(unravel(5, &[2, 3]), [1, 2]);
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
    }
}
