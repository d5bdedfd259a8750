//! Bytes → `Model::from_bytes` → inspect → run on a small zero input.
//!
//! Loading and running must return `Ok` or `Err`, never panic, hang or exhaust memory. The
//! target has no tolerances of its own: the library refuses what tract would panic or loop
//! on (see `src/precheck.rs`), catches tract's remaining panics, and refuses graphs whose
//! tensors would pass 4 GiB. The panic hook still reports where a caught panic came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rnn_run::{Model, Tensor};

#[path = "common.rs"]
mod common;

/// Inputs with more elements than this are not built (the run would only measure tract).
const MAX_ELEMENTS: usize = 100_000;

fuzz_target!(|data: &[u8]| {
    common::install_panic_hook();
    let Ok(model) = Model::from_bytes(data) else {
        return;
    };
    inspect(&model);
    // Symbolic dimensions get 1, 2 or 3, from the input's length (the corpus files stay plain
    // ONNX models).
    let symbolic = 1 + data.len() % 3;
    let mut inputs = vec![];
    for info in model.inputs() {
        let shape = info.shape_with(symbolic);
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
    if let Ok(outputs) = model.run(inputs) {
        for t in &outputs {
            let _ = t.shape();
        }
    }
});

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
