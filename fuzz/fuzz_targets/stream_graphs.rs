//! Random graphs of the streaming grammar (`tests/common/random_graph.rs`), chosen by the
//! fuzzer's bytes: a stream that is accepted must equal the whole run, and a refusal must
//! name a node that mixes time steps. The property test `tests/stream_property.rs` runs the
//! same check on seeded graphs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../tests/common/proto.rs"]
mod proto;
#[allow(dead_code)]
#[path = "../../tests/common/random_graph.rs"]
mod random_graph;
#[allow(dead_code)]
#[path = "../../tests/common/streaming.rs"]
mod streaming;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = streaming::check_random_graph(&mut random_graph::Bytes(data)) {
        panic!("{e}");
    }
});
