"""Export a PyTorch module with both ONNX exporters and check each export with rnn-run.

    python -m rnn_run.check FILE.py:FUNCTION [--dynamic] [--out DIR] [--opset N] ...

FUNCTION, defined in FILE.py, takes no argument and returns ``(model, example_inputs)``:
`example_inputs` is the tuple of positional arguments of ``model(...)`` (nested tuples such as
``(x, (h0, c0))`` are fine; a single tensor is taken as a 1-tuple). From Python, call
``rnn_run.check_export(model, example_inputs, ...)`` instead; it returns an `ExportCheck`.

For each exporter (legacy: ``dynamo=False``, opset 17 unless told; dynamo: its own opset), the
module is exported, the export is run by rnn-run on the example inputs and compared with
PyTorch's outputs (an element passes when ``|got - want| <= atol + rtol * |want|``). Where an
export does not match, the check says where the divergence starts: the first output that is
off and, along its sequence axis, the first time step with an element off.

With ``dynamic=True`` (``--dynamic``) both exports get dynamic batch and sequence axes and each
is also run at other sizes (batch + 1, sequence * 2 + 1) on new inputs against PyTorch. The
batch axis is the size every input has once; where several sizes qualify (a model with one
input), the one along which reordering the inputs reorders the outputs the same way. Pass
``batch_axis``/``seq_axis`` (axes of the first input) to say it yourself. New inputs are random
for floats; integer inputs stay valid: sequence lengths (a 1-D input along the batch axis with
values within the sequence length, as ``pack_padded_sequence`` takes) are drawn within the new
sequence length and keep the example's order, other integers (token ids) are drawn within the
example's range.

Needs torch (the CPU build: ``pip install torch --index-url
https://download.pytorch.org/whl/cpu``), and onnxscript for the dynamo exporter; both are
imported only when a check runs. Exit status of the command: 0 when every export ran and
matched, 1 when one did not (export failed, rnn-run refused it, or a mismatch), 2 for a usage
error (no such file or function, the function does not return ``(model, inputs)``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import tempfile
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ._native import Model, RnnRunError
from ._torch_side import Dynamic, _export, _flatten, _to_np, _torch, default_seq_axis, find_batch_size

DEFAULT_LEGACY_OPSET = 17

__all__ = ["check_export", "ExportCheck", "CheckRow", "Divergence", "compare", "first_divergence", "main"]


# -----------------------------------------------------------------------------------------
# Comparing an output with PyTorch's, and where it starts to differ


def compare(got: np.ndarray, want: np.ndarray, rtol: float, atol: float):
    """``(off, max_abs, max_rel)``: the mask of elements outside the tolerance, and the largest
    absolute and relative differences (NaN when one side is NaN where the other is not), as
    ``rnn-run --expect`` computes them."""
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    g_nan, w_nan = np.isnan(g), np.isnan(w)
    one_nan = g_nan ^ w_nan
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        equal = (g == w) | (g_nan & w_nan)
        diff = np.where(equal, 0.0, np.abs(g - w))
        within = np.isfinite(g) & np.isfinite(w) & (diff <= atol + rtol * np.abs(w))
        off = ~(equal | within)
        counted = ~(one_nan | np.isnan(diff))
        max_abs = float(diff[counted].max()) if counted.any() else 0.0
        rel = np.where(diff == 0.0, 0.0, diff / np.abs(w))
        max_rel = float(rel[counted].max()) if counted.any() else 0.0
    if one_nan.any():
        max_abs = max_rel = float("nan")
    return off, max_abs, max_rel


@dataclass
class Divergence:
    """Where an export's outputs first leave the tolerance."""

    output: str
    """The graph output's name."""
    position: int
    """Its position among the outputs."""
    axis: int | None
    """Its sequence axis, when it has one."""
    step: int | None
    """The first time step along `axis` with an element off."""
    steps: int | None
    """The length of `axis`."""
    index: tuple
    """The first element off (in that step, in C order)."""
    got: float
    want: float
    off: int
    """How many elements of the output are off."""
    total: int

    def __str__(self) -> str:
        where = (
            f"from time step {self.step} of {self.steps} (axis {self.axis})"
            if self.step is not None
            else "(no sequence axis)"
        )
        return (
            f"output '{self.output}' diverges {where}: first at {list(self.index)}, got {self.got:.6g}, "
            f"want {self.want:.6g} ({self.off} of {self.total} elements off)"
        )


