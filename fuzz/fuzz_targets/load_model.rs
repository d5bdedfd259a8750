//! Bytes → `Model::from_bytes` → inspect → run on a small zero input.
//!
//! Loading and running must return `Ok` or `Err`, never panic, hang or exhaust memory.
//!
//! tract 0.23.9 panics on some malformed graphs (a graph output no node produces, for one)
//! while `Model::from_bytes` parses them outside its `catch_unwind`. Until the library catches
//! those too, this target does it here, the way the fix would: panics raised inside tract are
//! printed once per location (`[fuzz] panic (in a dependency)` in the log) and count as
//! errors; a panic raised in rnn-run's own code still aborts the run as a crash. Likewise a
//! `Transpose` whose `perm` is not a permutation sends tract into an endless loop that grows
//! until memory runs out (tract-core `perm_to_cycles`); such models are skipped here, as the
//! library should refuse them before tract sees them. And a graph may legitimately ask tract
//! for a huge tensor (a legacy export's `ConstantOfShape` for h0, with the layer count mutated
//! to 301989894: 14 GB), which tract allocates at run time; models with integer constants
//! past 10⁵ (other than the INT32/INT64 extremes used as "to the end"), or with `Range`,
//! `Resize` or `Upsample`, are loaded and inspected but not run. Set `RNN_RUN_FUZZ_STRICT=1`
//! to turn these workarounds off.
#![no_main]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rnn_run::{Dim, Model, Tensor};
use tract_onnx::pb::{GraphProto, ModelProto};

#[path = "common.rs"]
mod common;

/// Inputs with more elements than this are not built (the run would only measure tract).
const MAX_ELEMENTS: usize = 100_000;

fuzz_target!(|data: &[u8]| {
    common::install_panic_hook();
    if !strict() && has_transpose_without_permutation(data) {
        return;
    }
    let Some(Ok(model)) = guarded(|| Model::from_bytes(data)) else {
        return;
    };
    inspect(&model);
    // Symbolic dimensions get 1, 2 or 3, from the input's length (the corpus files stay plain
    // ONNX models).
    let symbolic = 1 + data.len() % 3;
    let mut inputs = vec![];
    for info in model.inputs() {
        let shape: Vec<usize> = info
            .shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Symbol(_) => symbolic,
            })
            .collect();
        let elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        match elements {
            Some(n) if n <= MAX_ELEMENTS => {}
            _ => return,
        }
        let Ok(t) = Tensor::zero_dt(info.dtype, &shape) else {
            return;
        };
        inputs.push(t);
    }
    let _ = model.check_inputs(&inputs);
    if !strict() && may_ask_for_huge_tensors(data) {
        return;
    }
    if let Some(Ok(outputs)) = guarded(|| model.run(inputs)) {
        for t in &outputs {
            let _ = t.shape();
        }
    }
});

fn strict() -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("RNN_RUN_FUZZ_STRICT").is_some_and(|v| v != "0"))
}

/// A `Transpose` node (in the graph or a subgraph) whose `perm` is not a permutation.
fn has_transpose_without_permutation(data: &[u8]) -> bool {
    fn graph_has(g: &GraphProto) -> bool {
        g.node.iter().any(|n| {
            let bad_perm = n.op_type == "Transpose"
                && n.attribute.iter().any(|a| {
                    if a.name != "perm" {
                        return false;
                    }
                    let mut seen = vec![false; a.ints.len()];
                    !a.ints.iter().all(|&p| {
                        usize::try_from(p)
                            .ok()
                            .and_then(|p| seen.get_mut(p))
                            .is_some_and(|s| !std::mem::replace(s, true))
                    })
                });
            bad_perm
                || n.attribute
                    .iter()
                    .any(|a| a.g.as_ref().is_some_and(graph_has) || a.graphs.iter().any(graph_has))
        })
    }
    ModelProto::decode(data)
        .ok()
        .and_then(|m| m.graph)
        .is_some_and(|g| graph_has(&g))
}

/// Integer constants past 10⁵ (shapes, repeats, pads), or ops whose output size comes from
/// values: a small file can then ask for gigabytes at run time.
fn may_ask_for_huge_tensors(data: &[u8]) -> bool {
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::TensorProto;
    fn big(v: i64) -> bool {
        let sentinel = [i64::MAX, i64::MIN, i32::MAX as i64, i32::MIN as i64];
        v.unsigned_abs() > 100_000 && !sentinel.contains(&v)
    }
    fn tensor_big(t: &TensorProto) -> bool {
        let raw = &t.raw_data;
        let from_raw = if t.data_type == DataType::Int64 as i32 {
            raw.chunks_exact(8)
                .any(|c| big(i64::from_le_bytes(c.try_into().unwrap())))
        } else if t.data_type == DataType::Int32 as i32 {
            raw.chunks_exact(4)
                .any(|c| big(i32::from_le_bytes(c.try_into().unwrap()) as i64))
        } else {
            false
        };
        from_raw
            || t.int64_data.iter().any(|&v| big(v))
            || t.int32_data.iter().any(|&v| big(v as i64))
    }
    fn graph_big(g: &GraphProto) -> bool {
        g.initializer.iter().any(tensor_big)
            || g.node.iter().any(|n| {
                matches!(n.op_type.as_str(), "Range" | "Resize" | "Upsample")
                    || n.attribute.iter().any(|a| {
                        big(a.i)
                            || a.ints.iter().any(|&v| big(v))
                            || a.t.as_ref().is_some_and(tensor_big)
                            || a.tensors.iter().any(tensor_big)
                            || a.g.as_ref().is_some_and(graph_big)
                            || a.graphs.iter().any(graph_big)
                    })
            })
    }
    ModelProto::decode(data)
        .ok()
        .and_then(|m| m.graph)
        .is_some_and(|g| graph_big(&g))
}

/// Runs `f`; a panic inside tract gives `None`, a panic in rnn-run's code goes on unwinding.
fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    if strict() {
        return Some(f());
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(payload) if common::last_panic_was_ours() => std::panic::resume_unwind(payload),
        Err(_) => None,
    }
}

/// Everything `rnn-run inspect` prints.
fn inspect(model: &Model) {
    let mut text = String::new();
    text.push_str(model.source());
    text.push_str(&format!("{} {}", model.opset(), model.engine()));
    for io in model.inputs().iter().chain(model.outputs()) {
        text.push_str(&format!(
            "{} {} {}",
            io.name,
            rnn_run::dtype_name(io.dtype),
            io.shape_string()
        ));
    }
    for node in model.recurrent_nodes() {
        let spec = &node.spec;
        text.push_str(&format!(
            "{} {:?} {:?} {:?} {:?} {:?} {} {}",
            spec.name,
            spec.op,
            spec.direction,
            spec.hidden_size,
            spec.layout,
            spec.clip(),
            spec.input_forget,
            spec.linear_before_reset
        ));
        for act in &spec.activations {
            text.push_str(&act.to_string());
        }
        for d in 0..spec.direction.num_directions() {
            let _ = spec.activations_of(d);
        }
        text.push_str(&format!("{:?} {}", spec.slots, node.weights_prepared));
    }
    std::hint::black_box(text);
}
