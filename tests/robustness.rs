//! Bad files from elsewhere: truncated models, external data that is missing or short, corrupt
//! `.npz` archives, and the inputs the fuzz targets (`fuzz/`) found. Each must be a clean
//! `Err` from the library and one `error:` line with exit code 2 from the command line,
//! never a panic.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use prost::Message;
use rnn_run::npy::parse_npz;
use rnn_run::{Error, Model};
use tempfile::TempDir;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

mod common;
use common::proto::{attr_int, float_initializer, model_bytes, value_info, Dim};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Loads from bytes, turning a panic into a test failure that names the case.
fn load_bytes(bytes: &[u8], what: &str) -> rnn_run::Result<Model> {
    catch_unwind(AssertUnwindSafe(|| Model::from_bytes(bytes)))
        .unwrap_or_else(|_| panic!("Model::from_bytes panicked on {what}"))
}

// ------------------------------------------------------------------------------------------
// Truncated model files

/// Cut lengths: the first bytes one by one, then a spread over the whole file.
fn cuts(len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..64.min(len)).collect();
    v.extend((1..64).map(|k| k * len / 64));
    v.push(len - 1);
    v.sort();
    v.dedup();
    v
}

/// Where the top-level protobuf fields of a file end. Cut there, a file is a shorter but
/// well-formed `ModelProto` (the fields after the cut are simply absent).
fn field_ends(bytes: &[u8]) -> Vec<usize> {
    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[*at];
            *at += 1;
            v |= ((byte & 0x7F) as u64) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut ends = vec![];
    let mut at = 0;
    while at < bytes.len() {
        let tag = varint(bytes, &mut at);
        match tag & 7 {
            0 => {
                varint(bytes, &mut at);
            }
            1 => at += 8,
            2 => at += varint(bytes, &mut at) as usize,
            5 => at += 4,
            w => panic!("unexpected wire type {w}"),
        }
        ends.push(at);
    }
    ends
}

const TRUNCATED: [&str; 5] = [
    "tutorial/lstm_legacy/model.onnx",
    "tutorial/gru_legacy/model.onnx",
    "tutorial/rnn_legacy_batch/model.onnx",
    "onnx_node/test_lstm_defaults/model.onnx",
    "matrix/gru_l2_bi_bf_legacy_op9/model.onnx",
];

#[test]
fn truncated_models_are_invalid_model_errors() {
    for name in TRUNCATED {
        let bytes = fs::read(fixture(name)).unwrap();
        assert!(load_bytes(&bytes, name).is_ok(), "{name} loads whole");
        let ends = field_ends(&bytes);
        for cut in cuts(bytes.len()) {
            if ends.contains(&cut) {
                continue; // a well-formed shorter model: see the test below
            }
            let what = format!("{name} cut to {cut} of {} bytes", bytes.len());
            match load_bytes(&bytes[..cut], &what) {
                Err(Error::InvalidModel {
                    what: source,
                    message,
                }) => {
                    assert_eq!(source, "model", "{what}");
                    assert!(
                        message.starts_with("not an ONNX model")
                            || message.starts_with("the file is empty"),
                        "{what}: {message}"
                    );
                }
                Err(other) => panic!("{what}: expected InvalidModel, got {other:?}"),
                Ok(_) => panic!("{what}: a truncated model loaded"),
            }
        }
    }
}

/// Cut between two top-level fields, the file is a valid protobuf missing its last fields.
/// Those without the graph are refused; never a panic.
#[test]
fn models_cut_between_fields_never_panic() {
    for name in TRUNCATED {
        let bytes = fs::read(fixture(name)).unwrap();
        for cut in field_ends(&bytes) {
            let what = format!(
                "{name} cut after a field, at {cut} of {} bytes",
                bytes.len()
            );
            let proto = tract_onnx::pb::ModelProto::decode(&bytes[..cut]).unwrap();
            let result = load_bytes(&bytes[..cut], &what);
            if proto.graph.is_none() {
                assert!(
                    matches!(result, Err(Error::InvalidModel { .. })),
                    "{what}: {result:?}"
                );
            }
        }
    }
}

