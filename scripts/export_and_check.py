#!/usr/bin/env python3
"""Export a PyTorch model with both ONNX exporters and check each export with rnn-run.

    python scripts/export_and_check.py MODULE.py FUNCTION [--out DIR] [--rnn-run PATH]

FUNCTION, defined in MODULE.py, takes no argument and returns `(model, example_inputs)`:
`example_inputs` is the tuple of positional arguments of `model(...)` (nested tuples such as
`(x, (h0, c0))` are fine; a single tensor is taken as a 1-tuple).

The script
  1. runs the model in eval mode under torch.no_grad() and saves the flattened inputs and
     outputs as OUT/inputs/input_<i>.npy and OUT/expected/expected_<i>.npy;
  2. exports it with the legacy exporter (dynamo=False, --opset, default 17) into
     OUT/legacy/model.onnx and with the dynamo exporter (dynamo=True, its default opset unless
     --dynamo-opset) into OUT/dynamo/model.onnx;
  3. runs `rnn-run MODEL NAME=INPUT... --expect REF... --json` on each export (the binary from
     --rnn-run, else target/release/rnn-run, built with `cargo build --release` when missing)
     and keeps its JSON report as OUT/<exporter>/rnn-run.json;
  4. prints one row per export (exporter, opset, outputs, max abs/rel error, verdict) and
     writes OUT/summary.json; an export that failed has its whole cause (the exception's
     message and its chain, without terminal colour codes) printed below the table.

With --dynamic, both exports are made with dynamic batch and sequence axes and each is also
run at other sizes (batch + 1, sequence * 2 + 1) on new random inputs against PyTorch, one
extra row each. The batch axis is the one whose size every input shares, the sequence axis
the first other non-feature axis of the first input (so give an example whose batch size
differs from its other sizes); output axes are found by running PyTorch at both sizes.

Exit status: 0 when every export ran and matched PyTorch within --rtol/--atol (an element
passes when |got - want| <= atol + rtol * |want|), 1 when any export failed to export, to run,
or to match, 2 for a usage error (bad module or function).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

# The exporters' output silencer is shared with the fixture generators.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixturelib import quiet  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LEGACY_OPSET = 17

warnings.filterwarnings("ignore")


def fail_usage(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def load_factory(module_path: Path, function: str):
    if not module_path.is_file():
        fail_usage(f"{module_path}: no such file")
    spec = importlib.util.spec_from_file_location(f"_export_and_check_{module_path.stem}", module_path)
    if spec is None or spec.loader is None:
        fail_usage(f"{module_path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(module_path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        fail_usage(f"{module_path}: importing it raised (traceback above)")
    factory = getattr(module, function, None)
    if not callable(factory):
        names = sorted(n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_"))
        fail_usage(f"{module_path} has no function '{function}' (callables: {', '.join(names) or 'none'})")
    return factory


def flatten(obj: Any) -> list[torch.Tensor]:
    """Tensors of nested tuples/lists/dicts, in order; other values (None, numbers) are
    skipped, as the exporters bake them into the graph."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in flatten(o)]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in flatten(v)]
    return []


