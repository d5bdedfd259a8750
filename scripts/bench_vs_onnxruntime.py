#!/usr/bin/env python3
"""rnn-run against onnxruntime on single-node RNN / LSTM / GRU models, one thread each.

For every case (op, hidden size H = input size, batch, T) the script builds a one-node ONNX
model with its weights as initializers, then times, alternately and in the same run:

- onnxruntime (CPU provider, intra_op_num_threads=1, inter_op_num_threads=1, sequential), median
  of --runs session.run calls after a warm-up;
- `rnn-run MODEL X.npy --bench N --json` (the binary reports the median of N runs after a
  warm-up, load excluded), for each of --threads (default 1), and optionally `--engine tract`
  (--with-tract).

Each side is measured --rounds times, interleaved; the table shows the median over rounds in µs
per time step and the ratio rnn-run / onnxruntime. `--half bf16` adds a column timing rnn-run with
`--recurrent-weights bf16` (Rᵀ in 16 bits; its error against float64 is in the README). A second
table does the same on whole PyTorch exports from fixtures/matrix, and a third on the third-party
models of fixtures/realworld and the DeepFilterNet-like graphs of fixtures/graphs (ms per call,
first call of each case; --no-exports skips both).

    cargo build --release -j1
    python scripts/bench_vs_onnxruntime.py            # full table
    python scripts/bench_vs_onnxruntime.py --quick    # batch 1, H 256/512, plus LSTM H256 b16
    python scripts/bench_vs_onnxruntime.py --ops lstm --hidden 256 --batch 1 4
    python scripts/bench_vs_onnxruntime.py --ops lstm gru_lbr1 --hidden 512 --batch 1 --threads 1 2
    python scripts/bench_vs_onnxruntime.py --quick --half bf16 --quiet-wait 30
    python scripts/gen_bench_models.py && \
        python scripts/bench_vs_onnxruntime.py --models-only --bench-set target/bench-models
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
GATES = {"lstm": 4, "gru_lbr0": 3, "gru_lbr1": 3, "rnn": 1}
OP_TYPE = {"lstm": "LSTM", "gru_lbr0": "GRU", "gru_lbr1": "GRU", "rnn": "RNN"}


def lscpu():
    """lscpu's fields, or {} where it is missing."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in out.splitlines())}


def cpu_model():
    """Model name, vector extensions and caches, from lscpu (/proc/cpuinfo as a fallback)."""
    info = lscpu()
    name = info.get("Model name")
    if not name:
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    flags = set(info.get("Flags", "").split())
    isa = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2")
    isa += "".join(f" +{f}" for f in ("avx512_bf16", "avx512_fp16", "amx_tile") if f in flags)
    parts = [name or "unknown CPU", isa]
    if info.get("CPU family") and info.get("Model"):
        parts.append(f"family {info['CPU family']} model {info['Model']}")
    for cache in ("L2 cache", "L3 cache"):
        if info.get(cache):
            parts.append(f"{cache.split()[0]} {info[cache]}")
    if info.get("Hypervisor vendor"):
        parts.append(f"{info['Hypervisor vendor']} guest")
    if info.get("CPU(s)"):
        parts.append(f"{info['CPU(s)']} CPUs")
    return ", ".join(parts)


def cpu_busy(interval=0.5):
    """Fraction of the machine's CPU time spent busy over `interval` seconds (/proc/stat)."""
    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
        return sum(f), f[3] + f[4]
    try:
        t1, i1 = sample()
        time.sleep(interval)
        t2, i2 = sample()
    except (OSError, ValueError):
        return 0.0
    return 1.0 - (i2 - i1) / max(t2 - t1, 1)