/// A model cut right before its `opset_import` (the last field PyTorch and the ONNX node
/// tests write) used to load, with opset 0, which `NodeSpec` reads as "any opset". ONNX
/// requires `opset_import`; `src/precheck.rs` refuses a model without a default-domain entry,
/// which catches this truncation.
#[test]
fn model_without_opset_import_is_refused() {
    let bytes = fs::read(fixture("onnx_node/test_lstm_defaults/model.onnx")).unwrap();
    let mut proto = tract_onnx::pb::ModelProto::decode(&bytes[..]).unwrap();
    proto.opset_import.clear();
    let result = load_bytes(&proto.encode_to_vec(), "no opset_import");
    assert!(
        matches!(result, Err(Error::InvalidModel { .. })),
        "{result:?}"
    );
}

#[test]
fn truncated_model_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(fixture("tutorial/lstm_legacy/model.onnx")).unwrap();
    let path = dir.path().join("cut.onnx");
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Model::load(&path).unwrap_err();
    assert!(matches!(err, Error::InvalidModel { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("cut.onnx"), "{text}");
    assert!(text.contains("not an ONNX model"), "{text}");
}

// ------------------------------------------------------------------------------------------
// External data

/// A dynamo export whose weights live in `model.onnx.data`, copied into a temporary directory
/// with its inputs.
const EXTERNAL: &str = "tutorial/lstm_dynamo";

struct External {
    dir: TempDir,
    data: Vec<u8>,
}

impl External {
    fn new() -> External {
        let src = fixture(EXTERNAL);
        let dir = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(&src).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if name.starts_with("input_") || name == "model.onnx" {
                fs::copy(&p, dir.path().join(&name)).unwrap();
            }
        }
        let data = fs::read(src.join("model.onnx.data")).unwrap();
        External { dir, data }
    }

    fn model(&self) -> PathBuf {
        self.dir.path().join("model.onnx")
    }

    fn write_data(&self, len: usize) {
        fs::write(self.dir.path().join("model.onnx.data"), &self.data[..len]).unwrap();
    }

    fn load(&self) -> rnn_run::Result<Model> {
        catch_unwind(AssertUnwindSafe(|| Model::load(self.model())))
            .unwrap_or_else(|_| panic!("Model::load panicked"))
    }

    /// Runs the command line in the directory; stderr with the directory's path redacted.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::cargo_bin("rnn-run")
            .unwrap()
            .current_dir(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stdout.is_empty(), "stdout: {stdout}");
        assert!(stderr.starts_with("error: "), "stderr: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
        assert!(!stderr.contains("panicked"), "stderr: {stderr}");
        format!(
            "exit code: {}\n{}",
            out.status.code().unwrap_or(-1),
            redact(&stderr, self.dir.path())
        )
    }
}

fn redact(text: &str, dir: &Path) -> String {
    let mut text = text.to_string();
    if let Ok(canonical) = dir.canonicalize() {
        text = text.replace(canonical.to_str().unwrap(), "[dir]");
    }
    text.replace(dir.to_str().unwrap(), "[dir]")
}

fn model_args() -> Vec<&'static str> {
    vec!["model.onnx", "input_0.npy", "input_1.npy", "input_2.npy"]
}

#[test]
fn external_data_whole_loads_and_runs() {
    let e = External::new();
    e.write_data(e.data.len());
    e.load().unwrap();
}

#[test]
fn external_data_missing_is_an_error_naming_the_file() {
    let e = External::new();
    let err = e.load().unwrap_err();
    assert!(matches!(err, Error::InvalidModel { .. }), "{err:?}");
    assert!(err.to_string().contains("model.onnx.data"), "{err}");
}

#[test]
fn external_data_short_is_an_error() {
    let e = External::new();
    for len in [0, 1, e.data.len() / 2, e.data.len() - 1] {
        e.write_data(len);
        let err = e.load().unwrap_err();
        assert!(matches!(err, Error::InvalidModel { .. }), "{len}: {err:?}");
        assert!(err.to_string().contains("external data"), "{len}: {err}");
    }
}

