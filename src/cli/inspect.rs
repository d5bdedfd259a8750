//! What `rnn-run inspect` prints: the model's inputs, outputs and recurrent nodes, as text or JSON.

use rnn_run::attrs::{Layout, OpKind};
use rnn_run::{dtype_name, Dim, Engine, IoInfo, Model, ModelInfo, RecurrentNode, Typing};

use super::format::fmt_g;
use super::json::Json;

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
