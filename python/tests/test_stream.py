"""Streams and pools from Python: chunked runs equal the whole run (and PyTorch's outputs);
a pool's streams equal their runs one by one."""

import json

import numpy as np
import pytest

import rnn_run
from conftest import FIXTURES

STREAMING = FIXTURES / "streaming"
MANIFEST = {m["name"]: m for m in json.loads((STREAMING / "manifest.json").read_text())["models"]}
EXACT = sorted(n for n, m in MANIFEST.items() if m["stream"] == "exact" and not n.startswith("seq2seq"))
REFUSED = sorted(n for n, m in MANIFEST.items() if m["stream"] == "refuse")


def case(name):
    m = MANIFEST[name]
    call = m["cases"][0]["calls"][0]
    return m, dict(np.load(STREAMING / call["inputs"])), dict(np.load(STREAMING / call["expected"]))


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("chunk", [1, 3])
def test_stream_equals_whole_run_and_pytorch(name, chunk):
    m, inputs, expected = case(name)
    model = rnn_run.Model(STREAMING / m["file"])
    whole = model.run(inputs)
    start = {k: inputs[k] for k in m["stream_start_inputs"]}
    stream = model.stream(start=start or None)
    assert [i.name for i in stream.time_inputs] == [t["name"] for t in m["time_inputs"]]
    assert stream.start_inputs == m["stream_start_inputs"]
    axes = {t["name"]: t["axis"] for t in m["time_inputs"]}
    steps = inputs[m["time_inputs"][0]["name"]].shape[axes[m["time_inputs"][0]["name"]]]
    pieces = []
    for s in range(0, steps, chunk):
        chunk_inputs = {n: np.take(inputs[n], range(s, min(s + chunk, steps)), axis=a) for n, a in axes.items()}
        pieces.append(stream.push(chunk_inputs))
    assert stream.pushes == len(pieces)
    out_axes = stream.output_time_axes
    for o in m["per_step_outputs"]:
        assert out_axes[o["name"]] == o["axis"]
        joined = np.concatenate([p[o["name"]] for p in pieces], axis=o["axis"])
        np.testing.assert_allclose(joined, whole[o["name"]], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(joined, expected[o["name"]], rtol=1e-4, atol=1e-5)
    for name_ in m["final_outputs"]:
        assert out_axes[name_] is None
        np.testing.assert_allclose(pieces[-1][name_], whole[name_], rtol=1e-5, atol=1e-6)
    # reset: the next push starts a new sequence.
    stream.reset()
    assert stream.pushes == 0
    first = {n: np.take(inputs[n], range(0, min(chunk, steps)), axis=a) for n, a in axes.items()}
    again = stream.push(first)
    for k in again:
        np.testing.assert_array_equal(again[k], pieces[0][k])


@pytest.mark.parametrize("name", REFUSED)
def test_stream_refused_names_why(name):
    m, _, _ = case(name)
    model = rnn_run.Model(STREAMING / m["file"])
    with pytest.raises(rnn_run.StreamRefused, match="cannot stream this model"):
        model.stream()


def test_stream_rejects_a_chunk_that_does_not_fit():
    m, inputs, _ = case("linear_gru_legacy")
    stream = rnn_run.Model(STREAMING / m["file"]).stream()
    with pytest.raises(rnn_run.InputError, match="input 'x'"):
        stream.push(np.zeros((1, 2, 5), np.float32))
    with pytest.raises(rnn_run.InputError, match="float32"):
        stream.push(np.zeros((1, 2, 6), np.float64))


SILERO = FIXTURES / "realworld" / "silero_vad_16k_op15.onnx"


def silero_frames(n, streams, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((streams, n, 1, 576)).astype(np.float32) * 0.1


def test_pool_with_feedback_equals_runs_one_by_one():
    model = rnn_run.Model(SILERO)
    frames = silero_frames(6, 3)
    sr = np.array(16000, np.int64)
    # One by one, the state fed back by hand.
    solo = []
    for s in range(3):
        state = np.zeros((2, 1, 128), np.float32)
        outs = []
        for f in frames[s]:
            out = model.run({"input": f, "state": state, "sr": sr})
            state = out["stateN"]
            outs.append(out["output"])
        solo.append(outs)
    pool = model.pool(max_batch=8, max_wait=0.005, feedback={"state": "stateN"}, shared={"sr": sr})
    assert [i.name for i in pool.frame_inputs] == ["input"]
    ids = [pool.open() for _ in range(3)]
    assert len(set(ids)) == 3 and pool.stats["open"] == 3
    for k in range(6):
        pending = [pool.push(i, frames[s][k]) for s, i in enumerate(ids)]
        results = [p.wait() for p in pending]
        for s, r in enumerate(results):
            assert isinstance(r, rnn_run.Frame) and 1 <= r.batch <= 3 and r.queued >= 0
            np.testing.assert_allclose(r.outputs["output"], solo[s][k], rtol=1e-5, atol=1e-6)
    stats = pool.stats
    assert stats["frames"] == 18 and stats["steps"] <= 18
    for i in ids:
        pool.close(i)
    assert pool.stats["open"] == 0


def test_pool_of_a_streaming_model_equals_its_stream():
    m, inputs, _ = case("linear_gru_legacy")
    model = rnn_run.Model(STREAMING / m["file"])
    x = inputs["x"][:1]  # batch 1
    stream = model.stream()
    want = [stream.push(x[:, t : t + 1])["gains"] for t in range(x.shape[1])]
    pool = model.pool(max_batch=4, max_wait=0.001)
    sid = pool.open()
    got = [pool.push(sid, x[:, t : t + 1]).wait().outputs["gains"] for t in range(x.shape[1])]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_pool_errors():
    model = rnn_run.Model(SILERO)
    pool = model.pool(feedback=[("state", "stateN")], shared=[np.array(16000, np.int64)])
    sid = pool.open()
    pending = pool.push(sid, np.zeros((1, 576), np.float32))
    pending.wait()
    assert pending.done()
    with pytest.raises(rnn_run.RunError, match="already waited"):
        pending.wait()
    with pytest.raises(rnn_run.InputError):
        pool.push(sid, np.zeros((1, 576), np.float64))
    pool.close(sid)
    with pytest.raises(rnn_run.RunError, match="is not open in this pool"):
        pool.push(sid, np.zeros((1, 576), np.float32))
    with pytest.raises(rnn_run.RunError, match="is not open in this pool"):
        pool.close(sid)
    with pytest.raises(rnn_run.StreamRefused, match="feedback names"):
        model.pool(feedback={"nope": "stateN"})
    # An option out of range, not a property of the model: not a refusal to stream.
    with pytest.raises(rnn_run.RunError, match="max_batch is 0"):
        model.pool(max_batch=0)
    with pytest.raises(ValueError, match="max_wait"):
        model.pool(max_wait=-1.0)
    with pytest.raises(rnn_run.InputError, match="no such input"):
        model.pool(shared={"nope": np.zeros(1)})
