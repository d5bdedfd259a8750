#!/usr/bin/env python3
"""Per-call latency from Python: rnn-run's `Model.run` against onnxruntime's
`InferenceSession.run`, same process, same inputs, one thread each.

Cases:
- Silero VAD (fixtures/realworld/silero_vad_16k_op15.onnx): one frame of 64 samples of context
  and 512 new ones ([1, 576]), the state fed back from each call to the next, sr = 16000;
- NSNet2 (fixtures/realworld/nsnet2-20ms-baseline.onnx): one call on a second of features
  ([1, 100, 161]), and one call on a single frame ([1, 1, 161]).

The two sides are measured in interleaved rounds (--rounds, each --calls calls after a warm-up)
so that a busy machine slows both alike; a round's figure is the median call, the table shows
the median over rounds. Outputs are compared once (max abs difference) so that the table never
compares a wrong answer.

    pip install <the rnn_run wheel> onnxruntime numpy
    python scripts/bench_python.py [--rounds 15] [--calls 200] [--markdown]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import rnn_run

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "fixtures" / "realworld"


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
        return f"{fields.get('Model name', platform.processor())}, {fields.get('CPU(s)', '?')} vCPUs"
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class Silero:
    name = "Silero VAD 16k (op15), 64 + 512 samples, state fed back"
    path = REAL / "silero_vad_16k_op15.onnx"

    def __init__(self):
        rng = np.random.default_rng(0)
        self.frames = (rng.standard_normal((64, 1, 576)) * 0.1).astype(np.float32)
        self.sr = np.array(16000, np.int64)

    def rnn_run(self, model):
        state = np.zeros((2, 1, 128), np.float32)
        k = 0

        def call():
            nonlocal state, k
            out = model.run({"input": self.frames[k % 64], "state": state, "sr": self.sr})
            state = out["stateN"]
            k += 1
            return out["output"]

        return call

    def ort(self, sess):
        state = np.zeros((2, 1, 128), np.float32)
        k = 0

        def call():
            nonlocal state, k
            prob, state = sess.run(None, {"input": self.frames[k % 64], "state": state, "sr": self.sr})
            k += 1
            return prob

        return call


class NSNet2:
    path = REAL / "nsnet2-20ms-baseline.onnx"

    def __init__(self, frames: int):
        self.name = f"NSNet2 20 ms, [1, {frames}, 161] per call"
        feats = np.load(REAL / "cases" / "nsnet2-20ms-baseline" / "100frames_call0_inputs.npz")["input"]
        self.x = np.ascontiguousarray(feats[:, :frames])

    def rnn_run(self, model):
        return lambda: model.run({"input": self.x})["output"]

    def ort(self, sess):
        return lambda: sess.run(None, {"input": self.x})[0]


def median_call(call, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--markdown", action="store_true", help="print the README's table")
    opts = ap.parse_args()

    rows = []
    for case in (Silero(), NSNet2(100), NSNet2(1)):
        model = rnn_run.Model(case.path, threads=1)
        sess = session(case.path)
        # Same answers first (fresh state on both sides).
        a, b = case.rnn_run(model)(), case.ort(sess)()
        diff = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        ours, theirs = case.rnn_run(model), case.ort(sess)
        for _ in range(20):
            ours()
            theirs()
        r_times, o_times = [], []
        for _ in range(opts.rounds):
            r_times.append(median_call(ours, opts.calls))
            o_times.append(median_call(theirs, opts.calls))
        r, o = statistics.median(r_times), statistics.median(o_times)
        rows.append((case.name, r, o, diff))
        print(f"{case.name}: rnn-run {r * 1e6:.1f} µs, onnxruntime {o * 1e6:.1f} µs, ratio {r / o:.2f} "
              f"(max abs diff {diff:.1e})", flush=True)

    cpu = cpu_name()
    print()
    print(f"CPU: {cpu}; rnn_run {rnn_run.__version__}, onnxruntime {ort.__version__}, "
          f"Python {platform.python_version()}, numpy {np.__version__}; one thread each; "
          f"median of {opts.rounds} interleaved rounds of {opts.calls} calls")
    if opts.markdown:
        print()
        print("| model, call | rnn-run `Model.run` | onnxruntime `InferenceSession.run` | ratio |")
        print("| --- | ---: | ---: | ---: |")
        for name, r, o, _ in rows:
            print(f"| {name} | {r * 1e6:.0f} µs | {o * 1e6:.0f} µs | {r / o:.2f} |")


if __name__ == "__main__":
    main()
