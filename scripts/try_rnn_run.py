#!/usr/bin/env python3
"""Run the rnn-run binary on every call of every case of a manifest.json folder
(fixtures/realworld, fixtures/graphs, fixtures/streaming) and print one line per case.

Each call is run on its stored inputs (for call sequences these hold onnxruntime's own state
output of the previous call), compared with --expect at the case's atol/rtol. This is a quick
look for humans, not a test: the Rust tests read the manifests themselves.

Usage: python scripts/try_rnn_run.py [--bin PATH] [--only PATTERN] [--chunk N] DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def one_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    for line in text.splitlines():
        if line.startswith("error:"):
            return " ".join(line.split())[:400]
    for line in text.splitlines():
        if line.startswith("expect:"):
            return line.strip()
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return (lines[-1] if lines else "(no output)")[:400]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--bin", default=str(REPO_ROOT / "target" / "release" / "rnn-run"))
    ap.add_argument("--only", action="append", help="model name glob/substring; repeatable")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--chunk", type=int, help="pass --chunk N (streaming run, N steps per call)")
    args = ap.parse_args()
    for d in args.dirs:
        manifest = json.loads((d / "manifest.json").read_text())
        for model in manifest["models"]:
            name = model["name"]
            if args.only and not any(fnmatch.fnmatch(name, p) or p in name for p in args.only):
                continue
            if "file" not in model or not model.get("cases"):
                print(f"{d.name}/{name}: no model/cases ({model.get('export_error', '')[:200]})")
                continue
            for case in model["cases"]:
                results = []
                for k, call in enumerate(case["calls"]):
                    cmd = [args.bin, str(d / model["file"]), str(d / call["inputs"]), "--expect",
                           str(d / call["expected"]), "--atol", str(case["atol"]), "--rtol", str(case["rtol"])]
                    if args.chunk:
                        cmd += ["--chunk", str(args.chunk)]
                    try:
                        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                        msg = one_line(p.stdout + "\n" + p.stderr)
                        ok = p.returncode == 0 and msg.startswith("expect:") and "match" in msg \
                            and "mismatch" not in msg and "not" not in msg.split(":", 1)[1][:20]
                    except subprocess.TimeoutExpired:
                        msg, ok = f"timeout after {args.timeout}s", False
                    results.append((ok, msg))
                    if not ok:
                        break  # the first failing call says enough
                n_ok = sum(ok for ok, _ in results)
                status = "ok" if n_ok == len(case["calls"]) else "FAIL"
                last = results[-1][1]
                tag = f" stream={model['stream']}" if "stream" in model else ""
                print(f"{d.name}/{name}{tag} [{case['name']}] {status} {n_ok}/{len(case['calls'])} calls: {last}")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