def wait_quiet(max_wait, threshold=0.1):
    """Waits (up to `max_wait` s) until other processes leave the CPUs idle: the measurements
    of a shared machine are worthless while something else runs. Returns the busy fraction
    seen last."""
    start = time.monotonic()
    busy = cpu_busy()
    while busy > threshold and time.monotonic() - start < max_wait:
        time.sleep(2)
        busy = cpu_busy()
    return busy


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def measure_bandwidth():
    """Single-core read GB/s by buffer size, from `cargo bench --bench cells -- bandwidth`."""
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "--bench", "cells", "--", "bandwidth"],
        cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip()[-2000:])
    sizes = {}
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) >= 3 and f[1] in ("KiB", "MiB"):
            sizes[int(f[0]) << (10 if f[1] == "KiB" else 20)] = float(f[2])
        if line.startswith("batch-1"):
            break
    if 8 << 20 not in sizes:
        raise RuntimeError("no 8 MiB figure in the bandwidth probe's output:\n" + out.stdout)
    return sizes


def bandwidth_for(nbytes, bw, default):
    """The probe's GB/s at the smallest buffer holding `nbytes` (Rᵀ that fits in L2 is read
    from L2), `default` past the probe's largest size or without a probe."""
    fits = [gbs for size, gbs in sorted(bw.items()) if size >= nbytes]
    return fits[0] if fits else default


def r_bytes(op, hidden):
    """Bytes of Rᵀ (float32) every time step reads, one direction."""
    return 4 * GATES[op] * hidden * hidden


