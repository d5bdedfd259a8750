//! Every refusal the test suite provokes speaks the model's words: the hostile cases of
//! tests/common/hostile.rs (library calls and command lines), every `error:` line the CLI
//! snapshots hold (tests/snapshots/), and every model of fixtures/robustness/ loaded and run.
//! A message fails on tract's internals: node numbers (`#54`), `Sym(`, `Val(`, `Infering`,
//! `GivenAllRule`, source lines (`blob.rs:76`), `registry/src`, empty quotes, Rust Debug
//! formatting (`StreamId(1)`). The test prints how many messages it checked.

use std::path::Path;

mod common;
use common::hostile::{self, engine_internals};

#[test]
fn every_refusal_speaks_the_models_words() {
    let mut checked: Vec<(String, String)> = vec![];
    let mut accepted: Vec<String> = vec![];

    for case in hostile::library_cases() {
        let name = case.name.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(case.call))
            .unwrap_or_else(|_| panic!("{name}: panicked"));
        match outcome {
            Ok(()) => accepted.push(name),
            Err(message) => checked.push((name, message)),
        }
    }

    let bin = assert_cmd::cargo::cargo_bin("rnn-run");
    for case in hostile::cli_cases() {
        let message = hostile::run_cli_case(&bin, &case);
        checked.push((format!("rnn-run: {}", case.name), message));
    }

    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut snapshot_messages = 0;
    for entry in std::fs::read_dir(snapshots).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|l| l.starts_with("error: ")) {
            snapshot_messages += 1;
            checked.push((
                format!("snapshot {}", path.file_name().unwrap().to_string_lossy()),
                line.to_string(),
            ));
        }
    }
    assert!(
        snapshot_messages > 20,
        "only {snapshot_messages} snapshot messages"
    );

    for (name, bytes) in hostile::robustness_models() {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            hostile::load_and_run(&bytes)
        }))
        .unwrap_or_else(|_| panic!("{name}: panicked"));
        if let Err(message) = outcome {
            checked.push((format!("fixtures/robustness/{name}"), message));
        }
    }

    assert!(
        accepted.is_empty(),
        "expected refusals, these succeeded: {accepted:?}"
    );
    let failures: Vec<String> = checked
        .iter()
        .filter_map(|(case, message)| {
            let found = engine_internals(message);
            (!found.is_empty()).then(|| format!("{case}: {} in:\n    {message}", found.join(", ")))
        })
        .collect();
    println!("checked {} messages", checked.len());
    for (case, message) in &checked {
        println!("{case}: {message}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} messages speak of the engine:\n{}",
        failures.len(),
        checked.len(),
        failures.join("\n")
    );
}

/// The refusals issue 19 found speaking tract's internals each name what is wrong now. Before,
/// in order: "ShapeError/IncompatibleShape: incompatible shapes" (twice), "out of bounds
/// indexing", "Building node  (Constant)", "Loop detected" (twice), a 2 KB line of
/// "GraphProto.node: AttributeProto.g: …", "protobuf decoding failed … opset_import", and
/// serde's list of every safetensors type.
#[test]
fn the_cases_of_issue_19_name_what_is_wrong() {
    let expected = [
        ("initializer with too few floats", "initializer 'W': dims [2, 3] call for 6 values of float32, it holds 5"),
        ("initializer with short raw_data", "initializer 'W': dims [4] call for 4 values of float32 (16 bytes), its raw_data holds 10 bytes"),
        ("int64 initializer with too few values", "initializer 'shape': dims [3] call for 3 values of int64, it holds 1 value"),
        ("unnamed Constant with a short value", "node producing 'k' (Constant): attribute 'value': dims [2, 2]"),
        ("unnamed Cast without a type", "node 'k' (Cast): expected attribute 'to'"),
        ("a cycle of two nodes", "the graph has a cycle: node 'b' (Identity) → 'a' (Add) → 'b' (Identity)"),
        ("a node writing the graph input", "node 'neg' (Neg) writes 'x', which is a graph input"),
        ("subgraphs nested 120 deep", "subgraphs (bodies of If, Loop or Scan nodes) are nested 33 or more levels deep"),
        ("a safetensors file as the model", "not an ONNX model: a safetensors file"),
        ("safetensors of an unknown element type", "the element type 'F33', which safetensors does not define"),
    ];
    let mut cases: std::collections::HashMap<String, hostile::Case> = hostile::library_cases()
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
    for (name, wanted) in expected {
        let case = cases
            .remove(name)
            .unwrap_or_else(|| panic!("no case '{name}'"));
        let message = (case.call)().expect_err(name);
        assert!(message.contains(wanted), "{name}: {message}");
        assert!(
            message.len() < 400,
            "{name}: {} bytes: {message}",
            message.len()
        );
    }
    let bin = assert_cmd::cargo::cargo_bin("rnn-run");
    for case in hostile::cli_cases() {
        let wanted = match case.name {
            "a safetensors file as the model" | "inspect a safetensors file" => {
                "weights.safetensors: not an ONNX model: a safetensors file"
            }
            "a nested model" => "nested.onnx: not a usable ONNX model: its subgraphs",
            "--output naming a file" => "--output x.npy: exists and is not a folder",
            _ => continue,
        };
        let message = hostile::run_cli_case(&bin, &case);
        assert!(message.contains(wanted), "{}: {message}", case.name);
    }
}

/// The checker itself: it finds each kind of internal, and passes plain messages.
#[test]
fn the_checker_finds_engine_internals() {
    for internal in [
        "duplicate name for node #54 \"F0::anon\" Const",
        "Clashing resolution for expression. 512=512 != 576. (TurnState(SymbolValues { values: {} }))",
        "Infering facts: GivenAllRule",
        "Sym(S) is not Val(3)",
        "failed (at tract-data-0.23.9/src/blob.rs:76)",
        "at registry/src/index.crates.io-1/ndarray-0.17.2/src/lib.rs",
        "node '' (Constant)",
        "Building node  (Constant)",
        "Building node \"\" (Constant)",
        "stream StreamId(1) is closed",
        "failed to allocate Layout { size: 3, align: 128 }",
        "Some(\"x\")",
    ] {
        assert!(!engine_internals(internal).is_empty(), "not caught: {internal}");
    }
    for plain in [
        "node 'lstm' (LSTM): attribute 'hidden_size' is 3, R says 2",
        "not an ONNX model: a PyTorch checkpoint; export it with torch.onnx.export(model, x)",
        "use rnn_run::torch::TorchRecurrent::from_safetensors(path) or nn.LSTM(5, 6, 2)",
        "input 'x' (x.npy): expected shape [4, 2, 2], found [4, 2, 5]",
        "the graph has a cycle: node 'a' (Add) → 'b' (Identity) → 'a' (Add)",
    ] {
        assert_eq!(engine_internals(plain), Vec::<String>::new(), "{plain}");
    }
}
