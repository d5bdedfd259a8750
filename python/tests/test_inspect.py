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
@pytest.mark.parametrize("engine", ["native", "tract"])
def test_same_as_the_cli(rel, engine):
    path = FIXTURES / rel
    cli = subprocess.run(["rnn-run", "inspect", str(path), "--json", "--engine", engine],
                         capture_output=True, text=True)
    if cli.returncode == 0 or cli.stdout:
        assert rnn_run.inspect(path, engine=engine) == json.loads(cli.stdout)
    else:
        # Refused before anything could be described: the same message, as a LoadError.
        assert cli.returncode == 2
        with pytest.raises(rnn_run.LoadError) as err:
            rnn_run.inspect(path, engine=engine)
        assert str(err.value) in cli.stderr


def test_content():
    info = rnn_run.inspect(FIXTURES / "tutorial" / "lstm_legacy" / "model.onnx")
    assert info["opset"] == 20 and info["typing"] in ("symbolic", "deferred")
    assert info["inputs"][0] == {"name": "input", "dtype": "float32", "shape": ["seq", "batch", 5]}
    assert [n["name"] for n in info["recurrent_nodes"]] == ["/LSTM", "/LSTM_1"]  # one per layer
    node = info["recurrent_nodes"][0]
    assert node["op"] == "LSTM" and node["hidden_size"] == 6 and node["engine"] == "native"
    assert node["optional_inputs"]["initial_h"] is True and node["weights_prepared"] is True


def test_not_a_model():
    with pytest.raises(rnn_run.LoadError):
        rnn_run.inspect(FIXTURES / "README.md")
    with pytest.raises(rnn_run.LoadError):
        rnn_run.inspect(FIXTURES / "no_such.onnx")
