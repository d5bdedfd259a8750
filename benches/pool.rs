//! Many streams, one step: 64 concurrent LSTM H=256 streams (and Silero VAD's), pooled into
//! batched steps, against each stream run on its own.
//!
//! `cargo bench --bench pool`

use std::time::Duration;

use rnn_run::{Model, PoolOptions, Tensor};

#[path = "../tests/common/models.rs"]
mod models;
#[path = "../tests/common/proto.rs"]
mod proto;

fn print(name: &str, r: &rnn_run::pool::ServeReport, wait: Duration) {
    println!(
        "{name}: {} streams x {} frames: pooled {:.0} frames/s (mean batch {:.1}), solo {:.0} \
         frames/s, speedup {:.2}x; queued p50 {:.0} us, p99 {:.0} us (max wait {:.0} us); push \
         to result p50 {:.0} us, p99 {:.0} us",
        r.streams,
        r.frames,
        r.pooled_fps,
        r.mean_batch,
        r.solo_fps,
        r.pooled_fps / r.solo_fps,
        r.queued.0.as_secs_f64() * 1e6,
        r.queued.1.as_secs_f64() * 1e6,
        wait.as_secs_f64() * 1e6,
        r.latency.0.as_secs_f64() * 1e6,
        r.latency.1.as_secs_f64() * 1e6,
    );
}

fn main() {
    let wait = Duration::from_millis(2);
    let lstm = Model::from_bytes(&models::lstm(256, 256, None)).expect("model loads");
    let frame = vec![Tensor::zero::<f32>(&[1, 1, 256]).unwrap()];
    for streams in [16, 64] {
        let options = PoolOptions {
            max_wait: wait,
            ..Default::default()
        };
        let r = rnn_run::pool::serve_bench(&lstm, options, vec![], frame.clone(), streams, 200)
            .expect("serve");
        print("LSTM H=256", &r, wait);
    }

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/realworld");
    let silero = Model::load(dir.join("silero_vad_16k_op15.onnx")).expect("model loads");
    let inputs =
        rnn_run::npy::read_npz(dir.join("cases/silero_vad_16k_op15/16k_carry_call0_inputs.npz"))
            .expect("fixture");
    let get = |name: &str| inputs.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let options = PoolOptions {
        feedback: vec![("state".into(), "stateN".into())],
        max_wait: wait,
        ..Default::default()
    };
    let r = rnn_run::pool::serve_bench(
        &silero,
        options,
        vec![get("sr")],
        vec![get("input")],
        64,
        100,
    )
    .expect("serve");
    print("Silero VAD", &r, wait);
}