/// The message for a short data file names it, as the one for a missing file does (tract's
/// own was "external data range 1056..1632 is out of bounds (1100 bytes)"; `src/precheck.rs`
/// checks each external tensor's file and range before tract reads it).
#[test]
fn external_data_short_names_the_file() {
    let e = External::new();
    e.write_data(e.data.len() / 2);
    let err = e.load().unwrap_err();
    assert!(err.to_string().contains("model.onnx.data"), "{err}");
}

#[test]
fn cli_external_data_missing() {
    let e = External::new();
    insta::assert_snapshot!("cli_external_data_missing", e.cli(&model_args()));
    insta::assert_snapshot!(
        "cli_inspect_external_data_missing",
        e.cli(&["inspect", "model.onnx"])
    );
}

#[test]
fn cli_external_data_short() {
    let e = External::new();
    e.write_data(e.data.len() / 2);
    insta::assert_snapshot!("cli_external_data_short", e.cli(&model_args()));
}

#[test]
fn cli_truncated_model() {
    let e = External::new();
    let bytes = fs::read(fixture("tutorial/lstm_legacy/model.onnx")).unwrap();
    for (name, len) in [("cut_4.onnx", 4), ("cut_half.onnx", bytes.len() / 2)] {
        fs::write(e.dir.path().join(name), &bytes[..len]).unwrap();
    }
    insta::assert_snapshot!(
        "cli_truncated_model_4_bytes",
        e.cli(&["cut_4.onnx", "input_0.npy"])
    );
    insta::assert_snapshot!(
        "cli_truncated_model_half",
        e.cli(&["cut_half.onnx", "input_0.npy"])
    );
}

// ------------------------------------------------------------------------------------------
// .npz archives

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A stored ZIP archive holding `member` once, listed `entries` times in the central
/// directory.
fn zip_with_repeated_entry(name: &str, member: &[u8], entries: u16) -> Vec<u8> {
    let names = vec![name.to_string(); entries as usize];
    zip_with_entries(&names, member)
}

/// A stored ZIP archive holding `member` once (under `names[0]`), listed in the central
/// directory once per name, every entry pointing at that one member.
fn zip_with_entries(names: &[String], member: &[u8]) -> Vec<u8> {
    let name = names[0].as_str();
    let entries = names.len() as u16;
    let crc = crc32(member);
    let mut out = vec![];
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method, time, date
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(member.len() as u32).to_le_bytes());
    out.extend_from_slice(&(member.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(member);
    let cd_offset = out.len();
    for name in names {
        out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // made by, needed, flags, method, time, date
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(member.len() as u32).to_le_bytes());
        out.extend_from_slice(&(member.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 12]); // extra, comment, disk, internal and external attributes
        out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        out.extend_from_slice(name.as_bytes());
    }
    let cd_size = out.len() - cd_offset;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&(cd_size as u32).to_le_bytes());
    out.extend_from_slice(&(cd_offset as u32).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[test]
fn npz_listing_one_member_many_times_is_refused() {
    let array = rnn_run::Tensor::from(ndarray::Array1::<f32>::zeros(16 * 1024));
    let npy = rnn_run::npy::npy_bytes(&array).unwrap();
    // Once is a valid archive.
    let one = zip_with_repeated_entry("x.npy", &npy, 1);
    let members = parse_npz(&one, "one.npz").unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].1, array);
    // 4000 entries for one 64 KiB member: 256 MiB of arrays from a 300 KiB file.
    let bomb = zip_with_repeated_entry("x.npy", &npy, 4000);
    let err = parse_npz(&bomb, "bomb.npz").unwrap_err().to_string();
    assert!(err.contains("bomb.npz"), "{err}");
    assert!(
        err.contains("lists a member name more than once (names: 'x.npy')"),
        "{err}"
    );
    // The same member under 4000 names: their data cannot all fit in the archive.
    let names: Vec<String> = (0..4000).map(|i| format!("x{i}.npy")).collect();
    let bomb = zip_with_entries(&names, &npy);
    let err = parse_npz(&bomb, "bomb.npz").unwrap_err().to_string();
    assert!(err.contains("bomb.npz"), "{err}");
    assert!(err.contains("more than the archive"), "{err}");
}