def to_np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(strip_ansi(str(text)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cause_of(e: BaseException) -> tuple[str, str]:
    """The whole cause of an exception, for people, and its root in one line. The whole cause
    is each exception of the chain (outermost first) as `Type: message`, without colour codes,
    leaving out a chained message the outer one already quotes; exporters put the useful part
    (the unsupported op, the shape that failed) deep in the message or in a chained exception,
    so the one line is the innermost exception's first line."""
    parts, seen, root = [], set(), ""
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = strip_ansi(str(e)).strip()
        root = f"{type(e).__name__}: {first_line(text)}" if text else type(e).__name__
        if not text or not any(first_line(text) in p for p in parts):
            parts.append(f"{type(e).__name__}: {text}" if text else type(e).__name__)
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return "\n".join(parts), root


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def export(exporter: str, model, args: tuple, path: Path, opset: int | None, n_in: int, n_out: int,
           dyn: "Dynamic | None" = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {}
    if opset is not None:
        kw["opset_version"] = opset
    with quiet():
        if exporter == "legacy":
            if dyn is not None:
                names = {f"input_{i}": a for i, a in enumerate(dyn.input_axes)}
                names.update({f"output_{i}": a for i, a in enumerate(dyn.output_axes)})
                kw["dynamic_axes"] = {n: a for n, a in names.items() if a}
            torch.onnx.export(
                model,
                args,
                str(path),
                dynamo=False,
                input_names=[f"input_{i}" for i in range(n_in)],
                output_names=[f"output_{i}" for i in range(n_out)],
                **kw,
            )
        else:
            if dyn is not None:
                # torch.export specializes sizes 0 and 1: trace on inputs whose dynamic sizes
                # are at least 2 (the export is the same function of its inputs).
                args = dyn.export_args
                kw["dynamic_shapes"] = dyn.dynamic_shapes(args)
            torch.onnx.export(model, args, str(path), dynamo=True, verbose=False, **kw)


class Dynamic:
    """The batch and sequence axes of a model's inputs and outputs, and inputs at other sizes."""

    def __init__(self, model, args: tuple, inputs: list[np.ndarray]):
        shapes = [a.shape for a in inputs]
        if not shapes:
            raise ValueError("--dynamic needs tensor inputs")
        # Batch: a size that every input has, on exactly one axis each.
        candidates = [n for n in sorted(set(shapes[0])) if all(list(s).count(n) == 1 for s in shapes)]
        if len(candidates) != 1:
            raise ValueError(
                f"--dynamic: cannot tell the batch axis from the input shapes {[list(s) for s in shapes]} "
                "(it is the size every input has, once): make the example's batch size differ from its other sizes")
        self.batch = candidates[0]
        first = shapes[0]
        b0 = list(first).index(self.batch)
        seq_axes = [a for a in range(len(first) - 1) if a != b0]
        self.seq_axis = seq_axes[0] if seq_axes else None
        self.seq = first[self.seq_axis] if self.seq_axis is not None else None
        self.input_axes: list[dict[int, str]] = []
        for i, s in enumerate(shapes):
            axes = {list(s).index(self.batch): "batch"}
            if i == 0 and self.seq_axis is not None:
                axes[self.seq_axis] = "seq"
            self.input_axes.append(axes)
        self.new_batch = self.batch + 1
        self.new_seq = self.seq * 2 + 1 if self.seq is not None else None
        self.new_args = self.resized(args, self.new_batch, self.new_seq, seed=1)
        self.export_args = self.resized(args, max(self.batch, 2), max(self.seq or 2, 2), seed=2)
        with torch.no_grad():
            base = [to_np(t) for t in flatten(model(*args))]
            new = [to_np(t) for t in flatten(model(*self.new_args))]
        self.new_inputs = [to_np(t) for t in flatten(self.new_args)]
        self.new_outputs = new
        # Output axes: those whose size moved with the inputs'.
        self.output_axes = []
        for b, n in zip(base, new):
            axes = {}
            for a, (x, y) in enumerate(zip(b.shape, n.shape)):
                if x != y:
                    axes[a] = "batch" if (x, y) == (self.batch, self.new_batch) else "seq"
            self.output_axes.append(axes)

    def describe(self) -> str:
        seq = f", seq {self.seq} -> {self.new_seq} (axis {self.seq_axis} of input 0)" if self.seq is not None else ""
        return f"batch {self.batch} -> {self.new_batch}{seq}"

    def resized(self, args, batch: int, seq: int | None, seed: int):
        """`args` with the batch and sequence axes resized, filled with new random values."""
        gen = torch.Generator().manual_seed(seed)
        counter = iter(range(1 << 30))

        def walk(obj):
            if isinstance(obj, torch.Tensor):
                i = next(counter)
                shape = list(obj.shape)
                for axis, kind in self.input_axes[i].items():
                    shape[axis] = batch if kind == "batch" else seq
                if obj.is_floating_point():
                    return torch.randn(*shape, generator=gen, dtype=obj.dtype)
                return torch.zeros(*shape, dtype=obj.dtype)
            if isinstance(obj, tuple):
                return tuple(walk(o) for o in obj)
            if isinstance(obj, list):
                return [walk(o) for o in obj]
            if isinstance(obj, dict):
                return {k: walk(v) for k, v in obj.items()}
            return obj

        return walk(args)

    def dynamic_shapes(self, args):
        """torch.export's dynamic_shapes for `args`: the same nesting, Dim per dynamic axis."""
        batch = torch.export.Dim("batch")
        seq = torch.export.Dim("seq")
        counter = iter(range(1 << 30))

        def walk(obj):
            if isinstance(obj, torch.Tensor):
                axes = self.input_axes[next(counter)]
                return {a: (batch if k == "batch" else seq) for a, k in axes.items()} or None
            if isinstance(obj, (tuple, list)):
                return type(obj)(walk(o) for o in obj)
            if isinstance(obj, dict):
                return {k: walk(v) for k, v in obj.items()}
            return None

        return walk(args)


def graph_io(model: onnx.ModelProto):
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits], list(model.graph.output)


def opset_of(model: onnx.ModelProto) -> int | None:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def declared_shape(vi: onnx.ValueInfoProto) -> list | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]


def fits(vi: onnx.ValueInfoProto, a: np.ndarray) -> bool:
    shape = declared_shape(vi)
    if shape is not None and (len(shape) != a.ndim or any(d is not None and d != n for d, n in zip(shape, a.shape))):
        return False
    elem = vi.type.tensor_type.elem_type
    return elem == 0 or onnx.helper.tensor_dtype_to_np_dtype(elem) == a.dtype


def bind_inputs(exporter: str, g_inputs, arrays: list[np.ndarray]) -> list[int]:
    """For each graph input, the index of the flattened PyTorch input it takes."""
    names = [vi.name for vi in g_inputs]
    if exporter == "legacy" and all(n.startswith("input_") and n[6:].isdigit() for n in names):
        return [int(n[6:]) for n in names]
    if len(names) == len(arrays):
        return list(range(len(arrays)))
    # The exporter dropped inputs the graph does not use: match in order by shape and dtype.
    out, j = [], 0
    for vi in g_inputs:
        while j < len(arrays) and not fits(vi, arrays[j]):
            j += 1
        if j == len(arrays):
            raise RuntimeError(
                f"cannot tell which PyTorch input the graph input '{vi.name}' is "
                f"(graph inputs {names}, {len(arrays)} PyTorch inputs)"
            )
        out.append(j)
        j += 1
    return out


def cargo_target_dir() -> Path:
    """Where cargo builds (CARGO_TARGET_DIR, .cargo/config, or target/), as cargo says."""
    try:
        done = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=True)
        return Path(json.loads(done.stdout)["target_directory"])
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        return REPO_ROOT / "target"


