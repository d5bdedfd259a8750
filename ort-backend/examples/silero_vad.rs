//! A Silero VAD loop as `ort` applications write it, running on rnn-run. Against an
//! onnxruntime build of the same program, two lines differ:
//!
//! ```toml
//! # Cargo.toml: ort without its ONNX Runtime download, plus the backend
//! ort = { version = "=2.0.0-rc.14", default-features = false, features = ["std", "ndarray", "alternative-backend"] }
//! rnn-run-ort = "0.1"
//! ```
//!
//! ```rust,ignore
//! ort::set_api(rnn_run_ort::api()); // first thing in main
//! ```
//!
//! Everything else is plain `ort`: the state is fed back from `stateN` to `state` after every
//! 32 ms frame, the 64 samples of context are carried by hand, as Silero's own wrapper does.
//!
//!     cargo run --release -p rnn-run-ort --example silero_vad [MODEL] [AUDIO.f32]
//!
//! AUDIO.f32 is raw 16 kHz mono little-endian float32 samples (e.g. `ffmpeg -i in.wav -ar
//! 16000 -ac 1 -f f32le in.f32`). Without it, the example uses the speech-like test signal of
//! the repository's Silero fixture.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Array3};
use ort::session::Session;
use ort::value::TensorRef;

const FRAME: usize = 512;
const CONTEXT: usize = 64;

fn main() -> ort::Result<()> {
    ort::set_api(rnn_run_ort::api()); // the one line that changes the engine

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("fixtures/realworld/silero_vad_16k_op15.onnx"));
    let audio = match args.next() {
        Some(path) => read_f32(Path::new(&path)),
        None => fixture_signal(&root),
    };

    let env = ort::init().build()?;
    let mut session = Session::builder(&env)?
        .with_intra_threads(1)?
        .commit_from_file(&model)?;

    let sr = ndarray::arr0(16000i64);
    let mut state = Array3::<f32>::zeros((2, 1, 128));
    let mut context = Array1::<f32>::zeros(CONTEXT);
    for (i, chunk) in audio.chunks_exact(FRAME).enumerate() {
        let mut input = Array2::<f32>::zeros((1, CONTEXT + FRAME));
        input.slice_mut(ndarray::s![0, ..CONTEXT]).assign(&context);
        input
            .slice_mut(ndarray::s![0, CONTEXT..])
            .assign(&ndarray::ArrayView1::from(chunk));
        let outputs = session.run(ort::inputs![
            "input" => TensorRef::from_array_view(&input)?,
            "state" => TensorRef::from_array_view(&state)?,
            "sr" => TensorRef::from_array_view(&sr)?,
        ])?;
        let probability = outputs["output"].try_extract_array::<f32>()?[[0, 0]];
        state = outputs["stateN"]
            .try_extract_array::<f32>()?
            .to_owned()
            .into_dimensionality()
            .expect("stateN is [2, 1, 128]");
        context.assign(&ndarray::ArrayView1::from(&chunk[FRAME - CONTEXT..]));
        let time = i as f32 * FRAME as f32 / 16000.0;
        let bar = "#".repeat((probability * 40.0) as usize);
        println!("{time:6.3} s  {probability:.3}  {bar}");
    }
    Ok(())
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The new samples of each call of the fixture's case (the last 512 of its 576-sample input).
fn fixture_signal(root: &Path) -> Vec<f32> {
    use rnn_run::TensorExt;
    let dir = root.join("fixtures/realworld/cases/silero_vad_16k_op15");
    (0..)
        .map(|k| dir.join(format!("16k_carry_call{k}_inputs.npz")))
        .take_while(|p| p.exists())
        .flat_map(|p| {
            let members = rnn_run::npy::read_npz(&p).expect("fixture");
            let input = &members.iter().find(|(n, _)| n == "input").unwrap().1;
            let input = input.to_array::<f32>().unwrap();
            input.as_slice().unwrap()[CONTEXT..].to_vec()
        })
        .collect()
}
