"""The PyTorch side of rnn-run's export check: flattening inputs, finding the batch and
sequence axes, inputs at other sizes, and the two exporters. torch is imported only when one of
these runs (`_torch()`), so `rnn_run.check` imports without it."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def _quiet():
    """Silences the chatty exporters (Python and C++ writes to stdout/stderr)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# -----------------------------------------------------------------------------------------
# PyTorch side


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "check_export needs PyTorch; the CPU build is enough: "
            "pip install torch --index-url https://download.pytorch.org/whl/cpu"
        ) from e
    return torch


def _flatten(obj: Any) -> list:
    """Tensors of nested tuples/lists/dicts, in order; other values (None, numbers) are
    skipped, as the exporters bake them into the graph."""
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _flatten(o)]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _flatten(v)]
    return []


def _map_tensors(obj: Any, fn):
    """`obj` with its k-th tensor replaced by ``fn(k, tensor)``, nesting kept."""
    torch = _torch()
    counter = iter(range(1 << 30))

    def walk(o):
        if isinstance(o, torch.Tensor):
            return fn(next(counter), o)
        if isinstance(o, tuple):
            return tuple(walk(x) for x in o)
        if isinstance(o, list):
            return [walk(x) for x in o]
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        return o

    return walk(obj)


def _to_np(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


def _same(a, b) -> bool:
    torch = _torch()
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point():
        return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True))
    return bool(torch.equal(a, b))


