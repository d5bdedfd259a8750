//! The built binary on the bundled PyTorch tutorial fixtures: `inspect` and the human-readable
//! run report are snapshotted (numbers coarsened so kernel rounding does not churn them; the
//! exact comparison is `--expect`, checked here too), and `--chunk` streams to the same result.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tutorial_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("fixtures/tutorial"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn numbered(dir: &Path, prefix: &str) -> Vec<String> {
    (0..)
        .map(|i| format!("fixtures/tutorial/{}/{prefix}_{i}.npy", dir.display()))
        .take_while(|p| root().join(p).exists())
        .collect()
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn rnn_run(args: &[String]) -> Out {
    let out = Command::cargo_bin("rnn-run")
        .unwrap()
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Rounds every decimal number to 3 significant digits and drops timing lines.
fn coarse(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.starts_with("time:")) {
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            if word.contains('.') {
                if let Ok(v) = word.parse::<f64>() {
                    out.push_str(&format!("{v:.2e}"));
                    word.clear();
                    return;
                }
            }
            out.push_str(word);
            word.clear();
        };
        for c in line.chars() {
            if c.is_ascii_digit() || c == '.' || c == '-' || c == 'e' {
                word.push(c);
            } else {
                flush(&mut word, &mut out);
                out.push(c);
            }
        }
        flush(&mut word, &mut out);
        out.push('\n');
    }
    out
}

#[test]
fn inspect_each_tutorial_fixture() {
    for name in tutorial_fixtures() {
        let out = rnn_run(&[
            "inspect".into(),
            format!("fixtures/tutorial/{name}/model.onnx"),
        ]);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        insta::assert_snapshot!(format!("inspect_{name}"), out.stdout);
    }
}

#[test]
fn run_each_tutorial_fixture_against_pytorch() {
    for name in tutorial_fixtures() {
        let dir = Path::new(&name);
        let mut args = vec![format!("fixtures/tutorial/{name}/model.onnx")];
        args.extend(numbered(dir, "input"));
        let plain = rnn_run(&args);
        assert_eq!(plain.code, 0, "{name}: {}", plain.stderr);
        insta::assert_snapshot!(format!("run_{name}"), coarse(&plain.stdout));

        args.push("--expect".into());
        args.extend(numbered(dir, "expected"));
        let checked = rnn_run(&args);
        assert_eq!(
            checked.code, 0,
            "{name}: {}{}",
            checked.stdout, checked.stderr
        );
    }
}

#[test]
fn chunked_cli_runs_match_pytorch() {
    for name in ["lstm_legacy_long", "gru_dynamo_long", "rnn_legacy_long"] {
        for chunk in ["1", "7"] {
            let dir = Path::new(name);
            let mut args = vec![format!("fixtures/tutorial/{name}/model.onnx")];
            args.extend(numbered(dir, "input"));
            args.extend([
                "--chunk".into(),
                chunk.into(),
                "--json".into(),
                "--expect".into(),
            ]);
            args.extend(numbered(dir, "expected"));
            let out = rnn_run(&args);
            assert_eq!(
                out.code, 0,
                "{name} --chunk {chunk}: {}{}",
                out.stdout, out.stderr
            );
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(v["ok"], serde_json::Value::Bool(true));
        }
    }
}

