"""Model: loading, describing, running; the tutorial fixtures against their PyTorch
references; element types; numpy layouts; outputs that view rnn-run's memory."""

import numpy as np
import pytest

import rnn_run
from conftest import FIXTURES, load_case

TUTORIAL = sorted(p for p in (FIXTURES / "tutorial").iterdir() if (p / "model.onnx").exists())


def test_every_tutorial_fixture_is_found():
    assert len(TUTORIAL) == 18


@pytest.mark.parametrize("case", TUTORIAL, ids=[p.name for p in TUTORIAL])
def test_tutorial_fixture_matches_pytorch(case):
    inputs, expected, meta = load_case(case)
    model = rnn_run.Model(case / "model.onnx")
    outputs = model.run(inputs)
    assert list(outputs) == [o.name for o in model.outputs]
    assert len(outputs) == len(expected)
    for got, want in zip(outputs.values(), expected):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=meta["rtol"], atol=meta["atol"])


@pytest.mark.parametrize("case", ["lstm_legacy", "gru_dynamo_batch"])
def test_dict_list_and_bytes_agree(case):
    path = FIXTURES / "tutorial" / case
    inputs, expected, _ = load_case(path)
    by_path = rnn_run.Model(str(path / "model.onnx"))
    names = [i.name for i in by_path.inputs]
    as_list = by_path.run(inputs)
    as_tuple = by_path.run(tuple(inputs))
    as_dict = by_path.run(dict(zip(names, inputs)))
    if (path / "model.onnx.data").exists():
        by_bytes = rnn_run.Model((path / "model.onnx").read_bytes(), data_dir=path)
    else:
        by_bytes = rnn_run.Model((path / "model.onnx").read_bytes())
    from_bytes = by_bytes.run(inputs)
    for k in as_list:
        np.testing.assert_array_equal(as_list[k], as_dict[k])
        np.testing.assert_array_equal(as_list[k], as_tuple[k])
        np.testing.assert_array_equal(as_list[k], from_bytes[k])


def test_io_info(lstm_path):
    model = rnn_run.Model(lstm_path)
    assert [i.name for i in model.inputs] == ["input", "h0", "c0"]
    assert all(i.dtype == "float32" for i in model.inputs)
    assert model.inputs[0].shape == ["seq", "batch", 5]
    assert model.inputs[1].shape == [2, "batch", 6]
    assert [o.name for o in model.outputs] == ["output", "hn", "cn"]
    assert "IoInfo(name=\"input\"" in repr(model.inputs[0])
    assert model.opset == 20
    assert model.source.endswith("model.onnx")
    assert "Model(" in repr(model)


def test_outputs_view_rnn_runs_memory_without_a_copy(lstm_path):
    model = rnn_run.Model(lstm_path)
    x = np.ones((4, 3, 5), np.float32)
    h = np.zeros((2, 3, 6), np.float32)
    out = model.run([x, h, h])
    y = out["output"]
    assert y.base is not None and type(y.base).__name__ == "TensorBuffer"
    assert y.flags["C_CONTIGUOUS"] and y.flags["WRITEABLE"]
    # The array outlives the dict and the model: the buffer keeps the memory alive.
    del out, model
    assert y.shape == (4, 3, 6) and np.isfinite(y).all()
    y[0, 0, 0] = 42.0  # writable, like any fresh numpy array
    assert y[0, 0, 0] == 42.0


def test_any_numpy_layout_is_accepted(lstm_path):
    model = rnn_run.Model(lstm_path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    h = rng.standard_normal((2, 3, 6)).astype(np.float32)
    c = rng.standard_normal((2, 3, 6)).astype(np.float32)
    want = model.run([x, h, c])
    fortran = np.asfortranarray(x)
    strided = np.ascontiguousarray(np.repeat(x, 2, axis=2))[:, :, ::2]
    transposed = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
    for variant in (fortran, strided, transposed):
        assert not variant.flags["C_CONTIGUOUS"]
        got = model.run([variant, h, c])
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    # Other values go through numpy.asarray, and the element type must still be the model's:
    # Python floats are float64, refused by name rather than rounded behind the caller's back.
    with pytest.raises(rnn_run.InputError, match="input 'input': expected element type float32, found float64"):
        model.run([x.tolist(), h, c])
    got = model.run([x, np.asarray(h.tolist(), np.float32), c])
    np.testing.assert_array_equal(got["output"], want["output"])


def test_float64_model_and_int32_lengths():
    # float64 in and out (torch_weights aside, the matrix has f64 exports).
    case = FIXTURES / "matrix" / "lstm_l1_f64_dynamo"
    inputs, expected, meta = load_case(case)
    assert inputs[0].dtype == np.float64
    out = rnn_run.Model(case / "model.onnx").run(inputs)
    for got, want in zip(out.values(), expected):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=meta["rtol"], atol=meta["atol"])


def test_int32_sequence_lens():
    case = FIXTURES / "qlstm" / "bidir_u8_lens"
    inputs = dict(np.load(case / "t6_b3_lens_call0_inputs.npz"))
    expected = dict(np.load(case / "t6_b3_lens_call0_expected.npz"))
    model = rnn_run.Model(case / "model.onnx")
    assert "int32" in [i.dtype for i in model.inputs]
    out = model.run(inputs)
    for name, want in expected.items():
        np.testing.assert_allclose(out[name], want, rtol=1e-4, atol=1e-5)


def test_int64_inputs_silero(fixtures):
    model = rnn_run.Model(fixtures / "realworld" / "silero_vad_16k_op15.onnx")
    dtypes = {i.name: i.dtype for i in model.inputs}
    assert dtypes["sr"] == "int64"
    out = model.run({
        "input": np.zeros((1, 576), np.float32),
        "state": np.zeros((2, 1, 128), np.float32),
        "sr": np.array(16000, np.int64),
    })
    assert out["output"].shape == (1, 1)
    assert 0.0 <= float(out["output"][0, 0]) <= 1.0


def test_threads_and_half_weights_agree(lstm_path):
    inputs, expected, _ = load_case(FIXTURES / "tutorial" / "lstm_legacy_long")
    path = FIXTURES / "tutorial" / "lstm_legacy_long" / "model.onnx"
    base = rnn_run.Model(path).run(inputs)
    threaded = rnn_run.Model(path, threads=2).run(inputs)
    for k in base:
        np.testing.assert_allclose(threaded[k], base[k], rtol=1e-5, atol=1e-6)
    half = rnn_run.Model(path, recurrent_weights="bf16").run(inputs)
    for k in base:
        np.testing.assert_allclose(half[k], base[k], rtol=0, atol=5e-2)
    tract = rnn_run.Model(path, engine="tract").run(inputs)
    np.testing.assert_allclose(tract["output"], base["output"], rtol=1e-4, atol=1e-5)