def rnn_run_binary(given: str | None) -> Path:
    if given:
        path = Path(given)
        if not path.is_file():
            fail_usage(f"--rnn-run {given}: no such file")
        return path
    path = cargo_target_dir() / "release" / ("rnn-run.exe" if os.name == "nt" else "rnn-run")
    if not path.is_file():
        print(f"{path} is missing: running cargo build --release ...", file=sys.stderr)
        done = subprocess.run(["cargo", "build", "--release", "--bin", "rnn-run"], cwd=REPO_ROOT)
        if done.returncode != 0 or not path.is_file():
            why = "cargo build --release failed" if done.returncode != 0 else f"cargo built, but {path} is not there"
            fail_usage(f"{why} (pass --rnn-run PATH to use a built binary)")
    return path


def check_export(
    exporter: str,
    model,
    args: tuple,
    inputs: list[np.ndarray],
    input_files: list[Path],
    expected_files: list[Path],
    out: Path,
    opset: int | None,
    binary: Path,
    rtol: float,
    atol: float,
    dyn: Dynamic | None = None,
) -> list[dict]:
    """Exports, then checks the export at the example's sizes (and, with `dyn`, at other
    sizes): one row per check."""
    row: dict[str, Any] = {"exporter": exporter, "opset": opset, "outputs": None, "max_abs_err": None,
                           "max_rel_err": None, "ok": False, "verdict": ""}
    path = out / exporter / "model.onnx"
    try:
        export(exporter, model, args, path, opset, len(inputs), len(expected_files), dyn)
    except Exception as e:  # noqa: BLE001
        row["cause"], root = cause_of(e)
        row["verdict"] = f"export failed: {one_line(root, 200)} (whole cause below)"
        return [row]
    row["model"] = str(path)
    proto = onnx.load(str(path), load_external_data=False)
    row["opset"] = opset_of(proto)
    g_inputs, g_outputs = graph_io(proto)
    row["outputs"] = len(g_outputs)
    if len(g_outputs) != len(expected_files):
        row["verdict"] = f"the graph has {len(g_outputs)} outputs, PyTorch returned {len(expected_files)}"
        return [row]
    try:
        binding = bind_inputs(exporter, g_inputs, inputs)
    except RuntimeError as e:
        row["verdict"] = str(e)
        return [row]
    rows = [run_check(row, path, binding, input_files, expected_files, out / exporter / "rnn-run.json",
                      binary, rtol, atol)]
    if dyn is not None:
        sized = out / exporter / "dynamic"
        sized.mkdir(parents=True, exist_ok=True)
        new_inputs, new_expected = [], []
        for i, a in enumerate(dyn.new_inputs):
            new_inputs.append(sized / f"input_{i}.npy")
            np.save(new_inputs[-1], a)
        for i, a in enumerate(dyn.new_outputs):
            new_expected.append(sized / f"expected_{i}.npy")
            np.save(new_expected[-1], a)
        label = f"{exporter} @ batch {dyn.new_batch}" + (f", seq {dyn.new_seq}" if dyn.new_seq is not None else "")
        other = dict(row, exporter=label, verdict="", ok=False, max_abs_err=None, max_rel_err=None)
        rows.append(run_check(other, path, binding, new_inputs, new_expected, sized / "rnn-run.json",
                              binary, rtol, atol))
    return rows