#[test]
fn chunk_refuses_a_model_that_cannot_stream() {
    let m = "fixtures/matrix/gru_l1_bi_legacy_op17";
    let out = rnn_run(&[
        format!("{m}/model.onnx"),
        format!("{m}/input_0.npy"),
        format!("{m}/input_1.npy"),
        "--chunk".into(),
        "2".into(),
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("bidirectional"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "one line: {}",
        out.stderr
    );
}

#[test]
fn threaded_cli_runs_match_pytorch() {
    // Bidirectional (directions side by side), long H=192 (products split), and a stream.
    for (dir, extra) in [
        ("fixtures/matrix/lstm_l1_bi_legacy_op17", vec![]),
        ("fixtures/matrix/gru_l3_bi_noinit_dynamo", vec![]),
        ("fixtures/matrix/gru_long_h192_dynamo", vec![]),
        (
            "fixtures/matrix/lstm_long_h192_legacy_op17",
            vec!["--chunk", "5"],
        ),
    ] {
        let files = |prefix: &str| -> Vec<String> {
            (0..)
                .map(|i| format!("{dir}/{prefix}_{i}.npy"))
                .take_while(|p| root().join(p).exists())
                .collect()
        };
        let mut args = vec![format!("{dir}/model.onnx")];
        args.extend(files("input"));
        args.extend(["--threads", "2"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push("--expect".into());
        args.extend(files("expected"));
        let out = rnn_run(&args);
        assert_eq!(out.code, 0, "{dir}: {}{}", out.stdout, out.stderr);
    }
}

/// `inspect` on real models: one that tract types only for actual inputs (Silero VAD, LSTMs
/// inside nested `If`s) is described from its protobuf, recurrent nodes in subgraphs
/// included; one that cannot be loaded at all is described too, with why, and exit code 2.
#[test]
fn inspect_describes_models_tract_cannot_type_or_load() {
    let out = rnn_run(&[
        "inspect".into(),
        "fixtures/realworld/silero_vad.onnx".into(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for expected in [
        "recurrent nodes: 4",
        "in:                  If 'If_0' else_branch > If",
        "graph: typed when the inputs are known",
        "ops: Constant 341,",
        "  sr     int64    []",
    ] {
        assert!(out.stdout.contains(expected), "{expected}:\n{}", out.stdout);
    }
    let json = rnn_run(&[
        "inspect".into(),
        "fixtures/realworld/silero_vad.onnx".into(),
        "--json".into(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["typing"], "deferred");
    assert_eq!(v["ops"]["If"], 25);
    assert_eq!(v["recurrent_nodes"].as_array().unwrap().len(), 4);

    let out = rnn_run(&[
        "inspect".into(),
        "fixtures/robustness/tract_panic_fact_21.onnx".into(),
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stdout.contains("graph: cannot be loaded:"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("RNN /RNN"), "{}", out.stdout);
    assert!(
        out.stderr.contains("(Cosstant) is not an operator"),
        "{}",
        out.stderr
    );
}

/// `--chunk` on a model exported at a fixed length of 5 steps takes 25 (the stream frees the
/// time axis), and the reports say the run was chunked and how many pushes it took.
#[test]
fn chunked_runs_take_any_length_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = root().join("fixtures/matrix/lstm_l2_static_dynamo");
    let x = rnn_run::npy::read_npy(fixture.join("input_0.npy")).unwrap();
    assert_eq!(x.shape()[0], 5, "exported at 5 steps");
    let long = rnn_run::Tensor::stack_tensors(0, &vec![x.clone(); 5]).unwrap();
    let path = dir.path().join("x25.npy");
    rnn_run::npy::write_npy(&path, &long).unwrap();
    let mut args: Vec<String> = vec![
        fixture.join("model.onnx").display().to_string(),
        path.display().to_string(),
    ];
    for k in [1, 2] {
        args.push(fixture.join(format!("input_{k}.npy")).display().to_string());
    }
    args.extend(["--chunk".into(), "7".into()]);
    let out = rnn_run(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("stream: chunk 7, 4 pushes"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("[25, 2, "), "{}", out.stdout);
    args.push("--json".into());
    let v: serde_json::Value = serde_json::from_str(&rnn_run(&args).stdout).unwrap();
    assert_eq!(v["chunk"], 7);
    assert_eq!(v["pushes"], 4);
    // The whole run's plan is specialized to the inputs; without --chunk the report says
    // how long making it took.
    let mut whole: Vec<String> = vec![fixture.join("model.onnx").display().to_string()];
    for k in [0, 1, 2] {
        whole.push(fixture.join(format!("input_{k}.npy")).display().to_string());
    }
    whole.push("--json".into());
    let v: serde_json::Value = serde_json::from_str(&rnn_run(&whole).stdout).unwrap();
    assert!(v["plan_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v.get("chunk").is_none());
}

/// `--engine tract` (tract's own recurrent ops, for comparison) runs at any batch: the plan is
/// specialized to the inputs, where tract's symbolic batch once clashed with its lowering.
#[test]
fn engine_tract_runs_at_batch_16() {
    let dir = root().join("fixtures/tutorial/lstm_legacy_batch");
    let mut args: Vec<String> = vec![dir.join("model.onnx").display().to_string()];
    for k in 0..3 {
        args.push(dir.join(format!("input_{k}.npy")).display().to_string());
    }
    args.push("--expect".into());
    for k in 0..3 {
        args.push(dir.join(format!("expected_{k}.npy")).display().to_string());
    }
    args.extend(["--engine".into(), "tract".into()]);
    let out = rnn_run(&args);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("all 3 outputs match"), "{}", out.stdout);
}

/// `rnn-run serve-bench` on Silero VAD: a pool of streams with the state fed back, against the
/// same streams run each on its own.
#[test]
fn serve_bench_reports_pooled_and_solo_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = rnn_run::npy::read_npz(
        root().join("fixtures/realworld/cases/silero_vad_16k_op15/16k_carry_call0_inputs.npz"),
    )
    .unwrap();
    for (name, t) in &inputs {
        rnn_run::npy::write_npy(dir.path().join(format!("{name}.npy")), t).unwrap();
    }
    let path = |n: &str| dir.path().join(format!("{n}.npy")).display().to_string();
    let out = rnn_run(&[
        "serve-bench".into(),
        "fixtures/realworld/silero_vad_16k_op15.onnx".into(),
        path("input"),
        "--feedback".into(),
        "state=stateN".into(),
        "--shared".into(),
        format!("sr={}", path("sr")),
        "--streams".into(),
        "4".into(),
        "--frames".into(),
        "3".into(),
        "--json".into(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["streams"], 4);
    assert_eq!(v["mean_batch"].as_f64(), Some(4.0), "{v}");
    assert!(v["pooled_fps"].as_f64().unwrap() > 0.0 && v["solo_fps"].as_f64().unwrap() > 0.0);
}

/// The README's `serve-bench` example runs as written (from the repository's root).
#[test]
fn readme_serve_bench_example_runs_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("rnn-run serve-bench fixtures/"))
        .expect("a serve-bench example in the README");
    let args: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
    let out = rnn_run(&args);
    assert_eq!(out.code, 0, "{line}\n{}", out.stderr);
    assert!(
        out.stdout.contains("8 streams x 20 frames"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("mean batch"), "{}", out.stdout);
}

/// `serve-bench` on a model that carries its state through its inputs and outputs, with no
/// `--feedback`: the refusal says which names pair up, what to share and that a frame file is
/// needed, instead of tract's typing failure.
#[test]
fn serve_bench_suggests_feedback_shared_and_a_frame_file() {
    let out = rnn_run(&[
        "serve-bench".into(),
        "fixtures/realworld/silero_vad_16k_op15.onnx".into(),
        "--streams".into(),
        "8".into(),
    ]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    for want in [
        "--feedback state=stateN",
        "--shared sr=",
        "frame file for input",
    ] {
        assert!(out.stderr.contains(want), "{want}: {}", out.stderr);
    }
    assert!(!out.stderr.contains("unify"), "{}", out.stderr);
}

/// Silero v6's `silero_vad.onnx` hides its batch axis from the graph: `--batch-axis` names it,
/// and the refusal without it names the flag.
#[test]
fn serve_bench_takes_batch_axes_from_the_command_line() {
    let mut args: Vec<String> = [
        "serve-bench",
        "fixtures/realworld/silero_vad.onnx",
        "fixtures/realworld/frames/silero_16k_frame.npy",
        "--feedback",
        "state=stateN",
        "--shared",
        "sr=fixtures/realworld/frames/sr_16000.npy",
        "--streams",
        "3",
        "--frames",
        "2",
        "--json",
    ]
    .map(String::from)
    .to_vec();
    let out = rnn_run(&args);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("--batch-axis INPUT=AXIS")
            && out.stderr.contains("PoolOptions::batch_axes")
            && !out.stderr.contains("cannot stream this model"),
        "{}",
        out.stderr
    );
    args.extend(["--batch-axis", "input=0", "--batch-axis", "state=1"].map(String::from));
    let out = rnn_run(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["mean_batch"].as_f64(), Some(3.0), "{v}");
    // A name the model does not have, an axis it does not have.
    for (flag, bad, want) in [
        (
            "input=0",
            "stat=1",
            "no input 'stat' (its inputs: input, state, sr)",
        ),
        (
            "input=0",
            "state=3",
            "input 'state' has 3 axes (0 to 2), '3' is not one",
        ),
    ] {
        let mut a = args[..args.len() - 4].to_vec();
        a.extend(["--batch-axis", flag, "--batch-axis", bad].map(String::from));
        let out = rnn_run(&a);
        assert_eq!(out.code, 2);
        assert!(out.stderr.contains(want), "{}", out.stderr);
    }
}

/// `--chunk` with `--time-axis`: the axes named on the command line, the same outputs; a
/// stream's run reports no plan time of its own (it plans inside the run).
#[test]
fn chunk_takes_time_axes_from_the_command_line() {
    let dir = root().join("fixtures/tutorial/lstm_legacy");
    let mut args: Vec<String> = vec![dir.join("model.onnx").display().to_string()];
    for k in 0..3 {
        args.push(dir.join(format!("input_{k}.npy")).display().to_string());
    }
    args.push("--expect".into());
    for k in 0..3 {
        args.push(dir.join(format!("expected_{k}.npy")).display().to_string());
    }
    args.extend(["--chunk", "2", "--time-axis", "input=0"].map(String::from));
    let out = rnn_run(&args);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("all 3 outputs match"), "{}", out.stdout);
    assert!(!out.stdout.contains("plan 0"), "{}", out.stdout);
    args.push("--json".into());
    let v: serde_json::Value = serde_json::from_str(&rnn_run(&args).stdout).unwrap();
    assert!(v["plan_ms"].is_null(), "{v}");
    // The wrong axis: the stream's own check refuses the chunks' shapes.
    let n = args.len();
    args[n - 2] = "input=5".into();
    let out = rnn_run(&args);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--time-axis 'input=5'"),
        "{}",
        out.stderr
    );
    // Without --chunk, --time-axis has nothing to name.
    let mut plain: Vec<String> = args[..args.len() - 5].to_vec();
    plain.extend(["--time-axis", "input=0"].map(String::from));
    let out = rnn_run(&plain);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("use it with --chunk"), "{}", out.stderr);
}

/// A dependent crate does not inherit this repository's profile: the README gives the two
/// lines of ours that a user's `Cargo.toml` needs for usable debug builds.
#[test]
fn readme_gives_dependents_the_dev_profile_lines() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let block = "[profile.dev.package.\"*\"]\nopt-level = 2\n";
    assert!(
        cargo.contains(block),
        "Cargo.toml changed: update the README"
    );
    assert!(readme.contains(&format!("```toml\n{block}```")), "README");
}
