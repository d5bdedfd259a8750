//! Loads a model, prints its inputs and outputs, and runs it once on zeros.
//!
//! `cargo run --release --example run_model -- fixtures/tutorial/lstm_legacy/model.onnx`

use rnn_run::{Model, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run(std::env::args().nth(1))
}

fn run(arg: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let path = arg.unwrap_or_else(|| "fixtures/tutorial/lstm_legacy/model.onnx".into());
    let model = Model::load(&path)?;
    for node in model.recurrent_nodes() {
        println!(
            "{} {} direction={} engine={}",
            node.spec.op.op_type(),
            node.spec.name,
            node.spec.direction.as_str(),
            node.engine
        );
    }
    // Zeros of each input's shape, taking 4 for every symbolic dimension.
    let inputs = model
        .inputs()
        .iter()
        .map(|i| Tensor::zero_dt(i.dtype, &i.shape_with(4)))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = model.run(inputs)?;
    for (info, t) in model.outputs().iter().zip(&outputs) {
        println!("{}: {:?} {:?}", info.name, t.datum_type(), t.shape());
    }
    Ok(())
}

/// `cargo test` runs the example too (see `test = true` in Cargo.toml), so it stays working.
#[test]
fn example_runs() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    run(None).unwrap();
}
