#!/usr/bin/env python3
"""Per-call latency of one `ort` program on three engines, interleaved, on this machine.

- rnn-run through `ort` (rnn-run-ort) and tract through `ort` (ort-tract 0.5.0 from crates.io):
  the same Rust program, ort-backend/bench (`ort-latency BACKEND WORKLOAD CALLS`), one
  intra-op thread, one backend per process;
- onnxruntime from Python (this script, `onnxruntime` from PyPI, CPU provider, one intra- and
  one inter-op thread, sequential): `ort` cannot download ONNX Runtime's binaries here (the
  network reaches only package registries), so onnxruntime is timed from Python; its figures
  include Python's call overhead (a few µs per call) and are labelled so.

Workloads (the fixtures'): Silero VAD 16 kHz, one 32 ms frame per call with the state fed
back; NSNet2, 100 frames of features per call; the PyTorch tutorial LSTM. Each round runs every
engine on every workload once, in turn, so that the machine's load falls on all of them; the
table shows the median over rounds of each run's median per-call time.

    (cd ort-backend/bench && cargo build --release)
    python scripts/bench_ort_backends.py --rounds 5 --calls 2000
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ["silero", "nsnet2", "lstm"]
ENGINES = ["rnn-run", "tract", "onnxruntime"]


def cpu_name():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnxruntime_times(workload, calls):
    """Per-call µs, after a warm-up of a tenth as many calls (at least 3)."""
    warm = max(3, calls // 10)
    times = []
    if workload == "silero":
        s = session(ROOT / "fixtures/realworld/silero_vad_16k_op15.onnx")
        case = ROOT / "fixtures/realworld/cases/silero_vad_16k_op15"
        frames = [np.load(case / f"16k_carry_call{k}_inputs.npz")["input"] for k in range(8)]
        sr = np.array(16000, dtype=np.int64)
        state = np.zeros((2, 1, 128), dtype=np.float32)
        for k in range(calls + warm):
            start = time.perf_counter()
            prob, state = s.run(["output", "stateN"], {"input": frames[k % 8], "state": state, "sr": sr})
            _ = float(prob[0, 0])
            if k >= warm:
                times.append((time.perf_counter() - start) * 1e6)
    else:
        if workload == "nsnet2":
            s = session(ROOT / "fixtures/realworld/nsnet2-20ms-baseline.onnx")
            x = np.load(ROOT / "fixtures/realworld/cases/nsnet2-20ms-baseline/100frames_call0_inputs.npz")["input"]
            feeds = {"input": x}
        else:
            d = ROOT / "fixtures/tutorial/lstm_legacy"
            s = session(d / "model.onnx")
            feeds = {i.name: np.load(d / f"input_{k}.npy") for k, i in enumerate(s.get_inputs())}
        for k in range(calls + warm):
            start = time.perf_counter()
            s.run(None, feeds)
            if k >= warm:
                times.append((time.perf_counter() - start) * 1e6)
    return statistics.median(times)


def rust_time(binary, backend, workload, calls):
    out = subprocess.run([str(binary), backend, workload, str(calls)], capture_output=True, text=True)
    if out.returncode != 0:
        if backend == "tract" and "unknown backend" in out.stderr:
            return None, "not built: (cd ort-backend/bench && cargo build --release --features tract)"
        if not out.stderr.strip():
            return None, f"exit {out.returncode}"
        last = out.stderr.strip().splitlines()[-1]
        # ort's Debug form, `Error { code: ..., message: "...", ptr: ... }`: the message alone.
        if 'message: "' in last:
            last = last.split('message: "', 1)[1].rsplit('", ptr', 1)[0]
        return None, last
    return json.loads(out.stdout)["median_us"], None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=1000, help="timed calls per run (NSNet2: a tenth)")
    p.add_argument("--workloads", nargs="+", default=WORKLOADS, choices=WORKLOADS)
    p.add_argument("--binary", type=Path, default=None, help="ort-latency (default: the bench's target dir)")
    args = p.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "ort-backend/bench/target"))
    binary = args.binary or target / "release/ort-latency"
    if not binary.exists():
        sys.exit(f"{binary} not found: (cd ort-backend/bench && cargo build --release) first")

    results = {(e, w): [] for e in ENGINES for w in args.workloads}
    errors = {}
    for r in range(args.rounds):
        for w in args.workloads:
            calls = args.calls // 10 if w == "nsnet2" else args.calls
            for e in ENGINES:
                if (e, w) in errors:
                    continue
                if e == "onnxruntime":
                    t = onnxruntime_times(w, calls)
                else:
                    t, err = rust_time(binary, e, w, calls)
                    if err:
                        errors[(e, w)] = err
                        continue
                results[(e, w)].append(t)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    print(f"CPU: {cpu_name()}, 1 thread; median over {args.rounds} interleaved rounds of each run's median µs per call")
    print()
    print("| workload | rnn-run via ort (rnn-run-ort) | tract via ort (ort-tract 0.5.0) | onnxruntime 1.32 (from Python) | tract / rnn-run | onnxruntime / rnn-run |")
    print("|---|---|---|---|---|---|")
    names = {"silero": "Silero VAD, one 32 ms frame, state fed back", "nsnet2": "NSNet2, 100 frames", "lstm": "tutorial LSTM(5, 6, 2), 1 step, batch 3"}
    for w in args.workloads:
        cells = []
        med = {}
        for e in ENGINES:
            if (e, w) in errors:
                cells.append(f"fails: {errors[(e, w)][:100]}")
            else:
                med[e] = statistics.median(results[(e, w)])
                cells.append(f"{med[e]:.1f} µs")
        ratio = lambda e: f"{med[e] / med['rnn-run']:.2f}" if e in med and "rnn-run" in med else "—"
        print(f"| {names[w]} | {' | '.join(cells)} | {ratio('tract')} | {ratio('onnxruntime')} |")


if __name__ == "__main__":
    main()
