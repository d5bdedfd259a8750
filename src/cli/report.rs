//! What `rnn-run` prints after a run: the report of its outputs and timings, as text or JSON.

use rnn_run::{dtype_name, IoInfo, Tensor};

use super::compare::{At, Comparison};
use super::format::{fmt_g, fmt_value, stats, with_values_f64, FIRST};
use super::json::Json;

/// Everything known about one output after a run.
pub struct OutputReport<'a> {
    pub info: &'a IoInfo,
    pub tensor: &'a Tensor,
    pub path: Option<String>,
    pub comparison: Option<(Comparison, rnn_run::DatumType, String)>,
}

/// Timings of `--bench`.
pub struct Bench {
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Bench {
    pub fn from_times(mut ms: Vec<f64>) -> Bench {
        ms.sort_by(|a, b| a.total_cmp(b));
        let n = ms.len();
        let median = if n == 0 {
            0.0
        } else if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        Bench {
            runs: n,
            median_ms: median,
            min_ms: ms.first().copied().unwrap_or(0.0),
            max_ms: ms.last().copied().unwrap_or(0.0),
        }
    }
}

pub struct RunReport<'a> {
    pub model: String,
    pub outputs: Vec<OutputReport<'a>>,
    pub load_ms: f64,
    /// Making the plan specialized to the inputs' shapes (0 when it was cached); `None` for a
    /// stream, which plans each chunk shape inside its run.
    pub plan_ms: Option<f64>,
    pub run_ms: f64,
    /// `--chunk`: the chunk length and how many pushes the run took.
    pub stream: Option<(usize, usize)>,
    /// `--recurrent-weights`, when not `full`: the outputs come from rounded weights.
    pub recurrent_weights: Option<&'static str>,
    pub bench: Option<Bench>,
    pub rtol: f64,
    pub atol: f64,
}

/// A number, or the string `"NaN"` (JSON has no NaN; `null` would read as "not compared"),
/// or `"inf"` / `"-inf"`.
fn nan_or_number(x: Option<f64>) -> Json {
    match x {
        Some(x) if x.is_nan() => Json::from("NaN"),
        Some(x) if x.is_infinite() => Json::from(if x > 0.0 { "inf" } else { "-inf" }),
        other => Json::from(other),
    }
}

fn shape_of(t: &Tensor) -> String {
    format!(
        "[{}]",
        t.shape()
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn ms(x: f64) -> Json {
    Json::Num((x * 1000.0).round() / 1000.0)
}

fn fmt_ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0} ms")
    } else if x >= 1.0 {
        format!("{x:.2} ms")
    } else {
        format!("{x:.3} ms")
    }
}

