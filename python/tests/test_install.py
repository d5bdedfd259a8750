"""The wheel as installed: the package is the installed one, and the `rnn-run` program it
puts on the PATH is the native CLI."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import rnn_run
from conftest import FIXTURES


def test_imported_from_the_installed_wheel():
    site = Path(sysconfig.get_paths()["platlib"]).resolve()
    assert Path(rnn_run.__file__).resolve().is_relative_to(site), rnn_run.__file__


def test_cli_is_on_the_path_and_native():
    exe = shutil.which("rnn-run")
    assert exe is not None, os.environ.get("PATH")
    assert Path(exe).parent.resolve() == Path(sysconfig.get_paths()["scripts"]).resolve()
    with open(exe, "rb") as f:
        assert f.read(4) == b"\x7fELF", "rnn-run should be the native program, not a script"


def test_cli_runs_the_tutorial_fixture():
    case = FIXTURES / "tutorial" / "lstm_legacy"
    cmd = ["rnn-run", str(case / "model.onnx")]
    cmd += [str(case / f"input_{i}.npy") for i in range(3)]
    cmd += ["--expect"] + [str(case / f"expected_{i}.npy") for i in range(3)] + ["--json"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert [o["name"] for o in report["outputs"]] == ["output", "hn", "cn"]


def test_cli_error_exit_code():
    done = subprocess.run(["rnn-run", str(FIXTURES / "no_such_model.onnx")], capture_output=True, text=True)
    assert done.returncode == 2
    assert "no_such_model.onnx" in done.stderr


def test_version():
    assert rnn_run.__version__ == "0.1.0"
    assert sys.version_info >= (3, 9)
