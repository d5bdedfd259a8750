//! What `rnn-run` prints: the run report (text or JSON) and `inspect`.

use rnn_run::attrs::{Layout, OpKind};
use rnn_run::{dtype_name, Dim, Engine, IoInfo, Model, ModelInfo, RecurrentNode, Tensor, Typing};

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

// ---------------------------------------------------------------------------------------------
// inspect

fn dims_json(info: &IoInfo) -> Json {
    Json::Arr(
        info.shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Json::from(*n),
                Dim::Symbol(s) => Json::from(s.as_str()),
            })
            .collect(),
    )
}

fn io_json(infos: &[IoInfo]) -> Json {
    Json::Arr(
        infos
            .iter()
            .map(|i| {
                Json::obj()
                    .with("name", i.name.as_str())
                    .with("dtype", dtype_name(i.dtype))
                    .with("shape", dims_json(i))
            })
            .collect(),
    )
}

/// `(name, present)` for each optional input the op defines.
fn optional_inputs(node: &RecurrentNode) -> Vec<(&'static str, bool)> {
    let s = &node.spec.slots;
    let mut v = vec![
        ("B", s.b.is_some()),
        ("sequence_lens", s.sequence_lens.is_some()),
        ("initial_h", s.initial_h.is_some()),
    ];
    if node.spec.op == OpKind::Lstm {
        v.push(("initial_c", s.initial_c.is_some()));
        v.push(("P", s.p.is_some()));
    }
    v
}

fn node_outputs(node: &RecurrentNode) -> Vec<(&'static str, bool)> {
    let s = &node.spec.slots;
    let mut v = vec![("Y", s.y.is_some()), ("Y_h", s.y_h.is_some())];
    if node.spec.op == OpKind::Lstm {
        v.push(("Y_c", s.y_c.is_some()));
    }
    v
}

fn layout_number(l: Layout) -> usize {
    match l {
        Layout::SeqMajor => 0,
        Layout::BatchMajor => 1,
    }
}

fn present_json(list: &[(&str, bool)]) -> Json {
    Json::Obj(
        list.iter()
            .map(|(n, p)| (n.to_string(), Json::Bool(*p)))
            .collect(),
    )
}

/// `LSTM`, or `com.microsoft DynamicQuantizeLSTM` for onnxruntime's quantized LSTM.
fn op_name(n: &rnn_run::RecurrentNode) -> String {
    if n.quantized {
        format!("{} {}", rnn_run::qlstm::DOMAIN, rnn_run::qlstm::OP_TYPE)
    } else {
        n.spec.op.op_type().to_string()
    }
}

pub fn inspect_json(view: &Inspected) -> Json {
    let nodes = view
        .nodes
        .iter()
        .map(|n| {
            let spec = &n.spec;
            Json::obj()
                .with("name", spec.name.as_str())
                .with("op", op_name(n))
                .with("subgraph", n.subgraph.clone())
                .with("direction", spec.direction.as_str())
                .with(
                    "hidden_size",
                    match spec.hidden_size {
                        Some(h) => Json::from(h),
                        None => Json::from("from R"),
                    },
                )
                .with("layout", layout_number(spec.layout))
                .with(
                    "activations",
                    spec.activations
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>(),
                )
                .with("activations_given", spec.activations_given)
                .with("clip", spec.clip().map(|c| c as f64))
                .with("input_forget", spec.input_forget)
                .with("linear_before_reset", spec.linear_before_reset)
                .with("optional_inputs", present_json(&optional_inputs(n)))
                .with("outputs", present_json(&node_outputs(n)))
                .with("engine", n.engine.to_string())
                .with("weights_prepared", n.weights_prepared)
        })
        .collect::<Vec<_>>();
    let (typing, reason) = match &view.status {
        Status::Typed => ("symbolic", None),
        Status::Deferred(why) => ("deferred", Some(why.clone())),
        Status::Failed(why) => ("failed", Some(why.clone())),
    };
    Json::obj()
        .with("model", view.source)
        .with("opset", view.info.opset)
        .with(
            "opsets",
            Json::Obj(
                view.info
                    .opsets
                    .iter()
                    .map(|(d, v)| (d.clone(), Json::from(*v)))
                    .collect(),
            ),
        )
        .with(
            "ops",
            Json::Obj(
                view.info
                    .op_counts
                    .iter()
                    .map(|(op, n)| (op.clone(), Json::from(*n)))
                    .collect(),
            ),
        )
        .with("typing", typing)
        .with("typing_reason", reason)
        .with("engine", view.engine.to_string())
        .with("inputs", io_json(view.inputs))
        .with("defaults", io_json(&view.info.defaults))
        .with("outputs", io_json(view.outputs))
        .with("recurrent_nodes", Json::Arr(nodes))
}

fn io_text(out: &mut String, title: &str, infos: &[IoInfo]) {
    out.push_str(&format!("{title}:\n"));
    if infos.is_empty() {
        out.push_str("  (none)\n");
    }
    let w = infos
        .iter()
        .map(|i| i.name.chars().count())
        .max()
        .unwrap_or(0);
    let wt = infos
        .iter()
        .map(|i| dtype_name(i.dtype).len())
        .max()
        .unwrap_or(0);
    for i in infos {
        out.push_str(&format!(
            "  {:w$}  {:wt$}  {}\n",
            i.name,
            dtype_name(i.dtype),
            i.shape_string()
        ));
    }
}

