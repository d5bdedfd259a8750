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