def first_divergence(
    names: Sequence[str],
    got: Sequence[np.ndarray],
    want: Sequence[np.ndarray],
    rtol: float,
    atol: float,
    seq_axes: Sequence[int | None],
) -> Divergence | None:
    """The first output (in order) with an element off, and in it the first time step along its
    sequence axis (``seq_axes[k]``, or None) with an element off; None when all match."""
    for k, (name, g, w) in enumerate(zip(names, got, want)):
        if g.shape != w.shape:
            continue
        off, _, _ = compare(g, w, rtol, atol)
        if not off.any():
            continue
        axis = seq_axes[k] if k < len(seq_axes) else None
        if axis is not None and axis < off.ndim:
            per_step = off.any(axis=tuple(a for a in range(off.ndim) if a != axis))
            step = int(np.argmax(per_step))
            at_step = np.take(off, step, axis=axis)
            rest = tuple(int(i) for i in np.argwhere(at_step)[0])
            index = rest[:axis] + (step,) + rest[axis:]
            steps = off.shape[axis]
        else:
            axis, step, steps = None, None, None
            index = tuple(int(i) for i in np.argwhere(off)[0])
        return Divergence(
            output=name,
            position=k,
            axis=axis,
            step=step,
            steps=steps,
            index=index,
            got=float(np.asarray(g)[index]),
            want=float(np.asarray(w)[index]),
            off=int(off.sum()),
            total=int(off.size),
        )
    return None


def output_seq_axes(shapes: Sequence[tuple], seq_len: int | None, batch: int | None) -> list[int | None]:
    """Each output's sequence axis: the one axis of the sequence's length (the batch axis aside
    when the two lengths are equal), or None."""
    out: list[int | None] = []
    for shape in shapes:
        axes = [a for a, n in enumerate(shape) if seq_len is not None and n == seq_len]
        if len(axes) > 1 and batch is not None and seq_len == batch:
            axes = axes[:1]
        out.append(axes[0] if len(axes) == 1 else None)
    return out


# -----------------------------------------------------------------------------------------
# Results


@dataclass
class CheckRow:
    """One check: an export run at one set of sizes."""

    exporter: str
    """``legacy``, ``dynamo``, or ``legacy @ batch 4, seq 101`` for a re-check at other sizes."""
    opset: int | None = None
    outputs: int | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    ok: bool = False
    verdict: str = ""
    model: str | None = None
    """The exported file."""
    cause: str | None = None
    """An export failure's whole cause (each exception of the chain)."""
    divergence: Divergence | None = None


def _fmt_err(v: float | None) -> str:
    return "-" if v is None else "NaN" if v != v else f"{v:.2e}"


@dataclass
class ExportCheck:
    """What `check_export` found: one `CheckRow` per check, and whether all passed."""

    rows: list[CheckRow]
    out: Path
    """Where the exports, inputs and references are."""
    header: str
    dynamic: str | None = None
    """The sizes of the dynamic re-check (``batch 3 -> 4, seq 50 -> 101 (axis 1 of input 0)``),
    or why it could not be made."""
    versions: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def table(self) -> str:
        header = ["exporter", "opset", "outputs", "max abs err", "max rel err", "verdict"]
        cells = [
            [
                r.exporter,
                str(r.opset or "-"),
                str(r.outputs if r.outputs is not None else "-"),
                _fmt_err(r.max_abs_err),
                _fmt_err(r.max_rel_err),
                r.verdict,
            ]
            for r in self.rows
        ]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
        widths[-1] = len(header[-1])
        line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
        lines = [line(header), line(["-" * w for w in widths[:-1]] + ["-------"])]
        lines += [line(c) for c in cells]
        return "\n".join(lines)

    def summary(self) -> dict:
        """Everything, as JSON-ready values (what the command writes to OUT/summary.json)."""
        return {
            "header": self.header,
            "dynamic": self.dynamic,
            **self.versions,
            "exports": [asdict(r) for r in self.rows],
            "ok": self.ok,
            "out": str(self.out),
        }

    def __str__(self) -> str:
        parts = [self.header, self.table()]
        for r in self.rows:
            if r.divergence is not None:
                parts.append(f"{r.exporter}: {r.divergence}")
        for r in self.rows:
            if r.cause:
                parts.append(f"\n{r.exporter} export failed:\n{r.cause}")
        verdict = "all exports match PyTorch" if self.ok else "NOT all exports match PyTorch"
        parts.append(f"{verdict}; files in {self.out}")
        return "\n".join(parts)