fn present_text(list: &[(&str, bool)]) -> String {
    let present: Vec<&str> = list.iter().filter(|(_, p)| *p).map(|(n, _)| *n).collect();
    let absent: Vec<&str> = list.iter().filter(|(_, p)| !*p).map(|(n, _)| *n).collect();
    let mut s = if present.is_empty() {
        "none".to_string()
    } else {
        present.join(", ")
    };
    if !absent.is_empty() {
        s.push_str(&format!(" (absent: {})", absent.join(", ")));
    }
    s
}

/// What `inspect` reports: the model as loaded, or, when it cannot be loaded, what its
/// protobuf says and why.
pub struct Inspected<'a> {
    pub source: &'a str,
    pub info: &'a ModelInfo,
    pub inputs: &'a [IoInfo],
    pub outputs: &'a [IoInfo],
    pub nodes: &'a [RecurrentNode],
    pub engine: Engine,
    /// How the graph types: symbolically, deferred to the inputs (why), or not at all.
    pub status: Status,
}

pub enum Status {
    Typed,
    Deferred(String),
    Failed(String),
}

impl<'a> Inspected<'a> {
    pub fn of(model: &'a Model) -> Inspected<'a> {
        Inspected {
            source: model.source(),
            info: model.info(),
            inputs: model.inputs(),
            outputs: model.outputs(),
            nodes: model.recurrent_nodes(),
            engine: model.engine(),
            status: match model.typing() {
                Typing::Symbolic => Status::Typed,
                Typing::Deferred(why) => Status::Deferred(why),
            },
        }
    }

    fn status_text(&self) -> String {
        match &self.status {
            Status::Typed => "typed with the declared shapes; runs specialize to theirs".into(),
            Status::Deferred(why) => format!(
                "typed when the inputs are known (tract cannot type it with the declared \
                 shapes: {why})"
            ),
            Status::Failed(why) => format!("cannot be loaded: {why}"),
        }
    }
}

pub fn inspect_text(view: &Inspected) -> String {
    let mut out = String::new();
    out.push_str(&format!("model: {}\n", view.source));
    out.push_str(&format!("opset: {}\n", view.info.opset));
    if view.info.opsets.len() > 1 {
        let opsets: Vec<String> = view
            .info
            .opsets
            .iter()
            .map(|(d, v)| format!("{d} {v}"))
            .collect();
        out.push_str(&format!("opsets: {}\n", opsets.join(", ")));
    }
    let ops: Vec<String> = view
        .info
        .op_counts
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    out.push_str(&format!("ops: {}\n", ops.join(", ")));
    out.push_str(&format!("graph: {}\n", view.status_text()));
    io_text(&mut out, "inputs", view.inputs);
    if !view.info.defaults.is_empty() {
        io_text(
            &mut out,
            "inputs with defaults (initializers; override with name=file)",
            &view.info.defaults,
        );
    }
    io_text(&mut out, "outputs", view.outputs);
    let nodes = view.nodes;
    out.push_str(&format!("recurrent nodes: {}\n", nodes.len()));
    for n in nodes {
        let spec = &n.spec;
        let row =
            |out: &mut String, k: &str, v: String| out.push_str(&format!("    {k:<20} {v}\n"));
        out.push_str(&format!("  {} {}\n", op_name(n), spec.name));
        if let Some(place) = &n.subgraph {
            row(&mut out, "in:", place.clone());
        }
        row(&mut out, "direction:", spec.direction.as_str().to_string());
        row(
            &mut out,
            "hidden size:",
            match spec.hidden_size {
                Some(h) => format!("{h}"),
                None => "from R".into(),
            },
        );
        row(
            &mut out,
            "layout:",
            match spec.layout {
                Layout::SeqMajor => "0 (X is [seq, batch, input])".into(),
                Layout::BatchMajor => "1 (X is [batch, seq, input])".into(),
            },
        );
        let per = spec.op.activations_per_direction();
        let acts = if spec.activations.len() > per {
            spec.activations
                .chunks(per)
                .zip(["forward", "reverse"])
                .map(|(c, d)| {
                    format!(
                        "{d}: {}",
                        c.iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            spec.activations
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let given = if spec.activations_given {
            ""
        } else {
            " (defaults)"
        };
        row(&mut out, "activations:", format!("{acts}{given}"));
        row(
            &mut out,
            "clip:",
            spec.clip()
                .map(|c| fmt_g(c as f64, 8))
                .unwrap_or("none".into()),
        );
        match spec.op {
            OpKind::Lstm => row(&mut out, "input_forget:", spec.input_forget.to_string()),
            OpKind::Gru => row(
                &mut out,
                "linear_before_reset:",
                spec.linear_before_reset.to_string(),
            ),
            OpKind::Rnn => {}
        }
        row(
            &mut out,
            "optional inputs:",
            present_text(&optional_inputs(n)),
        );
        row(&mut out, "outputs:", present_text(&node_outputs(n)));
        row(
            &mut out,
            "engine:",
            format!(
                "{}{}",
                n.engine,
                match (n.engine, n.weights_prepared, &view.status) {
                    (_, _, Status::Failed(_)) => "",
                    (rnn_run::Engine::Native, true, _) => ", weights prepared at load",
                    (rnn_run::Engine::Native, false, _) => ", weights read at run time",
                    _ => "",
                }
            ),
        );
    }
    out
}
