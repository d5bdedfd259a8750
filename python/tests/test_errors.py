"""Every error path raises the matching exception with rnn-run's message; none crashes the
interpreter."""

import numpy as np
import pytest

import rnn_run
from conftest import FIXTURES

ROBUSTNESS = FIXTURES / "robustness"


def test_hierarchy():
    for cls in (rnn_run.LoadError, rnn_run.InputError, rnn_run.RunError, rnn_run.StreamRefused):
        assert issubclass(cls, rnn_run.RnnRunError)
    assert issubclass(rnn_run.RnnRunError, Exception)
    assert rnn_run.LoadError.__module__ == "rnn_run"


def test_missing_file():
    with pytest.raises(rnn_run.LoadError, match="no_such.onnx"):
        rnn_run.Model(FIXTURES / "no_such.onnx")


def test_directory_and_empty_and_not_onnx(tmp_path):
    with pytest.raises(rnn_run.LoadError, match="not a regular file"):
        rnn_run.Model(tmp_path)
    with pytest.raises(rnn_run.LoadError, match="empty"):
        rnn_run.Model(b"")
    with pytest.raises(rnn_run.LoadError, match="ONNX"):
        rnn_run.Model(b"\x08\x01garbage that is not a model")
    with pytest.raises(rnn_run.LoadError):
        rnn_run.Model(ROBUSTNESS / "torch_lstm_module.pt")


def test_dynamo_export_from_bytes_needs_its_data_dir():
    path = FIXTURES / "tutorial" / "gru_dynamo" / "model.onnx"
    with pytest.raises(rnn_run.LoadError, match="external"):
        rnn_run.Model(path.read_bytes())


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in ROBUSTNESS.glob("load_model_*.onnx")),
)
def test_bad_models_are_load_errors(name):
    with pytest.raises(rnn_run.LoadError):
        rnn_run.Model(ROBUSTNESS / name)


@pytest.mark.parametrize("name", sorted(p.name for p in ROBUSTNESS.glob("tract_panic_*.onnx")))
def test_tract_panics_are_errors_not_crashes(name):
    # These graphs made tract panic; loading or running them must raise, never abort.
    try:
        model = rnn_run.Model(ROBUSTNESS / name)
    except rnn_run.LoadError as e:
        assert str(e)
        return
    inputs = []
    for info in model.inputs:
        shape = [d if isinstance(d, int) else 2 for d in info.shape]
        inputs.append(np.ones(shape, dtype=info.dtype))
    try:
        model.run(inputs)
    except rnn_run.RnnRunError as e:
        assert "panic" not in type(e).__name__.lower() and str(e)


def test_bad_options(lstm_path):
    with pytest.raises(ValueError, match="recurrent_weights"):
        rnn_run.Model(lstm_path, recurrent_weights="int4")
    with pytest.raises(ValueError, match="engine"):
        rnn_run.Model(lstm_path, engine="cuda")
    with pytest.raises(TypeError, match="path"):
        rnn_run.Model(3.5)
    with pytest.raises(OverflowError):
        rnn_run.Model(lstm_path, threads=-1)


@pytest.fixture(scope="module")
def lstm(lstm_path):
    return rnn_run.Model(lstm_path)


X = np.zeros((4, 3, 5), np.float32)
H = np.zeros((2, 3, 6), np.float32)


def test_wrong_count(lstm):
    with pytest.raises(rnn_run.InputError, match="3"):
        lstm.run([X, H])


def test_missing_and_unknown_names(lstm):
    with pytest.raises(rnn_run.InputError, match="input 'c0': missing"):
        lstm.run({"input": X, "h0": H})
    with pytest.raises(rnn_run.InputError, match="input 'h1': not an input"):
        lstm.run({"input": X, "h0": H, "c0": H, "h1": H})


def test_wrong_dtype_rank_and_size(lstm):
    with pytest.raises(rnn_run.InputError, match="input 'input'.*float32.*float64|float64.*float32"):
        lstm.run([X.astype(np.float64), H, H])
    with pytest.raises(rnn_run.InputError, match="input 'h0'"):
        lstm.run([X, H[0], H])
    with pytest.raises(rnn_run.InputError, match="input 'h0'"):
        lstm.run([X, np.zeros((3, 3, 6), np.float32), H])
    with pytest.raises(rnn_run.InputError, match="bool"):
        lstm.run([X.astype(bool), H, H])


def test_unsupported_values(lstm):
    with pytest.raises(rnn_run.InputError, match="complex"):
        lstm.run([X.astype(np.complex64), H, H])
    with pytest.raises(rnn_run.InputError, match="expected a dict"):
        lstm.run(42)
    with pytest.raises(rnn_run.InputError, match="input 'input'"):
        lstm.run([object(), H, H])
    with pytest.raises(rnn_run.InputError, match="not supported"):
        lstm.run([np.array(["a"]), H, H])


def test_error_messages_are_rnn_runs(lstm):
    with pytest.raises(rnn_run.InputError) as info:
        lstm.run([X, np.zeros((3, 3, 6), np.float32), H])
    # The same wording as the CLI and the Rust API: the input's name, expected vs found.
    assert str(info.value).startswith("input 'h0': ")


def test_run_errors_name_the_node(lstm):
    # Each input fits its declared shape, but h0's batch disagrees with x's: the LSTM node says
    # so while running.
    h = np.zeros((2, 4, 6), np.float32)
    with pytest.raises(rnn_run.RunError, match=r"node '/LSTM' \(LSTM\): input initial_h: shape \[1, 4, 6\]"):
        lstm.run([X, h, h])
    # The model is still usable afterwards.
    assert lstm.run([X, H, H])["output"].shape == (4, 3, 6)