def build_model(op, hidden, batch, seq, seed=0, opset=14):
    """One recurrent node, X [seq, batch, H] (concrete: tract's own lowering needs it), weights
    ±1/√H as initializers."""
    rng = np.random.default_rng(seed)
    g = GATES[op]
    k = 1.0 / np.sqrt(hidden)
    w = rng.uniform(-k, k, (1, g * hidden, hidden)).astype(np.float32)
    r = rng.uniform(-k, k, (1, g * hidden, hidden)).astype(np.float32)
    b = rng.uniform(-k, k, (1, 2 * g * hidden)).astype(np.float32)
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "lstm" else [])
    attrs = {"hidden_size": hidden}
    if op == "gru_lbr1":
        attrs["linear_before_reset"] = 1
    node = helper.make_node(OP_TYPE[op], ["X", "W", "R", "B"], outputs, name="rec", **attrs)
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [seq, batch, hidden])
    # Outputs without shapes: tract's own lowering refuses symbolic output dims it cannot
    # determine, and every runtime infers them anyway.
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    graph = helper.make_graph(
        [node],
        f"{op}_h{hidden}",
        [x],
        outs,
        initializer=[
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(r, "R"),
            numpy_helper.from_array(b, "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # the real models' warnings (unused initializers, shapes) are noise here
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def time_ort(sess, x, runs):
    feed = {"X": x}
    sess.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def time_rnn_run(binary, model_path, x_path, runs, engine=None, threads=1, weights=None):
    cmd = [str(binary), str(model_path), str(x_path), "--bench", str(runs), "--json"]
    if engine:
        cmd += ["--engine", engine]
    if threads > 1:
        cmd += ["--threads", str(threads)]
    if weights:
        cmd += ["--recurrent-weights", weights]
    env = dict(os.environ, RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return float(json.loads(out.stdout)["bench"]["median_ms"])


def runs_for(op, hidden, batch, t):
    """Enough runs for a stable median without making the big cases take forever."""
    flops = 4.0 * GATES[op] * hidden * hidden * batch * t
    est_ms = flops / 20e9 * 1e3  # ~20 GFLOP/s
    return int(min(50, max(5, 300.0 / max(est_ms, 1e-3))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "rnn-run"))
    ap.add_argument("--ops", nargs="+", default=list(GATES), choices=list(GATES))
    ap.add_argument("--hidden", nargs="+", type=int, default=[64, 128, 256, 512])
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--seq", nargs="+", type=int, default=[100])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurements per side")
    ap.add_argument("--runs", type=int, default=0, help="runs per measurement (0: by size)")
    ap.add_argument("--threads", nargs="+", type=int, default=[1],
                    help="rnn-run thread counts to time (onnxruntime keeps one thread)")
    ap.add_argument("--with-tract", action="store_true", help="also time --engine tract")
    ap.add_argument("--half", nargs="+", default=[], choices=["bf16", "f16"],
                    help="also time rnn-run with --recurrent-weights FORMAT (one thread)")
    ap.add_argument("--also", nargs="+", default=[], metavar="BINARY",
                    help="other rnn-run binaries (other builds) timed alternately with --binary, "
                         "at the same thread counts; columns named after their directory")
    ap.add_argument("--no-exports", dest="exports", action="store_false",
                    help="skip the full PyTorch exports from fixtures/matrix")
    ap.add_argument("--quick", action="store_true", help="a handful of headline cases")
    ap.add_argument("--models-only", action="store_true",
                    help="only the whole exports and third-party models (no single-node cases)")
    ap.add_argument("--bench-set", metavar="DIR",
                    help="also time the synthetic models scripts/gen_bench_models.py wrote to DIR")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--quiet-wait", type=float, default=0,
                    help="before each round, wait up to this many seconds for the machine's "
                         "CPUs to be idle (another process's load spoils the figures); the "
                         "'busy' column is the highest busy fraction seen before a round")
    ap.add_argument("--l3-gbs", type=float, default=0,
                    help="single-core L3 read bandwidth in GB/s for the floor column (0: measure "
                         "it with `cargo bench --bench cells -- bandwidth`; negative: no floor)")
    args = ap.parse_args()

    binary = Path(args.binary)
    if not binary.exists():
        sys.exit(f"{binary} not found: run `cargo build --release -j1` first")

    if args.models_only:
        cases = []
    elif args.quick:
        cases = [(op, h, 1, 100) for op in args.ops for h in (256, 512)]
        cases += [("lstm", 256, 16, 100)]
    else:
        cases = [(op, h, b, t) for op in args.ops for h in args.hidden for b in args.batch for t in args.seq]

    print(f"CPU: {cpu_model()}")
    print(f"onnxruntime {ort.__version__} on one thread; µs per time step; load average "
          f"{load_average():.2f} at the start")
    l3 = args.l3_gbs
    bw = {}
    if l3 == 0 and cases:
        bw = measure_bandwidth()
        l3 = bw[8 << 20]
        print("single-core read bandwidth, GB/s: " + ", ".join(
            f"{b >> 10} KiB {g:.1f}" if b < 1 << 20 else f"{b >> 20} MiB {g:.1f}"
            for b, g in sorted(bw.items())))
    if l3 > 0:
        print(f"floor: Rᵀ bytes ÷ the probe's bandwidth at the smallest buffer holding Rᵀ "
              f"({l3:.1f} GB/s from 8 MiB on), the batch-1 recurrent product's time if Rᵀ "
              "streams from that cache level every step")
    cols = ["op", "H", "batch", "T", "ort"]
    cols += ["floor"] if l3 > 0 else []
    others = [(Path(b), Path(b).resolve().parent.name) for b in args.also]
    for n in args.threads:
        cols += [f"rnn-run×{n}", "ratio"]
        for _, label in others:
            cols += [f"{label}×{n}"[:10], "ratio"]
    for fmt in args.half:
        cols += [fmt, "ratio"]
    cols += ["tract", "tract/ort"] if args.with_tract else []
    cols += ["busy"] if args.quiet_wait > 0 else []
    widths = ["{:<9}", "{:>4}", "{:>5}", "{:>5}", "{:>9}"] + (["{:>6}"] if l3 > 0 else [])
    widths += ["{:>10}", "{:>6}"] * len(args.threads) * (1 + len(others))
    widths += ["{:>8}", "{:>6}"] * len(args.half)
    widths += ["{:>9}", "{:>9}"] if args.with_tract else []
    widths += ["{:>5}"] if args.quiet_wait > 0 else []
    print(" ".join(widths).format(*cols))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {}
        for op, h, batch, t in cases:
            key = (op, h, batch, t)
            if key not in models:
                path = tmp / f"{op}_h{h}_b{batch}_t{t}.onnx"
                onnx.save(build_model(op, h, batch, t), str(path))
                models[key] = (path, ort_session(path))
            path, sess = models[key]
            x = np.random.default_rng(1).uniform(-1, 1, (t, batch, h)).astype(np.float32)
            x_path = tmp / f"x_{t}_{batch}_{h}.npy"
            np.save(x_path, x)
            runs = args.runs or runs_for(op, h, batch, t)
            ort_ms, tr_ms = [], []
            rr_ms = {n: [] for n in args.threads}
            also_ms = {(label, n): [] for _, label in others for n in args.threads}
            half_ms = {fmt: [] for fmt in args.half}
            busy = 0.0
            for _ in range(args.rounds):
                if args.quiet_wait > 0:
                    busy = max(busy, wait_quiet(args.quiet_wait))
                ort_ms.append(time_ort(sess, x, runs))
                for n in args.threads:
                    rr_ms[n].append(time_rnn_run(binary, path, x_path, runs, threads=n))
                    for other, label in others:
                        also_ms[label, n].append(
                            time_rnn_run(other, path, x_path, runs, threads=n))
                for fmt in args.half:
                    half_ms[fmt].append(time_rnn_run(binary, path, x_path, runs, weights=fmt))
                if args.with_tract:
                    try:
                        tr_ms.append(time_rnn_run(binary, path, x_path, runs, engine="tract"))
                    except RuntimeError as e:
                        print(f"  (tract: {e})", file=sys.stderr)
                        tr_ms.append(float("nan"))
            o = statistics.median(ort_ms) * 1e3 / t
            spread = lambda xs: (max(xs) - min(xs)) / statistics.median(xs)
            row = {"op": op, "hidden": h, "batch": batch, "seq": t, "ort_us": o,
                   "ort_spread": spread(ort_ms), "load": load_average(), "busy": busy}
            line = f"{op:<9} {h:>4} {batch:>5} {t:>5} {o:>9.2f}"
            if l3 > 0:
                floor = r_bytes(op, h) / (bandwidth_for(r_bytes(op, h), bw, l3) * 1e3)
                row["floor_us"] = floor
                line += f" {floor:>6.2f}"
            for n in args.threads:
                r = statistics.median(rr_ms[n]) * 1e3 / t
                suffix = "" if n == 1 else f"_{n}threads"
                row["rnn_run_us" + suffix] = r
                row["ratio" + suffix] = r / o
                row["spread" + suffix] = spread(rr_ms[n])
                line += f" {r:>10.2f} {r / o:>6.2f}"
                for _, label in others:
                    a = statistics.median(also_ms[label, n]) * 1e3 / t
                    row[f"{label}_us{suffix}"] = a
                    line += f" {a:>10.2f} {a / o:>6.2f}"
            for fmt in args.half:
                hm = statistics.median(half_ms[fmt]) * 1e3 / t
                row[f"{fmt}_us"] = hm
                row[f"ratio_{fmt}"] = hm / o
                line += f" {hm:>8.2f} {hm / o:>6.2f}"
            if args.with_tract:
                tr = statistics.median(tr_ms) * 1e3 / t
                row["tract_us"] = tr
                line += f" {tr:>9.2f} {tr / o:>9.2f}"
            if args.quiet_wait > 0:
                line += f" {busy:>5.0%}"
            print(line, flush=True)
            results.append(row)
    exports = time_exports(binary, args) if args.exports else []
    realworld = time_realworld(binary, args) if args.exports else []
    bench_set = time_bench_set(binary, args, Path(args.bench_set)) if args.bench_set else []
    summarize(exports + realworld + bench_set)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"cpu": cpu_model(), "ort": ort.__version__, "l3_gbs": l3, "bandwidth": bw,
             "results": results, "exports": exports, "realworld": realworld,
             "bench_set": bench_set}, indent=1))