def run_check(row: dict, path: Path, binding: list[int], input_files: list[Path], expected_files: list[Path],
              report_path: Path, binary: Path, rtol: float, atol: float) -> dict:
    """Runs rnn-run on one export against PyTorch's outputs and fills in `row`."""
    # Positional, in graph input order: names can change when rnn-run's graph is simplified.
    cmd = [str(binary), str(path), *(str(input_files[i]) for i in binding)]
    cmd += ["--expect", *map(str, expected_files), "--json", "--rtol", repr(rtol), "--atol", repr(atol)]
    row["command"] = cmd
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        row["verdict"] = f"rnn-run failed: {one_line(done.stderr.strip() or f'exit code {done.returncode}')}"
        return row
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        row["verdict"] = f"rnn-run printed no JSON (exit code {done.returncode}): {one_line(done.stdout + done.stderr)}"
        return row
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    outs = report.get("outputs", [])
    # Errors are numbers, or "NaN" where an output is NaN and PyTorch's is not (or vice versa).
    as_float = lambda v: float(v) if v is not None else None  # noqa: E731
    abs_errs = [as_float(o.get("max_abs_err")) for o in outs if o.get("max_abs_err") is not None]
    rel_errs = [as_float(o.get("max_rel_err")) for o in outs if o.get("max_rel_err") is not None]
    worst = lambda errs: (float("nan") if any(e != e for e in errs) else max(errs, default=None))  # noqa: E731
    row["max_abs_err"] = worst(abs_errs)
    row["max_rel_err"] = worst(rel_errs)
    row["ok"] = bool(report.get("ok")) and done.returncode == 0
    if row["ok"]:
        row["verdict"] = "ok"
    else:
        bad = [o.get("name", "?") for o in outs if not o.get("ok", False)]
        errors = [o["error"] for o in outs if o.get("error")]
        row["verdict"] = "MISMATCH: " + ", ".join(bad) + (f" ({one_line('; '.join(errors), 200)})" if errors else "")
    return row


def fmt_err(v: float | None) -> str:
    return "-" if v is None else "NaN" if v != v else f"{v:.2e}"


