#!/usr/bin/env python3
"""--threads 2 against one thread on an idle machine and on a busy one, the load made here.

Runs the cells benchmark in its `vs1` mode (benches/cells.rs: one process times sequences of
100 steps on one thread and on two, in blocks of about 25 ms alternately for about 1.5 s, so
that both meet the same load; µs per step, the median per mode) for LSTM and GRU at H 256 and
512, batch 1 and 16, once per round, for --rounds rounds under each load:

- idle: nothing added (other users of the machine are not stopped: the load average is shown);
- half: one process busy half the time (5 ms spinning, 5 ms asleep), so one core is half busy;
- busy: two processes spinning, so both cores are busy.

It prints, per load and case, the median µs per step on one and two threads, the median of the
per-round ratios two/one, and the worst (largest) ratio. With --same, the second column is one
thread again: the noise of the comparison itself.

    cargo bench --bench cells --no-run          # builds the benchmark (prints its path)
    python scripts/bench_threads_under_load.py --bench-binary target/release/deps/cells-HASH
    python scripts/bench_threads_under_load.py --bench-binary OLD --bench-binary NEW --rounds 5

With several --bench-binary, each gets its own columns, measured in the same rounds.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

CASES = [(op, h, b) for op in ("lstm", "gru_lbr1") for h in (256, 512) for b in (1, 16)]

SPIN = "while True: pass"
HALF = ("import time\n"
        "while True:\n"
        "    t = time.perf_counter()\n"
        "    while time.perf_counter() - t < 0.005: pass\n"
        "    time.sleep(0.005)\n")
LOADS = {"idle": [], "half": [HALF], "busy": [SPIN, SPIN]}


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    info = {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in out.splitlines())}
    flags = info.get("Flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{info.get('Model name', '?')}, {info.get('CPU(s)', '?')} vCPUs, {isa}"


def time_case(binary, op, h, batch, same):
    """µs per step on one thread and on two (or one again, with `same`), in one process."""
    args = [binary, op, f"h{h}", f"b{batch}", "vs1"] + (["same"] if same else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 6 and f[0] == op and f[1] == str(h) and f[2] == str(batch):
            return float(f[4]), float(f[5])
    raise RuntimeError(f"no result in {' '.join(args)}:\n{out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-binary", action="append", required=True,
                    help="the cells benchmark executable (repeat to compare builds)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--loads", nargs="+", default=list(LOADS), choices=list(LOADS))
    ap.add_argument("--same", action="store_true",
                    help="one thread against one thread (the noise of the comparison)")
    ap.add_argument("--cases", nargs="+", default=None, metavar="OP:H:BATCH",
                    help="e.g. lstm:256:1 (default: LSTM and GRU, H 256/512, batch 1/16)")
    args = ap.parse_args()
    cases = CASES
    if args.cases:
        cases = [(op, int(h), int(b)) for op, h, b in (c.split(":") for c in args.cases)]
    bins = args.bench_binary
    labels = [os.path.basename(b) if len(bins) == 1 else f"#{i}" for i, b in enumerate(bins)]
    other = "1t" if args.same else "2t"
    print(f"CPU: {cpu_model()}; µs per step, one thread vs {other[0]}, {args.rounds} rounds")
    for i, b in enumerate(bins):
        print(f"  #{i}: {b}")
    for load in args.loads:
        procs = [subprocess.Popen([sys.executable, "-c", code]) for code in LOADS[load]]
        try:
            time.sleep(0.5)
            print(f"\nload: {load} (load average {os.getloadavg()[0]:.2f} at the start)")
            head = f"{'case':<18}"
            for label in labels:
                head += f" {label + ' 1t':>9} {label + ' ' + other:>9} {other + '/1t':>6} {'worst':>6}"
            print(head)
            for op, h, batch in cases:
                line = f"{op} h{h} b{batch}".ljust(18)
                results = [[] for _ in bins]
                for r in range(args.rounds):
                    order = range(len(bins)) if r % 2 == 0 else reversed(range(len(bins)))
                    for i in order:
                        results[i].append(time_case(bins[i], op, h, batch, args.same))
                for res in results:
                    one = [a for a, _ in res]
                    two = [b for _, b in res]
                    ratios = [b / a for a, b in res]
                    line += (f" {statistics.median(one):>9.1f} {statistics.median(two):>9.1f}"
                             f" {statistics.median(ratios):>6.2f} {max(ratios):>6.2f}")
                print(line, flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