# Whole PyTorch exports from the committed fixtures: the LSTM by the legacy exporter, the GRU by
# dynamo (weights in model.onnx.data), a bidirectional GRU with a linear head.
EXPORTS = ["lstm_long_h192_legacy_op17", "gru_long_h192_dynamo", "bigru_linear_head_legacy_op17"]


def time_exports(binary, args):
    """µs per call on full exports, inputs from the fixture, same alternation as the cases."""
    print("\nfull PyTorch exports (fixtures/matrix), ms per call")
    print(" ".join(["{:<32}", "{:>9}"] + ["{:>10}", "{:>6}"] * len(args.threads)).format(
        "model", "ort", *[c for n in args.threads for c in (f"rnn-run×{n}", "ratio")]))
    rows = []
    for name in EXPORTS:
        d = ROOT / "fixtures" / "matrix" / name
        files = sorted(d.glob("input_*.npy"), key=lambda p: int(p.stem.split("_")[1]))
        sess = ort_session(d / "model.onnx")
        feed = {i.name: np.load(f) for i, f in zip(sess.get_inputs(), files)}
        ort_ms, rr_ms = [], {n: [] for n in args.threads}
        for _ in range(args.rounds):
            sess.run(None, feed)
            times = []
            for _ in range(20):
                t0 = time.perf_counter()
                sess.run(None, feed)
                times.append(time.perf_counter() - t0)
            ort_ms.append(statistics.median(times) * 1e3)
            for n in args.threads:
                cmd = [str(binary), str(d / "model.onnx"), *map(str, files), "--bench", "20", "--json"]
                if n > 1:
                    cmd += ["--threads", str(n)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                rr_ms[n].append(float(json.loads(out.stdout)["bench"]["median_ms"]))
        o = statistics.median(ort_ms)
        row = {"model": name, "ort_ms": o}
        line = f"{name:<32} {o:>9.3f}"
        for n in args.threads:
            r = statistics.median(rr_ms[n])
            suffix = "" if n == 1 else f"_{n}threads"
            row["rnn_run_ms" + suffix] = r
            row["ratio" + suffix] = r / o
            line += f" {r:>10.3f} {r / o:>6.2f}"
        print(line, flush=True)
        rows.append(row)
    return rows


# Third-party models and the DeepFilterNet-like conv+GRU graphs: (manifest folder, model, case).
REALWORLD = [
    ("realworld", "silero_vad", "16k_carry"),
    ("realworld", "silero_vad_16k_op15", "16k_carry"),
    ("realworld", "silero_vad_op18_ifless", "16k_carry"),
    ("realworld", "silero_vad_openvino_16k", "16k_carry"),
    ("realworld", "silero_vad_half", "16k_carry"),
    ("realworld", "silero_vad_16k_sequence", "16k_blocks_carry"),
    ("realworld", "nsnet2-20ms-baseline", "100frames"),
    ("realworld", "nsnet2-20ms-baseline", "batch2_40frames"),
    ("realworld", "common_old", "w96"),
    ("realworld", "g2p_id_lstm_encoder", "selamat"),
    ("realworld", "g2p_id_lstm_decoder", "selamat"),
    ("realworld", "hey_mycroft_v0.1", "b3"),
    ("graphs", "conv_gru_dfn_legacy", "b1_t200"),
    ("graphs", "conv_gru_dfn_legacy", "b2_t50"),
    ("graphs", "conv_gru_dfn_dynamo", "b1_t200"),
    ("graphs", "conv_gru_lookahead_legacy", "b1_t200"),
    ("graphs", "tf2onnx_zero_state", "n4_t11"),
]


def time_realworld(binary, args, runs=20):
    """ms per call on the first call of each case, the npz inputs the tests use, onnxruntime
    and rnn-run alternated as in the other tables."""
    print("\nthird-party models (fixtures/realworld) and conv+GRU graphs (fixtures/graphs), "
          f"ms per call; CPU: {cpu_model()}")
    print(" ".join(["{:<38}", "{:>9}", "{:>9}", "{:>6}"]).format(
        "model / case", "ort", "rnn-run", "ratio"))
    rows = []
    for folder, name, case_name in REALWORLD:
        base = ROOT / "fixtures" / folder
        manifest = json.loads((base / "manifest.json").read_text())
        model = next(m for m in manifest["models"] if m["name"] == name)
        case = next(c for c in model["cases"] if c["name"] == case_name)
        inputs = base / case["calls"][0]["inputs"]
        with np.load(inputs) as npz:
            feed = {k: npz[k] for k in npz.files}
        sess = ort_session(base / model["file"])
        ort_ms, rr_ms = [], []
        for _ in range(args.rounds):
            if args.quiet_wait > 0:
                wait_quiet(args.quiet_wait)
            sess.run(None, feed)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                sess.run(None, feed)
                times.append(time.perf_counter() - t0)
            ort_ms.append(statistics.median(times) * 1e3)
            rr_ms.append(time_rnn_run(binary, base / model["file"], inputs, runs))
        o, r = statistics.median(ort_ms), statistics.median(rr_ms)
        label = f"{name} / {case_name}"
        rows.append({"model": name, "case": case_name, "ort_ms": o, "rnn_run_ms": r,
                     "ratio": r / o, "load": load_average()})
        print(f"{label:<38} {o:>9.3f} {r:>9.3f} {r / o:>6.2f}", flush=True)
    return rows


def summarize(rows):
    """One line over every whole model timed (third-party, graphs, synthetic set): what issue
    23 asks of them is each at or under 1.0 and the median at or under 0.8."""
    rows = [r for r in rows if "ratio" in r]  # one-thread ratios only
    if not rows:
        return
    ratios = sorted(r["ratio"] for r in rows)
    worst = max(rows, key=lambda r: r["ratio"])
    label = worst["model"] + (f" / {worst['case']}" if "case" in worst else "")
    print(f"\nwhole models: {len(ratios)} timed, median ratio {statistics.median(ratios):.2f}, "
          f"{sum(r <= 1.0 for r in ratios)} at or under 1.0, worst {worst['ratio']:.2f} "
          f"({label}); CPU: {cpu_model()}; load average {load_average():.2f} at the end")


def time_bench_set(binary, args, folder, runs=20):
    """ms per call on the synthetic models of scripts/gen_bench_models.py (manifest.json in
    `folder`), onnxruntime, rnn-run and the --also binaries alternated as in the other tables."""
    also = [Path(b) for b in (args.also or [])]
    print(f"\nsynthetic benchmark set ({folder}), ms per call; CPU: {cpu_model()}")
    head = ["model", "ort", "rnn-run", "ratio"]
    for b in also:
        head += [b.parent.name[:9], "ratio"]
    print(" ".join(["{:<38}", "{:>9}", "{:>9}", "{:>6}"] + ["{:>9}", "{:>6}"] * len(also)).format(*head))
    rows = []
    for entry in json.loads((folder / "manifest.json").read_text()):
        inputs = folder / entry["inputs"]
        with np.load(inputs) as npz:
            feed = {k: npz[k] for k in npz.files}
        sess = ort_session(folder / entry["model"])
        ort_ms, rr_ms, also_ms = [], [], [[] for _ in also]
        for _ in range(args.rounds):
            if args.quiet_wait > 0:
                wait_quiet(args.quiet_wait)
            sess.run(None, feed)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                sess.run(None, feed)
                times.append(time.perf_counter() - t0)
            ort_ms.append(statistics.median(times) * 1e3)
            rr_ms.append(time_rnn_run(binary, folder / entry["model"], inputs, runs))
            for b, ms in zip(also, also_ms):
                ms.append(time_rnn_run(b, folder / entry["model"], inputs, runs))
        o, r = statistics.median(ort_ms), statistics.median(rr_ms)
        rows.append({"model": entry["name"], "ort_ms": o, "rnn_run_ms": r, "ratio": r / o,
                     "load": load_average()})
        cells = f"{entry['name']:<38} {o:>9.3f} {r:>9.3f} {r / o:>6.2f}"
        for b, ms in zip(also, also_ms):
            a = statistics.median(ms)
            rows[-1].setdefault("also", {})[str(b)] = a
            cells += f" {a:>9.3f} {a / o:>6.2f}"
        print(cells, flush=True)
    return rows

if __name__ == "__main__":
    main()