def print_table(rows: list[dict]) -> None:
    header = ["exporter", "opset", "outputs", "max abs err", "max rel err", "verdict"]
    cells = [
        [r["exporter"], str(r["opset"] or "-"), str(r["outputs"] if r["outputs"] is not None else "-"),
         fmt_err(r["max_abs_err"]), fmt_err(r["max_rel_err"]), r["verdict"]]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    widths[-1] = len(header[-1])  # the verdict is last: do not pad it
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    print(line(header))
    print(line(["-" * w for w in widths[:-1]] + ["-------"]))
    for c in cells:
        print(line(c))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module", type=Path, help="Python file defining FUNCTION")
    ap.add_argument("function", help="function returning (model, example_inputs)")
    ap.add_argument("--out", type=Path, help="output directory (default: a new temporary directory)")
    ap.add_argument("--rnn-run", dest="rnn_run", help="rnn-run binary (default: target/release/rnn-run)")
    ap.add_argument("--opset", type=int, default=DEFAULT_LEGACY_OPSET,
                    help=f"opset of the legacy export (default {DEFAULT_LEGACY_OPSET})")
    ap.add_argument("--dynamo-opset", type=int, help="opset of the dynamo export (default: the exporter's)")
    ap.add_argument("--exporter", choices=["legacy", "dynamo"], action="append",
                    help="only this exporter (repeatable; default both)")
    ap.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (default 1e-4)")
    ap.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (default 1e-5)")
    ap.add_argument("--dynamic", action="store_true",
                    help="export with dynamic batch and sequence axes and check each export at other sizes too")
    opts = ap.parse_args()

    factory = load_factory(opts.module, opts.function)
    try:
        made = factory()
        model, example = made
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        fail_usage(f"{opts.function}() must return (model, example_inputs)")
    if not isinstance(model, torch.nn.Module):
        fail_usage(f"{opts.function}() returned a {type(model).__name__} as the model, expected an nn.Module")
    args = example if isinstance(example, tuple) else tuple(example) if isinstance(example, list) else (example,)
    model.eval()
    binary = rnn_run_binary(opts.rnn_run)

    out = opts.out or Path(tempfile.mkdtemp(prefix="export_and_check_"))
    for sub in ("inputs", "expected", "legacy", "dynamo"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "inputs").mkdir(parents=True)
    (out / "expected").mkdir()

    inputs = [to_np(t) for t in flatten(args)]
    with torch.no_grad():
        outputs = [to_np(t) for t in flatten(model(*args))]
    input_files, expected_files = [], []
    for i, a in enumerate(inputs):
        input_files.append(out / "inputs" / f"input_{i}.npy")
        np.save(input_files[-1], a)
    for i, a in enumerate(outputs):
        expected_files.append(out / "expected" / f"expected_{i}.npy")
        np.save(expected_files[-1], a)

    dyn = None
    if opts.dynamic:
        try:
            dyn = Dynamic(model, args, inputs)
        except Exception as e:  # noqa: BLE001
            fail_usage(one_line(cause_of(e)[0], 1000))

    rows = []
    for exporter in opts.exporter or ["legacy", "dynamo"]:
        opset = opts.opset if exporter == "legacy" else opts.dynamo_opset
        rows += check_export(exporter, model, args, inputs, input_files, expected_files, out, opset,
                             binary, opts.rtol, opts.atol, dyn)

    print(f"{opts.module}:{opts.function}: {type(model).__name__}, {len(inputs)} inputs "
          f"{[list(a.shape) for a in inputs]}, {len(outputs)} outputs; rtol {opts.rtol:g}, atol {opts.atol:g}"
          + (f"; dynamic: {dyn.describe()}" if dyn else ""))
    print_table(rows)
    for r in rows:
        if r.get("cause"):
            print(f"\n{r['exporter']} export failed:\n{r['cause']}")
    summary = {
        "module": str(opts.module),
        "function": opts.function,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "rnn_run": str(binary),
        "rtol": opts.rtol,
        "atol": opts.atol,
        "inputs": [str(p) for p in input_files],
        "expected": [str(p) for p in expected_files],
        "exports": rows,
        "ok": all(r["ok"] for r in rows),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"files in {out}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
