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

/// One element of an output and its reference.
pub struct At {
    pub index: Vec<usize>,
    pub got: f64,
    pub expected: f64,
}

/// How one output compares with its reference.
pub struct Comparison {
    /// Set when the comparison could not be made element-wise (shapes differ).
    pub error: Option<String>,
    /// NaN when an element is NaN on one side only.
    pub max_abs: Option<f64>,
    /// NaN when an element is NaN on one side only.
    pub max_rel: Option<f64>,
    pub mismatched: usize,
    pub total: usize,
    /// The element furthest outside (or least inside) the tolerance: largest
    /// `|got - expected| / (atol + rtol·|expected|)`, NaN and infinity mismatches first.
    pub worst: Option<At>,
    /// The element with the largest absolute error (a one-sided NaN first).
    pub largest: Option<At>,
    /// NaN elements in the output, in the reference, and where only one side is NaN.
    pub nan: NanCounts,
}

/// How many elements are NaN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NanCounts {
    pub output: usize,
    pub reference: usize,
    /// NaN on one side only: each is a mismatch.
    pub one_sided: usize,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.mismatched == 0
    }
}

/// Compares in f64: an element passes when |got - expected| <= atol + rtol * |expected|;
/// NaN equals NaN at the same place (a NaN on one side only is a mismatch, and makes the max
/// errors NaN), infinities must match exactly.
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
            largest: None,
            nan: NanCounts::default(),
        });
    }
    let found = with_values_f64(got, |a| {
        with_values_f64(expected, |b| differences(a, b, rtol, atol))
            .ok_or_else(|| anyhow!("cannot compare references of this element type"))
    })
    .ok_or_else(|| anyhow!("cannot compare outputs of this element type"))??;
    let at = |(k, got_k, expected_k): (usize, f64, f64)| At {
        index: unravel(k, got.shape()),
        got: got_k,
        expected: expected_k,
    };
    Ok(Comparison {
        error: None,
        max_abs: Some(found.max_abs),
        max_rel: Some(found.max_rel),
        mismatched: found.mismatched,
        total: got.len(),
        worst: found.worst.map(at),
        largest: found.largest.map(at),
        nan: found.nan,
    })
}

/// What [`differences`] finds; elements as (flat index, got, expected).
struct Found {
    max_abs: f64,
    max_rel: f64,
    mismatched: usize,
    worst: Option<(usize, f64, f64)>,
    largest: Option<(usize, f64, f64)>,
    nan: NanCounts,
}