# -----------------------------------------------------------------------------------------
# Exceptions, in a line


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(_strip_ansi(str(text)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def cause_of(e: BaseException) -> tuple[str, str]:
    """The whole cause of an exception (each of its chain, outermost first, as ``Type:
    message``, without colour codes or repeats) and its root in one line: exporters put the
    useful part deep in the message or in a chained exception."""
    parts: list[str] = []
    seen: set[int] = set()
    root = ""
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        text = _strip_ansi(str(cur)).strip()
        root = f"{type(cur).__name__}: {_first_line(text)}" if text else type(cur).__name__
        if not text or not any(_first_line(text) in p for p in parts):
            parts.append(f"{type(cur).__name__}: {text}" if text else type(cur).__name__)
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return "\n".join(parts), root


# -----------------------------------------------------------------------------------------
# rnn-run side


def _fits(info, a: np.ndarray) -> bool:
    if len(info.shape) != a.ndim or any(isinstance(d, int) and d != n for d, n in zip(info.shape, a.shape)):
        return False
    return info.dtype == str(a.dtype)


def bind_inputs(exporter: str, graph_inputs, arrays: Sequence[np.ndarray]) -> list[int]:
    """For each graph input, the index of the flattened PyTorch input it takes."""
    names = [i.name for i in graph_inputs]
    if exporter == "legacy" and all(n.startswith("input_") and n[6:].isdigit() for n in names):
        return [int(n[6:]) for n in names]
    if len(names) == len(arrays):
        return list(range(len(arrays)))
    # The exporter dropped inputs the graph does not use: match in order by shape and dtype.
    out, j = [], 0
    for info in graph_inputs:
        while j < len(arrays) and not _fits(info, arrays[j]):
            j += 1
        if j == len(arrays):
            raise RuntimeError(
                f"cannot tell which PyTorch input the graph input '{info.name}' is "
                f"(graph inputs {names}, {len(arrays)} PyTorch inputs)"
            )
        out.append(j)
        j += 1
    return out


def _run_check(row: CheckRow, model: Model, binding: list[int], inputs: Sequence[np.ndarray],
               expected: Sequence[np.ndarray], rtol: float, atol: float,
               seq_axes: Sequence[int | None]) -> CheckRow:
    """Runs one export on `inputs` and compares with `expected`; fills in `row`."""
    try:
        got_by_name = model.run([inputs[i] for i in binding])
    except RnnRunError as e:
        row.verdict = f"rnn-run failed: {type(e).__name__}: {_one_line(e)}"
        return row
    names = list(got_by_name)
    got = list(got_by_name.values())
    abs_errs, rel_errs, bad = [], [], []
    for name, g, w in zip(names, got, expected):
        if g.shape != w.shape:
            bad.append(f"{name} has shape {list(g.shape)}, PyTorch's {list(w.shape)}")
            continue
        off, max_abs, max_rel = compare(g, w, rtol, atol)
        abs_errs.append(max_abs)
        rel_errs.append(max_rel)
        if off.any():
            bad.append(name)
    worst = lambda errs: float("nan") if any(e != e for e in errs) else max(errs, default=None)  # noqa: E731
    row.max_abs_err = worst(abs_errs)
    row.max_rel_err = worst(rel_errs)
    row.ok = not bad
    if row.ok:
        row.verdict = "ok"
    else:
        row.divergence = first_divergence(names, got, expected, rtol, atol, seq_axes)
        where = ""
        if row.divergence is not None and row.divergence.step is not None:
            where = f" (from step {row.divergence.step} of '{row.divergence.output}')"
        row.verdict = "MISMATCH: " + ", ".join(bad) + where
    return row


def _check_one(exporter: str, model, args: tuple, inputs: list[np.ndarray], outputs: list[np.ndarray],
               out: Path, opset: int | None, rtol: float, atol: float, threads: int,
               dyn: Dynamic | None, dyn_error: str | None, seq_len: int | None, batch: int | None) -> list[CheckRow]:
    row = CheckRow(exporter=exporter, opset=opset)
    path = out / exporter / "model.onnx"
    try:
        _export(exporter, model, args, path, opset, len(inputs), len(outputs), dyn)
    except Exception as e:  # noqa: BLE001
        row.cause, root = cause_of(e)
        row.verdict = f"export failed: {_one_line(root, 200)} (whole cause below)"
        return [row]
    row.model = str(path)
    try:
        loaded = Model(str(path), threads=threads)
    except RnnRunError as e:
        row.verdict = f"rnn-run cannot load it: {type(e).__name__}: {_one_line(e)}"
        return [row]
    row.opset = loaded.opset
    row.outputs = len(loaded.outputs)
    if len(loaded.outputs) != len(outputs):
        row.verdict = f"the graph has {len(loaded.outputs)} outputs, PyTorch returned {len(outputs)}"
        return [row]
    try:
        binding = bind_inputs(exporter, loaded.inputs, inputs)
    except RuntimeError as e:
        row.verdict = str(e)
        return [row]
    seq_axes = output_seq_axes([o.shape for o in outputs], seq_len, batch)
    rows = [_run_check(row, loaded, binding, inputs, outputs, rtol, atol, seq_axes)]
    if dyn is not None:
        label = f"{exporter} @ batch {dyn.new_batch}" + (f", seq {dyn.new_seq}" if dyn.new_seq is not None else "")
        other = CheckRow(exporter=label, opset=row.opset, outputs=row.outputs, model=row.model)
        rows.append(_run_check(other, loaded, binding, dyn.new_inputs, dyn.new_outputs, rtol, atol,
                               dyn.new_seq_axes()))
    elif dyn_error is not None:
        rows.append(CheckRow(exporter=f"{exporter} @ other sizes", opset=row.opset, outputs=row.outputs,
                             model=row.model, verdict=dyn_error))
    return rows


def check_export(
    module,
    example_inputs,
    *,
    exporters: Sequence[str] = ("legacy", "dynamo"),
    opset: int | None = DEFAULT_LEGACY_OPSET,
    dynamo_opset: int | None = None,
    dynamic: bool = False,
    batch_axis: int | None = None,
    seq_axis: int | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    out: str | os.PathLike | None = None,
    threads: int = 1,
    name: str | None = None,
) -> ExportCheck:
    """Exports `module` (an ``nn.Module``) called as ``module(*example_inputs)`` with each of
    `exporters` (``"legacy"``: ``torch.onnx.export(dynamo=False)`` at `opset`; ``"dynamo"``:
    ``dynamo=True`` at `dynamo_opset`, the exporter's default when None), runs each export with
    rnn-run on the example inputs, and compares with PyTorch's outputs within `rtol`/`atol`.

    `dynamic`: export with dynamic batch and sequence axes and re-check each export at other
    sizes (batch + 1, sequence * 2 + 1); `batch_axis`/`seq_axis` (axes of the first input)
    override the axes found. `out`: where the exports go (a new temporary directory by
    default). Returns an `ExportCheck`: ``.ok``, ``.rows`` (`CheckRow`: exporter, opset,
    outputs, errors, verdict, `Divergence` where it does not match), ``.table()``,
    ``.summary()``; ``print()`` it for the table and the divergences.
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"check_export takes an nn.Module, found {type(module).__name__}")
    for e in exporters:
        if e not in ("legacy", "dynamo"):
            raise ValueError(f"exporters are 'legacy' and 'dynamo', found {e!r}")
    args = (
        example_inputs
        if isinstance(example_inputs, tuple)
        else tuple(example_inputs)
        if isinstance(example_inputs, list)
        else (example_inputs,)
    )
    module.eval()
    out_dir = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="rnn_run_check_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = [_to_np(t) for t in _flatten(args)]
    with torch.no_grad():
        outputs = [_to_np(t) for t in _flatten(module(*args))]
    for sub, arrays in (("inputs", inputs), ("expected", outputs)):
        (out_dir / sub).mkdir(exist_ok=True)
        for i, a in enumerate(arrays):
            np.save(out_dir / sub / f"{sub[:-1] if sub == 'inputs' else 'expected'}_{i}.npy", a)

    dyn, dyn_error = None, None
    seq_len, batch = None, None
    if dynamic:
        try:
            dyn = Dynamic(module, args, batch_axis, seq_axis)
            seq_len, batch = dyn.seq, dyn.batch
        except Exception as e:  # noqa: BLE001
            dyn_error = _one_line(cause_of(e)[0], 1000)
    if seq_len is None and inputs:
        # Where a mismatch starts is told along the example's sequence axis: the first input's
        # first axis after the batch axis (found as for dynamic), or the one given.
        first = inputs[0].shape
        b_axis = batch_axis
        if b_axis is None:
            try:
                b_axis = list(first).index(find_batch_size(module, args))
            except Exception:  # noqa: BLE001 - then the divergence is told by element only
                b_axis = None
        s_axis = seq_axis
        if s_axis is None and b_axis is not None:
            s_axis = default_seq_axis(inputs[0], b_axis)
        seq_len = first[s_axis] if s_axis is not None else None
        batch = first[b_axis] if b_axis is not None else None

    rows: list[CheckRow] = []
    for exporter in exporters:
        o = opset if exporter == "legacy" else dynamo_opset
        rows += _check_one(exporter, module, args, inputs, outputs, out_dir, o, rtol, atol, threads,
                           dyn, dyn_error, seq_len, batch)

    label = name or type(module).__name__
    header = (
        f"{label}: {type(module).__name__}, {len(inputs)} inputs {[list(a.shape) for a in inputs]}, "
        f"{len(outputs)} outputs; rtol {rtol:g}, atol {atol:g}"
        + (f"; dynamic: {dyn.describe()}" if dyn else "")
    )
    import rnn_run

    versions = {"torch": torch.__version__, "rnn_run": rnn_run.__version__}
    result = ExportCheck(rows=rows, out=out_dir, header=header,
                         dynamic=dyn.describe() if dyn else dyn_error, versions=versions)
    (out_dir / "summary.json").write_text(json.dumps(result.summary(), indent=2, default=str) + "\n")
    return result


# -----------------------------------------------------------------------------------------
# The command


class _Usage(Exception):
    pass


def _load_factory(spec_text: str):
    if ":" not in spec_text:
        raise _Usage(f"expected FILE.py:FUNCTION, found {spec_text!r}")
    file, function = spec_text.rsplit(":", 1)
    module_path = Path(file)
    if not module_path.is_file():
        raise _Usage(f"{module_path}: no such file")
    spec = importlib.util.spec_from_file_location(f"_rnn_run_check_{module_path.stem}", module_path)
    if spec is None or spec.loader is None:
        raise _Usage(f"{module_path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(module_path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        raise _Usage(f"{module_path}: importing it raised (traceback above)") from e
    factory = getattr(module, function, None)
    if not callable(factory):
        names = sorted(n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_"))
        raise _Usage(f"{module_path} has no function '{function}' (callables: {', '.join(names) or 'none'})")
    return factory, function


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rnn_run.check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("target", help="FILE.py:FUNCTION, FUNCTION returning (model, example_inputs)")
    ap.add_argument("--out", type=Path, help="output directory (default: a new temporary directory)")
    ap.add_argument("--opset", type=int, default=DEFAULT_LEGACY_OPSET,
                    help=f"opset of the legacy export (default {DEFAULT_LEGACY_OPSET})")
    ap.add_argument("--dynamo-opset", type=int, help="opset of the dynamo export (default: the exporter's)")
    ap.add_argument("--exporter", choices=["legacy", "dynamo"], action="append",
                    help="only this exporter (repeatable; default both)")
    ap.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (default 1e-4)")
    ap.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (default 1e-5)")
    ap.add_argument("--dynamic", action="store_true",
                    help="export with dynamic batch and sequence axes and check each export at other sizes too")
    ap.add_argument("--batch-axis", type=int, help="with --dynamic: the batch axis of the first input")
    ap.add_argument("--seq-axis", type=int, help="with --dynamic: the sequence axis of the first input")
    ap.add_argument("--threads", type=int, default=1, help="rnn-run's threads (default 1)")
    opts = ap.parse_args(argv)
    try:
        factory, function = _load_factory(opts.target)
        try:
            made = factory()
            model, example = made
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            raise _Usage(f"{function}() must return (model, example_inputs)") from e
        torch = _torch()
        if not isinstance(model, torch.nn.Module):
            raise _Usage(f"{function}() returned a {type(model).__name__} as the model, expected an nn.Module")
    except (_Usage, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = check_export(
        model,
        example,
        exporters=opts.exporter or ("legacy", "dynamo"),
        opset=opts.opset,
        dynamo_opset=opts.dynamo_opset,
        dynamic=opts.dynamic,
        batch_axis=opts.batch_axis,
        seq_axis=opts.seq_axis,
        rtol=opts.rtol,
        atol=opts.atol,
        out=opts.out,
        threads=opts.threads,
        name=opts.target,
    )
    print(result)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
