"""rnn_run.inspect gives what `rnn-run inspect --json` prints, as Python objects."""

import json
import subprocess

import pytest

import rnn_run
from conftest import FIXTURES

MODELS = [
    "tutorial/lstm_legacy/model.onnx",
    "tutorial/gru_dynamo/model.onnx",
    "realworld/silero_vad_16k_op15.onnx",
    "realworld/silero_vad.onnx",
    "realworld/g2p_id_lstm_decoder.onnx",
    "qlstm/bidir_u8_lens/model.onnx",
    "matrix/lstm_l2_bi_bf_legacy_op9/model.onnx",
    "robustness/load_model_output_not_produced.onnx",
]


@pytest.mark.parametrize("rel", MODELS)
def test_same_as_the_cli(rel):
    path = FIXTURES / rel
    done = subprocess.run(["rnn-run", "inspect", str(path), "--json"], capture_output=True, text=True)
    assert done.returncode in (0, 2), done.stderr
    cli = json.loads(done.stdout)
    assert rnn_run.inspect(path) == cli
    assert rnn_run.inspect(str(path), engine="tract") == json.loads(
        subprocess.run(["rnn-run", "inspect", str(path), "--json", "--engine", "tract"],
                       capture_output=True, text=True).stdout
    )


def test_content():
    info = rnn_run.inspect(FIXTURES / "tutorial" / "lstm_legacy" / "model.onnx")
    assert info["opset"] == 20 and info["typing"] in ("symbolic", "deferred")
    assert info["inputs"][0] == {"name": "input", "dtype": "float32", "shape": ["seq", "batch", 5]}
    (node,) = info["recurrent_nodes"]
    assert node["op"] == "LSTM" and node["hidden_size"] == 6 and node["engine"] == "native"
    assert node["optional_inputs"]["initial_h"] is True


def test_not_a_model():
    with pytest.raises(rnn_run.LoadError):
        rnn_run.inspect(FIXTURES / "README.md")
    with pytest.raises(rnn_run.LoadError):
        rnn_run.inspect(FIXTURES / "no_such.onnx")
