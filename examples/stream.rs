//! Feeds a sequence to a model one time step at a time, the recurrent state kept inside the
//! library, and checks that the result equals one run over the whole sequence.
//!
//! `cargo run --release --example stream`

use rnn_run::npy::read_npy;
use rnn_run::{Model, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new("fixtures/tutorial/lstm_legacy_long");
    let model = Model::load(dir.join("model.onnx"))?;
    let inputs: Vec<Tensor> = (0..3)
        .map(|i| read_npy(dir.join(format!("input_{i}.npy"))))
        .collect::<Result<_, _>>()?;
    let whole = model.run(inputs.clone())?;

    let mut stream = model.stream()?;
    let seq_axis = stream.input_seq_axes()[0].expect("X has a sequence axis");
    let steps = inputs[0].shape()[seq_axis];
    let mut ys = vec![];
    for t in 0..steps {
        // Only the inputs with a sequence axis are cut; initial states are read on the first push.
        let chunk = inputs
            .iter()
            .zip(stream.input_seq_axes())
            .map(|(x, axis)| match axis {
                Some(a) => x.slice(*a, t, t + 1),
                None => Ok(x.clone()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        ys.push(stream.push(chunk)?.remove(0));
    }
    let y_axis = stream.output_seq_axes()[0].expect("Y has a sequence axis");
    let streamed = Tensor::stack_tensors(y_axis, &ys)?;
    assert_eq!(streamed, whole[0]);
    println!("{steps} pushes of one step each reproduce the whole run exactly");
    Ok(())
}

/// `cargo test` runs the example too (see `test = true` in Cargo.toml), so it stays working.
#[test]
fn example_runs() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    main().unwrap();
}
