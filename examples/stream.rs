//! Feeds a sequence to a model one time step at a time, the recurrent state kept inside the
//! stream, and checks that the result equals one run over the whole sequence.
//!
//! `cargo run --release --example stream`

use rnn_run::npy::read_npy;
use rnn_run::{Model, StreamOutput, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new("fixtures/tutorial/lstm_legacy_long");
    let model = Model::load(dir.join("model.onnx"))?;
    // The model's inputs: x [seq, batch, 5], h0 and c0 [2, batch, 6].
    let [x, h0, c0]: [Tensor; 3] = ["input_0", "input_1", "input_2"]
        .map(|f| read_npy(dir.join(format!("{f}.npy"))).expect("fixture"));
    let whole = model.run(vec![x.clone(), h0.clone(), c0.clone()])?;

    // Inputs without a time axis (the initial states) start the stream; each push then
    // takes the inputs with one.
    let mut stream = model.stream_from(vec![h0, c0])?;
    let seq_axis = model.time_axes()?[0].expect("x has a time axis");
    let steps = x.shape()[seq_axis];
    let mut ys = vec![];
    let mut last = vec![];
    for t in 0..steps {
        last = stream.push(vec![x.slice(seq_axis, t, t + 1)?])?;
        ys.push(last[0].clone());
    }
    // Y has one entry per step; Y_h and Y_c are final: the last push's are the whole run's.
    let StreamOutput::PerStep { axis } = stream.outputs()[0] else {
        panic!("Y is per step");
    };
    assert_eq!(Tensor::stack_tensors(axis, &ys)?, whole[0]);
    assert_eq!(stream.outputs()[1], StreamOutput::Final);
    assert_eq!(last[1], whole[1]);
    println!(
        "{} pushes of one step each reproduce the whole run exactly",
        stream.pushes()
    );
    Ok(())
}

/// `cargo test` runs the example too (see `test = true` in Cargo.toml), so it stays working.
#[test]
fn example_runs() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    main().unwrap();
}