// ------------------------------------------------------------------------------------------
// Inputs the fuzz targets found (fuzz/; fixtures/robustness/)

/// `x → Identity → y`, with graph outputs named `outputs` (float32 `[1]` everywhere).
fn identity_model(outputs: &[&str]) -> Vec<u8> {
    let float = |name: &str| value_info(name, DataType::Float, Some(&[Dim::N(1)]));
    let graph = pb::GraphProto {
        node: vec![pb::NodeProto {
            input: vec!["x".into()],
            output: vec!["y".into()],
            op_type: "Identity".into(),
            ..Default::default()
        }],
        input: vec![float("x")],
        output: outputs.iter().map(|o| float(o)).collect(),
        ..Default::default()
    };
    model_bytes(graph, 17)
}

/// `x → Identity → (y, "")`: an empty optional output name, as exporters write for RNN
/// nodes' absent Y or Y_h, with graph outputs named `outputs`.
fn identity_model_with_empty_output(outputs: &[&str]) -> Vec<u8> {
    let mut proto = pb::ModelProto::decode(&identity_model(outputs)[..]).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    graph.node[0].output.push(String::new());
    proto.encode_to_vec()
}

/// A graph output with an empty name, in a graph where a node leaves an optional output
/// unnamed (""): tract registers only non-empty output names, so its parse panics as for any
/// unknown output (tract-onnx src/model.rs:187). The pre-check once let it through, taking
/// the node's "" for a producer of ""; it now says which output has no name. Seen once in the third
/// `load_model` run.
#[test]
fn graph_output_with_empty_name_is_named_in_the_error() {
    let bytes = identity_model_with_empty_output(&["y", ""]);
    match load_bytes(&bytes, "empty output name") {
        Err(Error::InvalidModel { message, .. }) => {
            assert!(
                message.contains("graph output 2 of 2 has an empty name"),
                "{message}"
            )
        }
        other => panic!("expected InvalidModel, got {other:?}"),
    }
}

#[test]
fn graph_output_with_empty_name_is_an_error() {
    let bytes = identity_model_with_empty_output(&["y", ""]);
    assert!(matches!(
        load_bytes(&bytes, "empty output name"),
        Err(Error::InvalidModel { .. })
    ));
    load_bytes(
        &identity_model_with_empty_output(&["y"]),
        "unnamed optional output",
    )
    .unwrap();
}

#[test]
fn identity_model_loads() {
    load_bytes(&identity_model(&["y"]), "identity").unwrap();
}

/// fuzz `load_model`, first crash: a graph output that no node produces (the fuzzer renamed
/// `output` to `outpxt` in a PyTorch export). tract 0.23.9 panics in `Onnx::parse`
/// (tract-onnx src/model.rs:187, `outlets_by_name[&output.name]`). `src/precheck.rs` now
/// refuses such outputs first, and `Model::from_parts` runs tract's parse under
/// `catch_unwind` as well.
#[test]
fn graph_output_no_node_produces_is_an_error() {
    let minimal = identity_model(&["z"]);
    let found = fs::read(fixture("robustness/load_model_output_not_produced.onnx")).unwrap();
    for (what, bytes) in [("minimal", &minimal[..]), ("fuzzer's input", &found[..])] {
        match load_bytes(bytes, what) {
            Err(Error::InvalidModel { .. }) => {}
            other => panic!("{what}: expected InvalidModel, got {other:?}"),
        }
    }
}

