//! `rnn_run.inspect(path)`: what `rnn-run inspect --json` prints, as Python objects (the same
//! keys, in the same order; the tests compare the two on the fixtures).

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rnn_run::attrs::{Layout, OpKind};
use rnn_run::{Engine, IoInfo, LoadOptions, Model, ModelInfo, RecurrentNode};

use crate::errors::{guarded, Stage};
use crate::model::{dims, parse_engine};

fn io<'py>(py: Python<'py>, infos: &[IoInfo]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for i in infos {
        let d = PyDict::new(py);
        d.set_item("name", &i.name)?;
        d.set_item("dtype", rnn_run::dtype_name(i.dtype))?;
        d.set_item("shape", dims(py, &i.shape)?)?;
        list.append(d)?;
    }
    Ok(list)
}

fn present<'py>(py: Python<'py>, list: &[(&str, bool)]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, p) in list {
        d.set_item(*name, *p)?;
    }
    Ok(d)
}

fn node<'py>(py: Python<'py>, n: &RecurrentNode) -> PyResult<Bound<'py, PyDict>> {
    let spec = &n.spec;
    let s = &spec.slots;
    let lstm = spec.op == OpKind::Lstm;
    let mut optional = vec![
        ("B", s.b.is_some()),
        ("sequence_lens", s.sequence_lens.is_some()),
        ("initial_h", s.initial_h.is_some()),
    ];
    let mut outputs = vec![("Y", s.y.is_some()), ("Y_h", s.y_h.is_some())];
    if lstm {
        optional.push(("initial_c", s.initial_c.is_some()));
        optional.push(("P", s.p.is_some()));
        outputs.push(("Y_c", s.y_c.is_some()));
    }
    let d = PyDict::new(py);
    d.set_item("name", &spec.name)?;
    d.set_item(
        "op",
        if n.quantized {
            format!("{} {}", rnn_run::qlstm::DOMAIN, rnn_run::qlstm::OP_TYPE)
        } else {
            spec.op.op_type().to_string()
        },
    )?;
    d.set_item("subgraph", n.subgraph.clone())?;
    d.set_item("direction", spec.direction.as_str())?;
    match spec.hidden_size {
        Some(h) => d.set_item("hidden_size", h)?,
        None => d.set_item("hidden_size", "from R")?,
    }
    d.set_item(
        "layout",
        match spec.layout {
            Layout::SeqMajor => 0,
            Layout::BatchMajor => 1,
        },
    )?;
    let activations: Vec<String> = spec.activations.iter().map(|a| a.to_string()).collect();
    d.set_item("activations", activations)?;
    d.set_item("activations_given", spec.activations_given)?;
    d.set_item("clip", spec.clip().map(|c| c as f64))?;
    d.set_item("input_forget", spec.input_forget)?;
    d.set_item("linear_before_reset", spec.linear_before_reset)?;
    d.set_item("optional_inputs", present(py, &optional)?)?;
    d.set_item("outputs", present(py, &outputs)?)?;
    d.set_item("engine", n.engine.to_string())?;
    d.set_item("weights_prepared", n.weights_prepared)?;
    Ok(d)
}

struct View<'a> {
    source: String,
    info: &'a ModelInfo,
    inputs: &'a [IoInfo],
    outputs: &'a [IoInfo],
    nodes: &'a [RecurrentNode],
    engine: Engine,
    typing: (&'static str, Option<String>),
}

fn to_dict<'py>(py: Python<'py>, v: &View<'_>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("model", &v.source)?;
    d.set_item("opset", v.info.opset)?;
    let opsets = PyDict::new(py);
    for (domain, version) in &v.info.opsets {
        opsets.set_item(domain, version)?;
    }
    d.set_item("opsets", opsets)?;
    let ops = PyDict::new(py);
    for (op, n) in &v.info.op_counts {
        ops.set_item(op, n)?;
    }
    d.set_item("ops", ops)?;
    d.set_item("typing", v.typing.0)?;
    d.set_item("typing_reason", v.typing.1.clone())?;
    d.set_item("engine", v.engine.to_string())?;
    d.set_item("inputs", io(py, v.inputs)?)?;
    // Initializers also listed as inputs: defaults a run may override by name.
    d.set_item("defaults", io(py, &v.info.defaults)?)?;
    d.set_item("outputs", io(py, v.outputs)?)?;
    let nodes = PyList::empty(py);
    for n in v.nodes {
        nodes.append(node(py, n)?)?;
    }
    d.set_item("recurrent_nodes", nodes)?;
    Ok(d)
}

/// Describes a model as ``rnn-run inspect --json`` does: opsets, op counts, inputs and
/// outputs (symbolic dimensions as strings), how the graph types, and each recurrent node's
/// attributes, optional inputs and outputs. A model tract cannot load is still described
/// from its protobuf, with ``"typing": "failed"`` and the reason; a file that is not an ONNX
/// model raises `LoadError`.
#[pyfunction]
#[pyo3(signature = (path, engine = "native"))]
pub fn inspect<'py>(py: Python<'py>, path: PathBuf, engine: &str) -> PyResult<Bound<'py, PyDict>> {
    let engine = parse_engine(engine)?;
    let options = LoadOptions {
        engine,
        threads: 1,
        ..Default::default()
    };
    let loaded = py.detach(|| guarded(Stage::Load, || Model::load_with(&path, &options)));
    let failure = match loaded {
        Ok(model) => {
            let typing = match model.typing() {
                rnn_run::Typing::Symbolic => ("symbolic", None),
                rnn_run::Typing::Deferred(why) => ("deferred", Some(why)),
            };
            return to_dict(
                py,
                &View {
                    source: model.source().to_string(),
                    info: model.info(),
                    inputs: model.inputs(),
                    outputs: model.outputs(),
                    nodes: model.recurrent_nodes(),
                    engine: model.engine(),
                    typing,
                },
            );
        }
        Err(f) => f,
    };
    // tract could not load it: what the protobuf says, with why (as the CLI does).
    let Ok(info) = py.detach(|| guarded(Stage::Load, || ModelInfo::from_file(&path))) else {
        return Err(failure.into());
    };
    let reason = match &failure {
        crate::errors::Failure::Error(e, _) => e.to_string(),
        crate::errors::Failure::Panic(m) => m.clone(),
    };
    // Worded as the CLI words it.
    let reason = format!("cannot load model: {reason}").replace('\n', " ");
    let nodes: Vec<RecurrentNode> = info
        .recurrent
        .iter()
        .map(|found| RecurrentNode {
            spec: found.spec.clone(),
            subgraph: found.subgraph.clone(),
            quantized: found.quantized,
            engine,
            weights_prepared: found.constant_weights,
        })
        .collect();
    to_dict(
        py,
        &View {
            source: path.display().to_string(),
            info: &info,
            inputs: &info.inputs,
            outputs: &info.outputs,
            nodes: &nodes,
            engine,
            typing: ("failed", Some(reason)),
        },
    )
}
