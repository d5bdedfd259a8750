//! `ort-latency BACKEND WORKLOAD CALLS`: one ort program, timed call by call on the backend
//! named (`rnn-run` or `tract`; `ort::set_api` is once per process, so one backend per run).
//! Prints one JSON line: the median and the quartiles of the per-call times in µs.
//!
//! Workloads, from the repository's fixtures, with one intra-op thread:
//! - `silero`: Silero VAD (16 kHz, opset 15), one 32 ms frame per call ([1, 576]), the state
//!   fed back from `stateN`, as a streaming application runs it;
//! - `nsnet2`: NSNet2 on 100 frames of features ([1, 100, 161]) per call;
//! - `lstm`: the PyTorch tutorial's nn.LSTM(5, 6, 2), the fixture's inputs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::ArrayD;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use rnn_run::TensorExt;

fn main() -> ort::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backend, workload, calls] = &args[..] else {
        eprintln!("usage: ort-latency rnn-run|tract silero|nsnet2|lstm CALLS");
        std::process::exit(2);
    };
    let calls: usize = calls.parse().expect("CALLS is a number");
    match backend.as_str() {
        "rnn-run" => ort::set_api(rnn_run_ort::api()),
        #[cfg(feature = "tract")]
        "tract" => ort::set_api(ort_tract::api()),
        other => panic!("unknown backend {other}"),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let env = ort::init().build()?;
    let open = |path: PathBuf| {
        // All optimizations, as onnxruntime applies by default: ort-tract optimizes the graph
        // only when a level other than Disable is set (unset, it runs tract's unoptimized
        // typed graph, several times slower); rnn-run-ort accepts the level and ignores it.
        Session::builder(&env)?
            .with_optimization_level(GraphOptimizationLevel::All)?
            .with_intra_threads(1)?
            .commit_from_file(path)
    };
    let mut times = match workload.as_str() {
        "silero" => silero(open(root.join("fixtures/realworld/silero_vad_16k_op15.onnx"))?, &root, calls)?,
        "nsnet2" => {
            let session = open(root.join("fixtures/realworld/nsnet2-20ms-baseline.onnx"))?;
            let input = npz(&root.join("fixtures/realworld/cases/nsnet2-20ms-baseline/100frames_call0_inputs.npz"), "input");
            stateless(session, vec![input], calls)?
        }
        "lstm" => {
            let dir = root.join("fixtures/tutorial/lstm_legacy");
            let inputs = (0..3)
                .map(|i| rnn_run::npy::read_npy(dir.join(format!("input_{i}.npy"))).unwrap().to_array::<f32>().unwrap())
                .collect();
            stateless(open(dir.join("model.onnx"))?, inputs, calls)?
        }
        other => panic!("unknown workload {other}"),
    };
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{{\"backend\": \"{backend}\", \"workload\": \"{workload}\", \"calls\": {}, \"median_us\": {:.2}, \"q1_us\": {:.2}, \"q3_us\": {:.2}}}",
        times.len(),
        at(0.5),
        at(0.25),
        at(0.75)
    );
    Ok(())
}

fn npz(path: &Path, name: &str) -> ArrayD<f32> {
    let members = rnn_run::npy::read_npz(path).unwrap();
    members.iter().find(|(n, _)| n == name).unwrap().1.to_array::<f32>().unwrap()
}

/// Per-call µs of `calls` runs after a warm-up of a tenth as many (at least 3).
fn stateless(mut session: Session, inputs: Vec<ArrayD<f32>>, calls: usize) -> ort::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(calls);
    for k in 0..calls + (calls / 10).max(3) {
        let values: Vec<ort::session::SessionInputValue> = inputs
            .iter()
            .map(|a| TensorRef::from_array_view(a.view()).map(Into::into))
            .collect::<ort::Result<_>>()?;
        let start = Instant::now();
        let outputs = session.run(values.as_slice())?;
        let _ = outputs[0].try_extract_array::<f32>()?;
        drop(outputs);
        if k >= (calls / 10).max(3) {
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(times)
}

/// Silero VAD frame by frame, the fixture's 8 frames over and over, state fed back.
fn silero(mut session: Session, root: &Path, calls: usize) -> ort::Result<Vec<f64>> {
    let dir = root.join("fixtures/realworld/cases/silero_vad_16k_op15");
    let frames: Vec<ArrayD<f32>> = (0..8)
        .map(|k| npz(&dir.join(format!("16k_carry_call{k}_inputs.npz")), "input"))
        .collect();
    let sr = ndarray::arr0(16000i64);
    let mut state = ndarray::Array3::<f32>::zeros((2, 1, 128)).into_dyn();
    let warm = (calls / 10).max(3);
    let mut times = Vec::with_capacity(calls);
    for k in 0..calls + warm {
        let start = Instant::now();
        let outputs = session.run(ort::inputs![
            "input" => TensorRef::from_array_view(frames[k % frames.len()].view())?,
            "state" => TensorRef::from_array_view(state.view())?,
            "sr" => TensorRef::from_array_view(&sr)?,
        ])?;
        let _probability = outputs["output"].try_extract_array::<f32>()?[[0, 0]];
        state = outputs["stateN"].try_extract_array::<f32>()?.to_owned();
        drop(outputs);
        if k >= warm {
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(times)
}