/// fuzz `load_model`, second finding: a `Transpose` whose `perm` is not a permutation
/// (`[1, 0, 1]`, mutated from a PyTorch export's `[1, 0, 2]`). tract-core's `perm_to_cycles`
/// then loops forever, pushing onto a vector until memory runs out (libFuzzer: out-of-memory,
/// malloc(4294967296), in `PermuteAxes::wire` under `Model::from_parts` → `optimize`). No
/// `catch_unwind` helps; `src/precheck.rs` checks every `Transpose` perm first.
///
/// The command line runs under a 2 GiB address-space limit, so that a regression ends in an
/// allocation failure rather than exhausting the machine.
#[test]
fn transpose_perm_not_a_permutation_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        fixture("robustness/load_model_transpose_perm_not_permutation.onnx"),
        dir.path().join("model.onnx"),
    )
    .unwrap();
    let bin = assert_cmd::cargo::cargo_bin("rnn-run");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 2097152; exec '{}' inspect model.onnx",
            bin.display()
        ))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(stderr.contains("perm"), "stderr: {stderr}");
}

/// Runs `rnn-run ARGS` in `dir` under a 2 GiB address-space limit: exit code and stderr.
fn cli_within_2_gib(dir: &Path, args: &str) -> (Option<i32>, String) {
    let bin = assert_cmd::cargo::cargo_bin("rnn-run");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 2097152; exec '{}' {args}",
            bin.display()
        ))
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// fuzz `load_model`, third finding: a legacy `nn.RNN(5, 4, 3)` export whose h0 comes from
/// `ConstantOfShape([L, batch, 4])`, with L mutated from 3 to 301989894. The graph is valid;
/// running it makes tract allocate 4.8 GB per batch entry for the zeros
/// (`MultiBroadcastTo::eval` → `Tensor::broadcast_to_shape`, under `Model::run`), before the
/// recurrent nodes ever see their slices. With less memory than that, tract panics ("failed
/// to allocate"), which `Model::run` does not catch (the CLI does: "internal error"). The fix
/// belongs in src/model.rs: check the byte size of every concrete fact of the typed graph
/// against a limit at load (and after binding the symbols at run), naming the node.
#[test]
fn huge_constant_of_shape_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        fixture("robustness/load_model_constant_of_shape_14gb.onnx"),
        dir.path().join("model.onnx"),
    )
    .unwrap();
    let x = rnn_run::Tensor::from(ndarray::Array3::<f32>::zeros((2, 1, 5)));
    rnn_run::npy::write_npy(dir.path().join("x.npy"), &x).unwrap();
    let (code, stderr) = cli_within_2_gib(dir.path(), "model.onnx x.npy");
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(!stderr.contains("internal error"), "stderr: {stderr}");
    assert!(stderr.contains("ConstantOfShape"), "stderr: {stderr}");
}

/// An LSTM with input_size 0 (W is `[1, 16, 0]`) given X of shape `[2^40, 1, 0]`: the `.npy`
/// holds no data at all (128 bytes of header), yet `Layer::run` allocates Y as
/// `[T, D, B, H]` = 2^40 × 4 floats (16 TiB) and the process aborts ("memory allocation of
/// 17592186044416 bytes failed", exit 134): an allocation failure is not a panic and no
/// `catch_unwind` sees it. `Layer::run` now sizes Y (and the whole-sequence projection) with
/// checked products against the 4 GiB limit first, returning a node error naming X's shape.
#[test]
fn empty_x_with_huge_sequence_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let x = value_info(
        "X",
        DataType::Float,
        Some(&[Dim::S("T"), Dim::S("B"), Dim::N(0)]),
    );
    let zeros = |name: &str, dims: &[i64]| {
        float_initializer(name, dims, vec![0.0; dims.iter().product::<i64>() as usize])
    };
    let graph = pb::GraphProto {
        node: vec![pb::NodeProto {
            input: vec!["X".into(), "W".into(), "R".into()],
            output: vec!["Y".into(), "Y_h".into()],
            name: "lstm".into(),
            op_type: "LSTM".into(),
            attribute: vec![attr_int("hidden_size", 4)],
            ..Default::default()
        }],
        initializer: vec![zeros("W", &[1, 16, 0]), zeros("R", &[1, 16, 4])],
        input: vec![x],
        output: vec![
            value_info("Y", DataType::Float, None),
            value_info("Y_h", DataType::Float, None),
        ],
        ..Default::default()
    };
    fs::write(dir.path().join("model.onnx"), model_bytes(graph, 14)).unwrap();
    let mut header =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1, 0), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    fs::write(dir.path().join("x.npy"), npy).unwrap();
    let (code, stderr) = cli_within_2_gib(dir.path(), "model.onnx x.npy");
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(!stderr.contains("internal error"), "stderr: {stderr}");
}