/// Max abs and rel differences, the mismatch count, the element worst relative to the
/// tolerance and the one with the largest absolute error, and the NaN counts, reading both
/// value streams once.
fn differences(
    a: &mut dyn Iterator<Item = f64>,
    b: &mut dyn Iterator<Item = f64>,
    rtol: f64,
    atol: f64,
) -> Found {
    let mut max_abs = 0f64;
    let mut max_rel = 0f64;
    let mut mismatched = 0;
    let mut nan = NanCounts::default();
    // (badness, diff, flat index, got, expected); badness = diff / allowed, infinite for NaN
    // or inf mismatches.
    let mut worst: Option<(f64, f64, usize, f64, f64)> = None;
    // (diff, flat index, got, expected); a one-sided NaN counts as an infinite diff.
    let mut largest: Option<(f64, usize, f64, f64)> = None;
    for (k, (x, y)) in a.zip(b).enumerate() {
        nan.output += x.is_nan() as usize;
        nan.reference += y.is_nan() as usize;
        let (diff, pass) = if x.is_nan() || y.is_nan() {
            if x.is_nan() && y.is_nan() {
                (0.0, true)
            } else {
                nan.one_sided += 1;
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
        let size = if diff.is_nan() { f64::INFINITY } else { diff };
        let key = (badness, size);
        let better = match worst {
            None => true,
            Some((wb, wd, ..)) => key.0 > wb || (key.0 == wb && key.1 > wd),
        };
        if better {
            worst = Some((key.0, key.1, k, x, y));
        }
        // Strictly larger: the first of equal errors is kept, and a one-sided NaN (infinite
        // size here) wins over any number, the first such NaN over later ones.
        if largest.is_none_or(|(ld, ..)| size > ld) {
            largest = Some((size, k, x, y));
        }
    }
    if nan.one_sided > 0 {
        max_abs = f64::NAN;
        max_rel = f64::NAN;
    }
    Found {
        max_abs,
        max_rel,
        mismatched,
        worst: worst.map(|(_, _, k, x, y)| (k, x, y)),
        largest: largest.map(|(_, k, x, y)| (k, x, y)),
        nan,
    }
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
    /// Where the worst element relative to the tolerance and the largest absolute error
    /// are, one line each, or one line when they are the same element:
    /// `worst vs tolerance at [2, 0, 1]: got 0.51234, expected 0.5124 (abs err 6e-05)`.
    pub fn where_lines(
        &self,
        got_dt: rnn_run::DatumType,
        exp_dt: rnn_run::DatumType,
    ) -> Vec<String> {
        let show = |label: &str, w: &At| {
            let err = (w.got - w.expected).abs();
            format!(
                "{label} at {}: got {}, expected {} (abs err {})",
                fmt_index(&w.index),
                fmt_exact(w.got, got_dt),
                fmt_exact(w.expected, exp_dt),
                fmt_nan(Some(err))
            )
        };
        match (&self.worst, &self.largest) {
            (Some(w), Some(l)) if w.index == l.index => {
                vec![show("worst vs tolerance and largest abs err", w)]
            }
            (w, l) => w
                .iter()
                .map(|w| show("worst vs tolerance", w))
                .chain(l.iter().map(|l| show("largest abs err", l)))
                .collect(),
        }
    }

    /// One line for people.
    pub fn describe(&self, rtol: f64, atol: f64) -> String {
        if let Some(e) = &self.error {
            return format!("FAIL, {e}");
        }
        let mut errs = format!(
            "max abs err {}, max rel err {}",
            fmt_nan(self.max_abs),
            fmt_nan(self.max_rel)
        );
        let n = self.nan;
        if n.output > 0 || n.reference > 0 {
            errs.push_str(&format!(
                "; NaN: {} in the output, {} in the reference, {} on one side only",
                n.output, n.reference, n.one_sided
            ));
        }
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

/// `NaN`, or the number to 3 significant digits.
fn fmt_nan(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_nan() => "NaN".into(),
        Some(x) => fmt_g(x, 3),
        None => "-".into(),
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
        assert_eq!(
            c.nan,
            NanCounts {
                output: 1,
                reference: 1,
                one_sided: 0
            }
        );
        assert_eq!(c.max_abs, Some(0.0));
        let inf = Tensor::from(arr2(&[[f32::INFINITY]]));
        let one = Tensor::from(arr2(&[[1.0f32]]));
        assert!(!compare(&one, &inf, 1.0, 1.0).unwrap().ok());
        assert!(compare(&inf, &inf, 0.0, 0.0).unwrap().ok());
        let other = Tensor::from(arr2(&[[1.0f32, 2.0]]));
        assert!(compare(&one, &other, 1.0, 1.0).unwrap().error.is_some());
    }

    /// An all-NaN output against numbers: NaN errors, every element a mismatch, counted.
    #[test]
    fn nan_output_is_a_nan_error() {
        let got = Tensor::from(arr2(&[[f32::NAN, f32::NAN], [f32::NAN, f32::NAN]]));
        let exp = Tensor::from(arr2(&[[1.0f32, 2.0], [3.0, 4.0]]));
        let c = compare(&got, &exp, 1e-4, 1e-5).unwrap();
        assert!(!c.ok());
        assert_eq!(c.mismatched, 4);
        assert!(c.max_abs.unwrap().is_nan() && c.max_rel.unwrap().is_nan());
        assert_eq!(
            c.nan,
            NanCounts {
                output: 4,
                reference: 0,
                one_sided: 4
            }
        );
        let text = c.describe(1e-4, 1e-5);
        assert!(text.contains("max abs err NaN, max rel err NaN"), "{text}");
        assert!(text.contains("NaN: 4 in the output, 0 in the reference, 4 on one side only"));
        // The reverse: NaN in the reference only.
        let c = compare(&exp, &got, 1e-4, 1e-5).unwrap();
        assert_eq!(c.nan.one_sided, 4);
        assert!(c.max_abs.unwrap().is_nan());
    }

    /// The worst element relative to the tolerance and the largest absolute error can be
    /// different elements: a small error on a small value, a larger one on a large value.
    #[test]
    fn worst_vs_tolerance_and_largest_abs_err_differ() {
        let got = Tensor::from(arr2(&[[0.0011f64, 1000.05]]));
        let exp = Tensor::from(arr2(&[[0.001f64, 1000.0]]));
        let c = compare(&got, &exp, 1e-4, 1e-5).unwrap();
        // 1e-4 off with 1.01e-5 allowed, versus 0.05 off with 0.10001 allowed.
        assert_eq!(c.mismatched, 1);
        assert_eq!(c.worst.as_ref().unwrap().index, [0, 0]);
        assert_eq!(c.largest.as_ref().unwrap().index, [0, 1]);
        let lines = c.where_lines(rnn_run::DatumType::F64, rnn_run::DatumType::F64);
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("worst vs tolerance at [0, 0]: got 0.0011"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("largest abs err at [0, 1]: got 1000.05"),
            "{lines:?}"
        );
        let same = compare(&got, &got, 0.0, 0.0).unwrap();
        assert_eq!(
            same.where_lines(rnn_run::DatumType::F64, rnn_run::DatumType::F64)
                .len(),
            1
        );
    }

    #[test]
    fn unravels() {
        assert_eq!(unravel(5, &[2, 3]), [1, 2]);
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
    }
}
