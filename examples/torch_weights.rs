//! PyTorch weights without ONNX: build an `nn.LSTM(4, 5, num_layers=2)` from its saved
//! `state_dict()` and run it on the native cells.
//!
//! ```sh
//! cargo run --release --example torch_weights                 # the bundled fixture
//! cargo run --release --example torch_weights -- DIR          # another fixtures/torch_weights/<name>
//! ```
//!
//! In Python, the weights were saved with
//! `safetensors.torch.save_file(lstm.state_dict(), "state_dict.safetensors")` and the inputs and
//! PyTorch's outputs with `np.save` (see scripts/gen_torch_weights.py).

use std::path::PathBuf;

use ndarray::{Array3, Ix3};
use rnn_run::npy::read_npy;
use rnn_run::torch::{TorchConfig, TorchKind, TorchRecurrent};

fn load3(path: PathBuf) -> Result<Array3<f32>, Box<dyn std::error::Error>> {
    let t = read_npy(&path)?;
    Ok(t.to_plain_array_view::<f32>()?
        .to_owned()
        .into_dimensionality::<Ix3>()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run(std::env::args().nth(1))
}

fn run(arg: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let dir = arg.map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/torch_weights/lstm_l2")
    });

    // What the state dict cannot tell: the module kind and constructor flags. Input and
    // hidden sizes come from the weights' shapes.
    let config = TorchConfig {
        num_layers: 2,
        ..TorchConfig::new(TorchKind::Lstm)
    };
    let lstm = TorchRecurrent::<f32>::from_safetensors(dir.join("state_dict.safetensors"), config)?;
    println!(
        "nn.LSTM(input_size={}, hidden_size={}, num_layers={}) from {}",
        lstm.input_size(),
        lstm.hidden_size(),
        lstm.layers().len(),
        dir.display()
    );

    // PyTorch's calling convention: lstm(input, (h0, c0)).
    let x = load3(dir.join("input_0.npy"))?;
    let h0 = load3(dir.join("input_1.npy"))?;
    let c0 = load3(dir.join("input_2.npy"))?;
    let out = lstm.forward(x.view(), Some(h0.view()), Some(c0.view()))?;
    println!("output {:?}, h_n {:?}", out.output.dim(), out.h_n.dim());

    // Compare with what PyTorch computed.
    let c_n = out.c_n.expect("an LSTM returns c_n");
    for (name, got, file) in [
        ("output", &out.output, "expected_0.npy"),
        ("h_n", &out.h_n, "expected_1.npy"),
        ("c_n", &c_n, "expected_2.npy"),
    ] {
        let want = load3(dir.join(file))?;
        let err = got
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("{name}: max abs error vs PyTorch {err:.2e}");
        if err > 1e-5 {
            return Err(format!("{name} differs from PyTorch by {err}").into());
        }
    }
    Ok(())
}

/// `cargo test` runs the example too (see `test = true` in Cargo.toml), so it stays working.
#[test]
fn example_runs() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    run(None).unwrap();
}