// ------------------------------------------------------------------------------------------
// Files that are not regular files: a device such as /dev/zero never ends.

#[cfg(unix)]
#[test]
fn npy_and_npz_readers_refuse_devices_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.npz")).unwrap();
    for (what, result) in [
        (
            "npz device",
            rnn_run::npy::read_npz(dir.path().join("zero.npz")).map(|_| ()),
        ),
        (
            "npy device",
            rnn_run::npy::read_npy("/dev/zero").map(|_| ()),
        ),
        (
            "npz directory",
            rnn_run::npy::read_npz(dir.path()).map(|_| ()),
        ),
        (
            "npy directory",
            rnn_run::npy::read_npy(dir.path()).map(|_| ()),
        ),
    ] {
        let err = result.expect_err(what);
        assert!(matches!(err, Error::Io { .. }), "{what}: {err:?}");
        assert!(
            err.to_string().contains("not a regular file"),
            "{what}: {err}"
        );
    }
}

#[cfg(unix)]
#[test]
fn model_loader_refuses_devices_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.onnx")).unwrap();
    for (what, path) in [
        ("device", dir.path().join("zero.onnx")),
        ("directory", dir.path().to_path_buf()),
    ] {
        match Model::load(&path) {
            Err(Error::InvalidModel { message, .. }) => {
                assert!(message.contains("not a regular file"), "{what}: {message}")
            }
            other => panic!("{what}: expected InvalidModel, got {other:?}"),
        }
    }
}

#[cfg(unix)]
#[test]
fn cli_refuses_devices_and_directories() {
    let e = External::new();
    e.write_data(e.data.len());
    std::os::unix::fs::symlink("/dev/zero", e.dir.path().join("zero.onnx")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", e.dir.path().join("zero.npz")).unwrap();
    fs::create_dir(e.dir.path().join("folder.onnx")).unwrap();
    insta::assert_snapshot!(
        "cli_model_is_a_device",
        e.cli(&["zero.onnx", "input_0.npy"])
    );
    insta::assert_snapshot!(
        "cli_model_is_a_directory",
        e.cli(&["inspect", "folder.onnx"])
    );
    insta::assert_snapshot!("cli_npz_is_a_device", e.cli(&["model.onnx", "zero.npz"]));
}

/// A FIFO (named pipe) blocks `open()` until a writer comes: every reader of the library
/// (model, model description, external data, `.npy`, `.npz`, PyTorch weights) refuses one
/// at once, naming it. Each call runs under a 10 s guard that fails the test instead of
/// hanging it.
#[cfg(unix)]
#[test]
fn fifos_are_refused_without_blocking() {
    for (what, call) in common::hostile::fifo_calls() {
        let err = call().expect_err(what);
        assert!(
            err.contains("not a regular file (a FIFO (named pipe))"),
            "{what}: {err}"
        );
    }
}

/// The same on the command line: a FIFO as the model, an input (by position, by name, an
/// `.npz`) or an `--expect` file is one `error:` line, within 20 s.
#[cfg(unix)]
#[test]
fn cli_refuses_fifos_without_blocking() {
    let bin = assert_cmd::cargo::cargo_bin("rnn-run");
    let cases: Vec<_> = common::hostile::cli_cases()
        .into_iter()
        .filter(|c| !c.fifos.is_empty())
        .collect();
    assert!(cases.len() >= 6);
    for case in cases {
        let stderr = common::hostile::run_cli_case(&bin, &case);
        assert!(
            stderr.contains(case.fifos[0]) && stderr.contains("a FIFO (named pipe)"),
            "{}: {stderr}",
            case.name
        );
    }
}

/// External data `location` must be a relative path inside the model's directory (tract
/// refuses anything else). The pre-check in src/precheck.rs looks the file up first, with
/// `dir.join(location)`, so an absolute or `..` location is stat-ed outside the directory and
/// its size shows in the message ("external data file /etc/hostname holds 13 bytes"): a model
/// file can probe which files exist elsewhere. The check should refuse such locations before
/// touching them.
#[test]
fn external_data_outside_the_model_directory_is_refused_unread() {
    let e = External::new();
    let bytes = fs::read(e.model()).unwrap();
    let mut proto = pb::ModelProto::decode(&bytes[..]).unwrap();
    // The model goes one level down; the file it probes stays beside the subdirectory.
    let sub = e.dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let outside = e.dir.path().join("outside.bin");
    fs::write(&outside, [0u8; 13]).unwrap();
    let mut locations = vec![
        outside.to_str().unwrap(),
        "../outside.bin",
        "./../outside.bin",
    ];
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, sub.join("link.bin")).unwrap();
        locations.push("link.bin");
    }
    for location in locations {
        for t in &mut proto.graph.as_mut().unwrap().initializer {
            for entry in &mut t.external_data {
                if entry.key == "location" {
                    entry.value = location.to_string();
                }
            }
        }
        fs::write(sub.join("probe.onnx"), proto.encode_to_vec()).unwrap();
        let err = catch_unwind(AssertUnwindSafe(|| Model::load(sub.join("probe.onnx"))))
            .unwrap_or_else(|_| panic!("Model::load panicked"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("13 bytes"), "{location}: {err}");
        assert!(err.contains("relative"), "{location}: {err}");
    }
}