impl RunReport<'_> {
    pub fn all_ok(&self) -> Option<bool> {
        let mut any = false;
        let mut ok = true;
        for o in &self.outputs {
            if let Some((c, _, _)) = &o.comparison {
                any = true;
                ok &= c.ok();
            }
        }
        any.then_some(ok)
    }

    pub fn json(&self) -> Json {
        let outputs = self
            .outputs
            .iter()
            .map(|o| {
                let mut j = Json::obj()
                    .with("name", o.info.name.as_str())
                    .with("shape", o.tensor.shape().to_vec())
                    .with("dtype", dtype_name(o.tensor.datum_type()))
                    .with("path", o.path.clone());
                if let Some((c, _, source)) = &o.comparison {
                    j.set("max_abs_err", nan_or_number(c.max_abs));
                    j.set("max_rel_err", nan_or_number(c.max_rel));
                    j.set("ok", c.ok());
                    j.set("mismatched", c.mismatched);
                    j.set("reference", source.as_str());
                    j.set(
                        "nan",
                        Json::obj()
                            .with("output", c.nan.output)
                            .with("reference", c.nan.reference)
                            .with("one_sided", c.nan.one_sided),
                    );
                    let at = |w: &At| {
                        Json::obj()
                            .with("index", w.index.clone())
                            .with("got", nan_or_number(Some(w.got)))
                            .with("expected", nan_or_number(Some(w.expected)))
                    };
                    j.set("worst_vs_tolerance", c.worst.as_ref().map(at));
                    j.set("largest_abs_err_at", c.largest.as_ref().map(at));
                    j.set("error", c.error.clone());
                }
                j
            })
            .collect::<Vec<_>>();
        let mut doc = Json::obj()
            .with("model", self.model.as_str())
            .with("outputs", Json::Arr(outputs))
            .with("load_ms", ms(self.load_ms))
            .with("plan_ms", self.plan_ms.map(ms))
            .with("run_ms", ms(self.run_ms));
        if let Some((chunk, pushes)) = self.stream {
            doc.set("chunk", chunk);
            doc.set("pushes", pushes);
        }
        if let Some(format) = self.recurrent_weights {
            doc.set("recurrent_weights", format);
        }
        if let Some(ok) = self.all_ok() {
            doc.set("ok", ok);
            doc.set("rtol", self.rtol);
            doc.set("atol", self.atol);
        }
        if let Some(b) = &self.bench {
            doc.set(
                "bench",
                Json::obj()
                    .with("runs", b.runs)
                    .with("median_ms", ms(b.median_ms))
                    .with("min_ms", ms(b.min_ms))
                    .with("max_ms", ms(b.max_ms)),
            );
        }
        doc
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for (i, o) in self.outputs.iter().enumerate() {
            let dt = o.tensor.datum_type();
            out.push_str(&format!(
                "output {i}: {}  {}  {}\n",
                o.info.name,
                dtype_name(dt),
                shape_of(o.tensor)
            ));
            match with_values_f64(o.tensor, stats) {
                Some(s) if s.count > 0 => {
                    let v = |x: Option<f64>| x.map(|x| fmt_value(x, dt)).unwrap_or("-".into());
                    out.push_str(&format!(
                        "  min {}  max {}  mean {}  ({} value{}{})\n",
                        v(s.min),
                        v(s.max),
                        s.mean.map(|m| fmt_g(m, 6)).unwrap_or("-".into()),
                        s.count,
                        if s.count == 1 { "" } else { "s" },
                        if s.nan > 0 {
                            format!(", {} NaN", s.nan)
                        } else {
                            String::new()
                        }
                    ));
                    let first: Vec<String> = s.first.iter().map(|&x| fmt_value(x, dt)).collect();
                    out.push_str(&format!(
                        "  first: {}{}\n",
                        first.join(", "),
                        if s.count > FIRST { ", ..." } else { "" }
                    ));
                }
                Some(_) => out.push_str("  (empty)\n"),
                None => {}
            }
            if let Some(p) = &o.path {
                out.push_str(&format!("  written to {p}\n"));
            }
            if let Some((c, exp_dt, source)) = &o.comparison {
                out.push_str(&format!(
                    "  expect ({source}): {}\n",
                    c.describe(self.rtol, self.atol)
                ));
                // Nothing to point at when the output equals the reference exactly.
                if c.max_abs.is_some_and(|e| e != 0.0) || !c.ok() {
                    for line in c.where_lines(dt, *exp_dt) {
                        out.push_str(&format!("    {line}\n"));
                    }
                }
            }
        }
        if let Some(ok) = self.all_ok() {
            let failing: Vec<&str> = self
                .outputs
                .iter()
                .filter(|o| o.comparison.as_ref().is_some_and(|(c, _, _)| !c.ok()))
                .map(|o| o.info.name.as_str())
                .collect();
            let tol = format!("rtol {}, atol {}", fmt_g(self.rtol, 6), fmt_g(self.atol, 6));
            if ok && self.outputs.len() == 1 {
                out.push_str(&format!(
                    "expect: the output matches the reference ({tol})\n"
                ));
            } else if ok {
                out.push_str(&format!(
                    "expect: all {} outputs match the reference ({tol})\n",
                    self.outputs.len()
                ));
            } else {
                out.push_str(&format!(
                    "expect: {} of {} output{} differ from the reference ({tol}): {}\n",
                    failing.len(),
                    self.outputs.len(),
                    if self.outputs.len() == 1 { "" } else { "s" },
                    failing.join(", ")
                ));
            }
        }
        if let Some((chunk, pushes)) = self.stream {
            out.push_str(&format!(
                "stream: chunk {chunk}, {pushes} push{}\n",
                if pushes == 1 { "" } else { "es" }
            ));
        }
        if let Some(format) = self.recurrent_weights {
            out.push_str(&format!(
                "recurrent weights: {format} (rounded; products sum in the model's precision)\n"
            ));
        }
        out.push_str(&match self.plan_ms {
            Some(plan_ms) => format!(
                "time: load {}, plan {}, run {}\n",
                fmt_ms(self.load_ms),
                fmt_ms(plan_ms),
                fmt_ms(self.run_ms)
            ),
            None => format!(
                "time: load {}, run {} (planning each chunk shape included)\n",
                fmt_ms(self.load_ms),
                fmt_ms(self.run_ms)
            ),
        });
        if let Some(b) = &self.bench {
            out.push_str(&format!(
                "bench: {} run{}, median {}, min {}, max {}\n",
                b.runs,
                if b.runs == 1 { "" } else { "s" },
                fmt_ms(b.median_ms),
                fmt_ms(b.min_ms),
                fmt_ms(b.max_ms)
            ));
        }
        out
    }
}
