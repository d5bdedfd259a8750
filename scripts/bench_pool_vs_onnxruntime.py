#!/usr/bin/env python3
"""Many streams, one step: frames per second of N concurrent streams served by
`rnn-run serve-bench` (pooled into batched steps, and each stream on its own) against
onnxruntime called once per stream and frame with its state fed back, all on one thread.

Models: a forward LSTM with H=256 (random weights; the ONNX file for rnn-run streams, a copy
with initial_h/initial_c inputs and Y_h/Y_c outputs for onnxruntime), and Silero VAD from
fixtures/realworld (its state fed back: state -> stateN).

Usage: python scripts/bench_pool_vs_onnxruntime.py [--streams 64] [--frames 200] [--bin PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def lstm_models(h: int, out: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((1, 4 * h, h)) * 0.05).astype(np.float32)
    r = (rng.standard_normal((1, 4 * h, h)) * 0.05).astype(np.float32)
    b = (rng.standard_normal((1, 8 * h)) * 0.05).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R"), numpy_helper.from_array(b, "B")]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["seq", "batch", h])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    streaming = helper.make_model(
        helper.make_graph([helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=h)], "lstm", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", 14)])
    h0 = helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "batch", h])
    c0 = helper.make_tensor_value_info("c0", TensorProto.FLOAT, [1, "batch", h])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Y_h", "Y_c")]
    stateful = helper.make_model(
        helper.make_graph([helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0"], ["Y", "Y_h", "Y_c"], hidden_size=h)],
                          "lstm", [x, h0, c0], outs, inits),
        opset_imports=[helper.make_opsetid("", 14)])
    a, s = out / "lstm_stream.onnx", out / "lstm_state.onnx"
    onnx.save(streaming, a)
    onnx.save(stateful, s)
    return a, s


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_fps(sess, feeds_of, feedback, streams: int, frames: int) -> float:
    """Each round runs every stream once, batch 1, its state fed back."""
    states = [dict(feeds_of()) for _ in range(streams)]
    outputs = [o.name for o in sess.get_outputs()]
    def round_():
        for s in states:
            out = dict(zip(outputs, sess.run(None, s)))
            for i, o in feedback:
                s[i] = out[o]
    round_()
    start = time.perf_counter()
    for _ in range(frames):
        round_()
    return streams * frames / (time.perf_counter() - start)


def serve_bench(binary: str, args: list[str]) -> dict:
    out = subprocess.run([binary, "serve-bench", *args, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "rnn-run"))
    args = ap.parse_args()
    n, f = args.streams, args.frames
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stream_model, state_model = lstm_models(256, tmp)
        zeros = lambda: {"X": np.zeros((1, 1, 256), np.float32), "h0": np.zeros((1, 1, 256), np.float32),
                         "c0": np.zeros((1, 1, 256), np.float32)}
        o = ort_fps(session(state_model), zeros, [("h0", "Y_h"), ("c0", "Y_c")], n, f)
        r = serve_bench(args.bin, [str(stream_model), "--streams", str(n), "--frames", str(f)])
        rows.append(("LSTM H=256", r, o))

        silero = ROOT / "fixtures/realworld/silero_vad_16k_op15.onnx"
        call = dict(np.load(ROOT / "fixtures/realworld/cases/silero_vad_16k_op15/16k_carry_call0_inputs.npz"))
        np.save(tmp / "input.npy", call["input"])
        np.save(tmp / "sr.npy", call["sr"])
        first = lambda: {"input": call["input"], "sr": call["sr"], "state": np.zeros((2, 1, 128), np.float32)}
        o = ort_fps(session(silero), first, [("state", "stateN")], n, f)
        r = serve_bench(args.bin, [str(silero), str(tmp / "input.npy"), "--feedback", "state=stateN",
                                   "--shared", f"sr={tmp / 'sr.npy'}", "--streams", str(n), "--frames", str(f)])
        rows.append(("Silero VAD", r, o))
    print(f"{cpu_name()}; {n} concurrent streams, {f} frames each, one thread each way")
    print("| model | onnxruntime per stream | rnn-run solo streams | rnn-run pooled | pooled / solo | pooled / onnxruntime | mean batch | queued p50 / p99 (µs) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r, o in rows:
        print(f"| {name} | {o:.0f} | {r['solo_fps']:.0f} | {r['pooled_fps']:.0f} | {r['pooled_fps'] / r['solo_fps']:.2f} | "
              f"{r['pooled_fps'] / o:.2f} | {r['mean_batch']:.1f} | {r['queued_p50_us']:.0f} / {r['queued_p99_us']:.0f} |")
    print("frames per second; queued: a frame's wait before its step (max wait 2000 µs)")


if __name__ == "__main__":
    main()
