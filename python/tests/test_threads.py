"""The GIL is released while a model runs: Python threads go on, and two models run side by side.

Timing tests on a shared machine are fragile. So the release is shown by counting, not timing:
a Python thread ticks while another thread is in the middle of run(); with the GIL held it
could not tick there at all, whatever the machine is doing. The speed-up of two threads is
not timed here (a timed test fails on a busy machine, as an older one of overlapping 0.35 ms
runs did in CI): two threads running two models at once must give each the numbers it gives
alone. The speed of threads is measured by benchmarks (README, Performance)."""

import sys
import threading
import time

import numpy as np

import rnn_run
from conftest import FIXTURES, load_case

CASE = FIXTURES / "tutorial" / "lstm_legacy_long"


def _run_time(model, inputs):
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        model.run(inputs)
        best = min(best, time.perf_counter() - t0)
    return best


def _workload(model, at_least):
    """The fixture's inputs with the sequence repeated until one run takes `at_least` seconds."""
    inputs, _, _ = load_case(CASE)
    reps = 16
    while True:
        x = np.tile(inputs[0], (reps, 1, 1))
        work = [x, inputs[1], inputs[2]]
        if _run_time(model, work) >= at_least or reps >= 1 << 14:
            return work
        reps *= 2


def test_python_runs_while_a_model_runs():
    model = rnn_run.Model(CASE / "model.onnx")
    inputs = _workload(model, at_least=0.2)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    # With the GIL held, the ticker still ticks at the edges of a run: between this thread's
    # clock read and the call, and between the return and the next read, for up to a switch
    # interval each (measured: 5 ms of ticks in 35 ms of a held C call). A short interval and
    # a long run keep those edges far from the middle half, which only a released GIL reaches.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        t0 = time.perf_counter()
        model.run(inputs)
        t1 = time.perf_counter()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    quarter = (t1 - t0) / 4
    inside = sum(1 for t in ticks if t0 + quarter < t < t1 - quarter)
    # Held GIL: exactly 0. Released: the ticker runs whenever the OS gives it a core, which on
    # one busy core still happens many times in 100 ms.
    assert inside > 0, f"no Python tick in the middle half of a run of {t1 - t0:.3f} s"


def test_two_models_in_two_threads_give_each_its_own_numbers():
    models = [rnn_run.Model(CASE / "model.onnx"), rnn_run.Model(CASE / "model.onnx")]
    base = _workload(models[0], at_least=0.005)
    rng = np.random.default_rng(7)
    inputs = [[(a + rng.standard_normal(a.shape) * 0.1).astype(a.dtype) for a in base] for _ in models]
    alone = [m.run(x) for m, x in zip(models, inputs)]
    together = [[] for _ in models]
    barrier = threading.Barrier(len(models))

    def work(k):
        barrier.wait()
        for _ in range(5):
            together[k].append(models[k].run(inputs[k]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, runs in enumerate(together):
        assert len(runs) == 5
        for outputs in runs:
            for name, want in alone[k].items():
                np.testing.assert_array_equal(outputs[name], want, err_msg=f"model {k}, output {name}")