/// fuzz `load_model`, strict run of session 3: small models (mutated fixtures) on which tract
/// 0.23.9 itself panics, in smallvec (lib.rs:1513 and :1538), tract-core (model/fact.rs:21,
/// ops/array/gather.rs:75) or tract-onnx (tensor.rs:193, ops/array/slice.rs:86). The library
/// runs tract under `catch_unwind`; each must come back as an error saying tract failed,
/// whether at load or at run time (on zero inputs of the declared shapes, as the target does),
/// unless the loader refuses the model by name first.
#[test]
fn tract_panics_become_errors() {
    for name in [
        "fact_21",
        "gather_75",
        "onnx_tensor_193",
        "slice_86",
        "smallvec_1513",
        "smallvec_1538",
    ] {
        let bytes = fs::read(fixture(&format!("robustness/tract_panic_{name}.onnx"))).unwrap();
        let outcome = catch_unwind(AssertUnwindSafe(|| -> rnn_run::Result<()> {
            let model = Model::from_bytes(&bytes)?;
            // The target's choice for symbolic dimensions, so the same panic is reached.
            let symbolic = 1 + bytes.len() % 3;
            let inputs = model
                .inputs()
                .iter()
                .map(|info| {
                    rnn_run::Tensor::zero_dt(info.dtype, &info.shape_with(symbolic)).unwrap()
                })
                .collect();
            model.run(inputs).map(|_| ())
        }));
        let err = outcome
            .unwrap_or_else(|_| panic!("{name}: a panic escaped the library"))
            .expect_err(name)
            .to_string();
        // fact_21's and smallvec_1538's mutations turned a Constant into an unknown op
        // (Cosstant, Constnat), which the loader now refuses by name before tract can reach
        // its panic; the four others still panic inside tract.
        // smallvec_1538's Constnat also holds a value shorter than its dims: the pre-check
        // (src/precheck.rs) names it first.
        let refused_first = ["fact_21", "smallvec_1538"].contains(&name)
            && (err.contains(") is not an operator rnn-run or tract can run")
                || err.contains("attribute 'value': dims [61] call for 61 values"));
        assert!(
            err.contains("tract failed while") || refused_first,
            "{name}: {err}"
        );
    }
}