def find_batch_size(model, args: tuple) -> int:
    """The example's batch size: the size every tensor input has on exactly one axis. Where
    several sizes qualify (always so with one input), the one along which reversing every
    input reverses every output along an axis of that size. Raises ValueError naming the
    shapes when no size, or more than one, qualifies."""
    torch = _torch()
    tensors = _flatten(args)
    shapes = [list(t.shape) for t in tensors]
    if not shapes:
        raise ValueError("dynamic: the model takes no tensor inputs")
    candidates = [n for n in sorted(set(shapes[0])) if n >= 2 and all(s.count(n) == 1 for s in shapes)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ValueError(
            f"dynamic: cannot tell the batch axis from the input shapes {shapes}: no size of at least 2 "
            "appears once in every input (use a batch of at least 2, or pass batch_axis)"
        )
    with torch.no_grad():
        base = _flatten(model(*args))
        passing = []
        for n in candidates:
            flipped = _map_tensors(args, lambda k, t: t.flip(shapes[k].index(n)))
            if all(_same(a, b) for a, b in zip(_flatten(flipped), tensors)):
                continue  # reversing changes nothing: this size tells nothing
            try:
                outs = _flatten(model(*flipped))
            except Exception:  # noqa: BLE001 - a model that refuses reordered inputs
                continue
            if len(outs) == len(base) and all(
                any(_same(o, b.flip(a)) for a, m in enumerate(b.shape) if m == n) for o, b in zip(outs, base)
            ):
                passing.append(n)
    if len(passing) == 1:
        return passing[0]
    raise ValueError(
        f"dynamic: cannot tell the batch axis from the input shapes {shapes}: sizes {candidates} each appear once "
        f"in every input, and reordering the inputs along {'each of ' + str(passing) if passing else 'none of them'} "
        "reorders the outputs alike (pass batch_axis, the batch axis of the first input)"
    )


def default_seq_axis(first, batch_axis: int) -> int | None:
    """The sequence axis of the first input: its first axis other than the batch axis and,
    for floats, the last (features); token ids ``[batch, seq]`` have no feature axis."""
    floating = first.dtype.kind == "f" if isinstance(first, np.ndarray) else first.is_floating_point()
    last = len(first.shape) - (1 if floating else 0)
    axes = [a for a in range(last) if a != batch_axis]
    return axes[0] if axes else None


class Dynamic:
    """The batch and sequence axes of a model's inputs and outputs, and inputs at other sizes."""

    def __init__(self, model, args: tuple, batch_axis: int | None = None, seq_axis: int | None = None):
        torch = _torch()
        tensors = _flatten(args)
        shapes = [list(t.shape) for t in tensors]
        first = shapes[0]
        if batch_axis is not None:
            self.batch = first[batch_axis]
            b0 = batch_axis
        else:
            self.batch = find_batch_size(model, args)
            b0 = first.index(self.batch)
        if seq_axis is None:
            seq_axis = default_seq_axis(tensors[0], b0)
        self.seq_axis = seq_axis
        self.seq = first[seq_axis] if seq_axis is not None else None
        self.input_axes: list[dict[int, str]] = []
        for i, s in enumerate(shapes):
            axes = {b0 if i == 0 else s.index(self.batch): "batch"} if (i == 0 or self.batch in s) else {}
            if i == 0 and self.seq_axis is not None:
                axes[self.seq_axis] = "seq"
            self.input_axes.append(axes)
        self.examples = tensors
        self.new_batch = self.batch + 1
        self.new_seq = self.seq * 2 + 1 if self.seq is not None else None
        self.new_args = self.resized(args, self.new_batch, self.new_seq, seed=1)
        self.export_args = self.resized(args, max(self.batch, 2), max(self.seq or 2, 2), seed=2)
        with torch.no_grad():
            base = [_to_np(t) for t in _flatten(model(*args))]
            new = [_to_np(t) for t in _flatten(model(*self.new_args))]
        self.new_inputs = [_to_np(t) for t in _flatten(self.new_args)]
        self.new_outputs = new
        # Output axes: those whose size moved with the inputs'.
        self.output_axes: list[dict[int, str]] = []
        for b, n in zip(base, new):
            axes = {}
            for a, (x, y) in enumerate(zip(b.shape, n.shape)):
                if x != y:
                    axes[a] = "batch" if (x, y) == (self.batch, self.new_batch) else "seq"
            self.output_axes.append(axes)

    def describe(self) -> str:
        seq = f", seq {self.seq} -> {self.new_seq} (axis {self.seq_axis} of input 0)" if self.seq is not None else ""
        return f"batch {self.batch} -> {self.new_batch}{seq}"

    def new_seq_axes(self) -> list[int | None]:
        return [next((a for a, k in axes.items() if k == "seq"), None) for axes in self.output_axes]

    def is_lengths(self, k: int, t) -> bool:
        """Whether input `k` holds sequence lengths: 1-D along the batch axis, integers within
        1 ..= the example's sequence length."""
        if t.is_floating_point() or t.dtype == _torch().bool or t.dim() != 1 or self.seq is None:
            return False
        if self.input_axes[k] != {0: "batch"} or t.numel() == 0:
            return False
        return int(t.min()) >= 1 and int(t.max()) <= self.seq

    def resized(self, args, batch: int, seq: int | None, seed: int):
        """`args` with the batch and sequence axes resized and new values: random floats;
        sequence lengths within `seq`, in the example's order; other integers within the
        example's range."""
        torch = _torch()
        gen = torch.Generator().manual_seed(seed)

        def new(k, t):
            shape = list(t.shape)
            for axis, kind in self.input_axes[k].items():
                shape[axis] = batch if kind == "batch" else seq
            if t.is_floating_point():
                return torch.randn(*shape, generator=gen, dtype=t.dtype)
            if t.dtype == torch.bool:
                return torch.rand(*shape, generator=gen) < 0.5
            if self.is_lengths(k, t):
                lengths = torch.randint(1, seq + 1, tuple(shape), generator=gen)
                if int(t.max()) == self.seq:
                    lengths[0] = seq  # the example's longest fills the sequence: so does this
                descending = bool((t[:-1] >= t[1:]).all())
                if descending:  # pack_padded_sequence(enforce_sorted=True) needs this order
                    lengths = lengths.sort(descending=True).values
                return lengths.to(t.dtype)
            if t.numel() == 0:
                return torch.zeros(*shape, dtype=t.dtype)
            lo, hi = int(t.min()), int(t.max())
            return torch.randint(lo, hi + 1, tuple(shape), generator=gen).to(t.dtype)

        return _map_tensors(args, new)

    def dynamic_shapes(self, args):
        """torch.export's dynamic_shapes for `args`: the same nesting, Dim per dynamic axis."""
        torch = _torch()
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


def _export(exporter: str, model, args: tuple, path: Path, opset: int | None, n_in: int, n_out: int,
            dyn: Dynamic | None) -> None:
    torch = _torch()
    path.parent.mkdir(parents=True, exist_ok=True)
    kw: dict[str, Any] = {}
    if opset is not None:
        kw["opset_version"] = opset
    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
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
