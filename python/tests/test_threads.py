"""The GIL is released while a model runs: two Python threads run two models side by side.

Timing tests on a shared machine are fragile, so concurrency is shown by the overlap of the
run intervals (with the GIL held during a run, two runs could never overlap), and the speed-up
is checked against the same work run one thread after the other, best of several rounds."""

import os
import threading
import time

import numpy as np
import pytest

import rnn_run
from conftest import FIXTURES, load_case

CASE = FIXTURES / "tutorial" / "lstm_legacy_long"


def _workload():
    inputs, _, _ = load_case(CASE)
    # A longer sequence: a run of a few milliseconds.
    x = np.tile(inputs[0], (20, 1, 1))
    return [x, inputs[1], inputs[2]]


def _intervals(models, inputs, runs):
    """Runs each model `runs` times in its own thread; (start, end) per run, per thread."""
    spans = [[] for _ in models]
    barrier = threading.Barrier(len(models))

    def work(k):
        barrier.wait()
        for _ in range(runs):
            t0 = time.perf_counter()
            models[k].run(inputs)
            spans[k].append((t0, time.perf_counter()))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return spans


def _overlap(a, b):
    total = 0.0
    for s0, e0 in a:
        for s1, e1 in b:
            total += max(0.0, min(e0, e1) - max(s0, s1))
    return total


def test_runs_overlap_in_two_threads():
    inputs = _workload()
    models = [rnn_run.Model(CASE / "model.onnx"), rnn_run.Model(CASE / "model.onnx")]
    a, b = _intervals(models, inputs, runs=10)
    busy = min(sum(e - s for s, e in a), sum(e - s for s, e in b))
    # Held GIL: no overlap at all. Released: the threads spend most of their time inside
    # run() together, even when the OS interleaves them on one core.
    assert _overlap(a, b) > 0.3 * busy, (_overlap(a, b), busy)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")
def test_two_threads_are_faster_than_one():
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        pytest.skip(f"the machine is busy (load {load:.1f} on {os.cpu_count()} cores): no core is free "
                    "for a second thread, so a speed-up cannot show (the overlap test still runs)")
    inputs = _workload()
    models = [rnn_run.Model(CASE / "model.onnx"), rnn_run.Model(CASE / "model.onnx")]
    runs = 8
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for m in models:
            for _ in range(runs):
                m.run(inputs)
        serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        _intervals(models, inputs, runs)
        parallel = time.perf_counter() - t0
        best = min(best, parallel / serial)
        if best < 0.8:
            break
    print(f"two threads / one thread, same work: {best:.2f}")
    assert best < 0.8, f"two threads took {best:.2f} of one thread's time"
