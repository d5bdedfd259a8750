//! Bytes → the `.npy` and `.npz` readers.
//!
//! Properties: no panic; the in-memory reader (`parse_npy`) and the file reader (`read_npy`)
//! agree; a tensor that parses writes back (`npy_bytes`) to bytes that parse to the same
//! tensor; `parse_npy_header` accepts every file `parse_npy` accepts.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rnn_run::npy::{
    npy_bytes, parse_npy, parse_npy_header, parse_npz, read_npy, DEFLATE_MAX_RATIO, NPZ_MAX_BYTES,
};

#[path = "common.rs"]
mod common;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("rnn-run-fuzz-{}.npy", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    common::install_panic_hook();

    let parsed = parse_npy(data, "fuzz.npy");
    let header = parse_npy_header(data, "fuzz.npy");
    if parsed.is_ok() {
        assert!(
            header.is_ok(),
            "parse_npy accepted what parse_npy_header refused"
        );
    }

    // The file reader takes another path (preamble, seek, sized read): same verdict.
    if std::fs::write(scratch(), data).is_ok() {
        let from_file = read_npy(scratch());
        match (&parsed, &from_file) {
            (Ok(a), Ok(b)) => assert!(same(a, b), "read_npy and parse_npy disagree"),
            (Ok(_), Err(e)) => panic!("read_npy refused what parse_npy accepted: {e}"),
            (Err(e), Ok(_)) => panic!("parse_npy refused what read_npy accepted: {e}"),
            (Err(_), Err(_)) => {}
        }
    }

    if let Ok(t) = &parsed {
        let bytes = npy_bytes(t).expect("a parsed tensor can be written");
        let back = parse_npy(&bytes, "back.npy").expect("written bytes parse");
        assert!(same(t, &back), "npy round trip changed the tensor");
    }

    if let Ok(members) = parse_npz(data, "fuzz.npz") {
        let total: u64 = members
            .iter()
            .map(|(_, t)| (t.len() * t.datum_type().size_of()) as u64)
            .sum();
        // Stored members cannot outweigh the archive, deflated ones cannot expand more than
        // DEFLATE allows, and all together stay within the reader's bound.
        let most = (data.len() as u64)
            .saturating_mul(DEFLATE_MAX_RATIO)
            .saturating_add(1024 * members.len() as u64)
            .min(NPZ_MAX_BYTES);
        assert!(
            total <= most,
            "{} members hold {total} bytes, from a {}-byte archive",
            members.len(),
            data.len()
        );
    }
});

/// Same element type, shape and bytes (NaN payloads included).
fn same(a: &rnn_run::Tensor, b: &rnn_run::Tensor) -> bool {
    a.datum_type() == b.datum_type()
        && a.shape() == b.shape()
        && npy_bytes(a).ok() == npy_bytes(b).ok()
}
