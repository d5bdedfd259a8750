"""Shared helpers for gen_fixtures.py and gen_matrix.py.

A fixture is a directory holding:
  model.onnx [+ model.onnx.data]   the exported model (external data kept as written)
  input_<i>.npy                    graph inputs, in ONNX graph input order (initializers excluded)
  expected_<i>.npy                 reference outputs, in ONNX graph output order
  run_input_<i>.npy / run_expected_<i>.npy   (optional) same at other batch/seq ("alt_shapes": true)
  meta.json                        description, tolerances, onnxruntime comparison
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import re
import shutil
import traceback
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import onnx.numpy_helper
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = REPO_ROOT / "fixtures"
MAX_FIXTURE_BYTES = 300 * 1024

warnings.filterwarnings("ignore")


def seed_everything(name: str) -> int:
    """Per-fixture seed derived from the fixture name (independent of generation order)."""
    seed = zlib.crc32(name.encode()) & 0x7FFFFFFF
    torch.manual_seed(seed)
    np.random.seed(seed)
    return seed


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "onnx": onnx.__version__}


def flatten(obj: Any) -> list[torch.Tensor]:
    """Flatten nested tuples/lists of tensors, in order (PyTorch output order)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        out: list[torch.Tensor] = []
        for o in obj:
            out.extend(flatten(o))
        return out
    if obj is None:
        return []
    raise TypeError(f"cannot flatten {type(obj)}")


def to_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy()


def graph_io(model: onnx.ModelProto) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    return ins, list(model.graph.output)


def vi_shape(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None  # type: ignore[return-value]
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def shape_compatible(decl: list | None, actual: Sequence[int]) -> bool:
    if decl is None:
        return True
    if len(decl) != len(actual):
        return False
    return all((not isinstance(d, int)) or d == a for d, a in zip(decl, actual))


def opset_of(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return -1


def op_types(model: onnx.ModelProto) -> list[str]:
    return sorted({n.op_type for n in model.graph.node})


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def run_ort(model_path: Path, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray] | None, str | None]:
    try:
        import onnxruntime as ort

        ort.set_default_logger_severity(4)
        so = ort.SessionOptions()
        so.log_severity_level = 4
        sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        return sess.run(None, feeds), None
    except Exception as e:  # noqa: BLE001
        msg = str(e).strip().splitlines()
        return None, f"{type(e).__name__}: {' '.join(msg)[:600]}"


def max_abs_err(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float | None:
    if len(got) != len(want):
        return None
    err = 0.0
    for g, w in zip(got, want):
        g = np.asarray(g)
        if g.shape != w.shape:
            return None
        if w.size:
            err = max(err, float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))))
    return err


def within_tol(got: Sequence[np.ndarray], want: Sequence[np.ndarray], rtol: float, atol: float) -> bool:
    return len(got) == len(want) and all(
        np.asarray(g).shape == w.shape and np.allclose(g, w, rtol=rtol, atol=atol) for g, w in zip(got, want)
    )


def clean_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def write_arrays(path: Path, prefix: str, arrays: Sequence[np.ndarray]) -> None:
    for i, a in enumerate(arrays):
        np.save(path / f"{prefix}_{i}.npy", np.ascontiguousarray(a))


def write_meta(path: Path, meta: dict) -> None:
    with open(path / "meta.json", "w") as f:
        json.dump(meta, f, indent=2, sort_keys=False)
        f.write("\n")


def selected(name: str, patterns: list[str] | None) -> bool:
    if not patterns:
        return True
    return any(fnmatch.fnmatch(name, p) or p in name for p in patterns)


@contextlib.contextmanager
def quiet():
    """Silence the chatty exporters (Python and C++ writes to stdout/stderr)."""
    import sys
    import tempfile

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


def clean_message(text: str, limit: int = 500) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = text.split(" [Caused by")[0]
    return " ".join(text.split())[:limit]


def rnn_nodes(model: onnx.ModelProto) -> list[dict]:
    """Summary of the RNN/LSTM/GRU nodes of a graph (attributes and weight shapes)."""
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    for vi in list(model.graph.value_info) + list(model.graph.input):
        if vi.name not in shapes and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = vi_shape(vi)
    out = []
    for n in model.graph.node:
        if n.op_type not in ("RNN", "LSTM", "GRU"):
            continue
        attrs = {}
        for a in n.attribute:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, list):
                v = [x.decode() if isinstance(x, bytes) else x for x in v]
            attrs[a.name] = v
        slots = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
        ins = {slot: (name, shapes.get(name)) for slot, name in zip(slots, n.input) if name}
        out.append({"op": n.op_type, "attrs": attrs,
                    "inputs": {k: v[0] for k, v in ins.items()},
                    "known_shapes": {k: v[1] for k, v in ins.items() if v[1] is not None}})
    return out


# --------------------------------------------------------------------------------------
# Export of a PyTorch module into a fixture directory
# --------------------------------------------------------------------------------------


class ExportRefused(Exception):
    """The exporter raised: the combination is skipped (and recorded)."""


@dataclass
class TorchCase:
    name: str
    module: torch.nn.Module
    module_desc: str  # e.g. "nn.LSTM(5, 6, 2)"
    kwargs: dict
    args: tuple  # positional args of forward (may nest tuples, e.g. (x, (h0, c0)))
    exporter: str  # "legacy" | "dynamo"
    opset: int | None = None
    input_names: list[str] | None = None  # legacy: names for the flattened args
    output_names: list[str] | None = None  # legacy: names for the flattened outputs
    dynamic_axes: dict | None = None  # legacy
    dynamic_shapes: Any = None  # dynamo
    do_constant_folding: bool = True
    rtol: float = 1e-4
    atol: float = 1e-5
    notes: list[str] = field(default_factory=list)
    # alt shapes: args at a different batch/seq, to check/store dynamic axes.
    # alt_args may be a callable(graph_input_shapes, notes) -> args, evaluated after export.
    alt_args: Any = None
    store_alt: bool = False
    extra_meta: dict = field(default_factory=dict)
    allow_broken: bool = False  # export "succeeds" but graph is inconsistent -> save with expect_error


def _export(case: TorchCase, model_path: Path) -> None:
    kw: dict[str, Any] = {}
    if case.opset is not None:
        kw["opset_version"] = case.opset
    if case.exporter == "legacy":
        torch.onnx.export(
            case.module,
            case.args,
            str(model_path),
            dynamo=False,
            input_names=case.input_names,
            output_names=case.output_names,
            dynamic_axes=case.dynamic_axes,
            do_constant_folding=case.do_constant_folding,
            **kw,
        )
    elif case.exporter == "dynamo":
        torch.onnx.export(
            case.module,
            case.args,
            str(model_path),
            dynamo=True,
            dynamic_shapes=case.dynamic_shapes,
            verbose=False,
            **kw,
        )
    else:
        raise ValueError(case.exporter)


def _map_inputs(case: TorchCase, g_inputs, flat_args: list[np.ndarray]) -> list[np.ndarray]:
    """Return arrays in graph-input order."""
    names = [vi.name for vi in g_inputs]
    if case.exporter == "legacy" and case.input_names:
        by_name = dict(zip(case.input_names, flat_args))
        if all(n in by_name for n in names):
            return [by_name[n] for n in names]
    if len(names) != len(flat_args):
        raise RuntimeError(
            f"{case.name}: graph has {len(names)} inputs {names} but module got {len(flat_args)} tensors"
        )
    return list(flat_args)


def _external_data_files(model: onnx.ModelProto) -> set[str]:
    locs = set()
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for kv in t.external_data:
                if kv.key == "location":
                    locs.add(kv.value)
    return locs


def build_torch_fixture(case: TorchCase, out_dir: Path) -> dict:
    """Export, compute references, verify and write the fixture. Returns meta.

    Raises ExportRefused if the exporter raised.
    """
    case.module.eval()
    clean_dir(out_dir)
    model_path = out_dir / "model.onnx"
    try:
        with quiet():
            _export(case, model_path)
    except Exception as e:  # noqa: BLE001
        shutil.rmtree(out_dir, ignore_errors=True)
        lines = [l for l in str(e).strip().splitlines() if l.strip()]
        summary = lines[0] if lines else ""
        # Dynamo errors carry the real cause in an "Exception summary" section.
        for i, l in enumerate(lines):
            if "Exception summary" in l and i + 1 < len(lines):
                summary += " | " + lines[i + 1]
                break
        raise ExportRefused(f"{type(e).__name__}: {clean_message(summary)}") from e

    notes = list(case.notes)

    # External data: keep it when referenced; drop an empty, unreferenced .data file.
    model = onnx.load(str(model_path), load_external_data=False)
    ext = _external_data_files(model)
    data_file = out_dir / "model.onnx.data"
    if data_file.exists() and not ext and data_file.stat().st_size == 0:
        data_file.unlink()
        notes.append("dynamo exporter wrote an empty model.onnx.data (no initializer external); removed it")
    for loc in ext:
        if loc != "model.onnx.data":
            raise RuntimeError(f"{case.name}: unexpected external data location {loc}")
    external = bool(ext)
    if external:
        notes.append("weights stored as external data in model.onnx.data")

    if dir_size(out_dir) > MAX_FIXTURE_BYTES:
        n_meta = sum(len(n.metadata_props) for n in model.graph.node)
        if n_meta:
            for n in model.graph.node:
                del n.metadata_props[:]
                n.doc_string = ""
            onnx.save(model, str(model_path))  # external refs (if any) are kept untouched
            notes.append(f"over 300 KiB as exported: stripped {n_meta} per-node debug metadata_props "
                         "(namespace/stack_trace/fx_node) from model.onnx")

    g_inputs, g_outputs = graph_io(model)
    in_names = [vi.name for vi in g_inputs]
    out_names = [vi.name for vi in g_outputs]

    with torch.no_grad():
        outs = flatten(case.module(*case.args))
    flat_args = [to_np(t) for t in flatten(case.args)]
    inputs = _map_inputs(case, g_inputs, flat_args)
    expected = [to_np(t) for t in outs]

    # Output order check: count + declared shapes/dtypes vs flattened PyTorch outputs.
    problems: list[str] = []
    if len(expected) != len(out_names):
        problems.append(f"PyTorch returns {len(expected)} tensors but graph has {len(out_names)} outputs")
    for vi, arr in zip(g_outputs, expected):
        decl = vi_shape(vi)
        if not shape_compatible(decl, arr.shape):
            problems.append(f"output {vi.name}: declared {decl} vs PyTorch {list(arr.shape)}")
        et = vi.type.tensor_type.elem_type
        if et and onnx.helper.tensor_dtype_to_np_dtype(et) != arr.dtype:
            problems.append(f"output {vi.name}: declared dtype {onnx.helper.tensor_dtype_to_np_dtype(et)} vs {arr.dtype}")
    for vi, arr in zip(g_inputs, inputs):
        decl = vi_shape(vi)
        if not shape_compatible(decl, arr.shape):
            problems.append(f"input {vi.name}: declared {decl} vs PyTorch {list(arr.shape)}")

    feeds = dict(zip(in_names, inputs))
    got, err = run_ort(model_path, feeds)
    ort_info: dict[str, Any] = {"ok": got is not None, "max_abs_err": None, "error": err}
    if got is not None:
        ort_info["max_abs_err"] = max_abs_err(got, expected)
        if ort_info["max_abs_err"] is None:
            ort_info["ok"] = False
            ort_info["error"] = "onnxruntime output count/shapes differ from PyTorch: " + str(
                [list(np.asarray(g).shape) for g in got]
            )
        elif not within_tol(got, expected, case.rtol, case.atol):
            ort_info["ok"] = False
            ort_info["error"] = "onnxruntime result outside tolerance"
        for i, (g, vi) in enumerate(zip(got, g_outputs)):
            if i < len(expected) and np.asarray(g).shape != expected[i].shape:
                problems.append(f"onnxruntime output {vi.name} shape {list(np.asarray(g).shape)} vs PyTorch {list(expected[i].shape)}")

    # Internal consistency: strict ONNX shape inference (catches e.g. LSTM hidden_size vs initial_c).
    try:
        full = onnx.load(str(model_path))
        onnx.shape_inference.infer_shapes(full, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:  # noqa: BLE001
        problems.append("strict shape inference: " + " ".join(str(e).split())[:400])
    if case.allow_broken and not ort_info["ok"]:
        problems.append(f"onnxruntime: {ort_info['error']}")

    expect_error = False
    if problems:
        if not case.allow_broken:
            raise RuntimeError(f"{case.name}: output order/shape check failed: {problems}")
        expect_error = True
        notes.append("BROKEN EXPORT: " + "; ".join(problems))
        for rn in rnn_nodes(model):
            notes.append(f"exported {rn['op']} node: hidden_size={rn['attrs'].get('hidden_size')}, "
                         + ", ".join(f"{k}={v}" for k, v in rn["known_shapes"].items()))

    write_arrays(out_dir, "input", inputs)
    write_arrays(out_dir, "expected", expected)

    # Alt shapes (dynamic axes)
    alt_info = None
    if callable(case.alt_args):
        case.alt_args = case.alt_args([vi_shape(vi) for vi in g_inputs], notes)
    if case.alt_args is not None and not expect_error:
        with torch.no_grad():
            alt_outs = [to_np(t) for t in flatten(case.module(*case.alt_args))]
        alt_in = _map_inputs(case, g_inputs, [to_np(t) for t in flatten(case.alt_args)])
        alt_got, alt_err = run_ort(model_path, dict(zip(in_names, alt_in)))
        alt_info = {"ok": alt_got is not None, "max_abs_err": None, "error": alt_err,
                    "input_shapes": [list(a.shape) for a in alt_in]}
        if alt_got is not None:
            alt_info["max_abs_err"] = max_abs_err(alt_got, alt_outs)
            if alt_info["max_abs_err"] is None or not within_tol(alt_got, alt_outs, case.rtol, case.atol):
                alt_info["ok"] = False
                alt_info["error"] = alt_info["error"] or "onnxruntime result at alt shapes differs from PyTorch"
        if case.store_alt:
            write_arrays(out_dir, "run_input", alt_in)
            write_arrays(out_dir, "run_expected", alt_outs)

    dynamic = {vi.name: [d for d in vi_shape(vi) or [] if isinstance(d, str)] for vi in list(g_inputs) + list(g_outputs)}
    dynamic = {k: v for k, v in dynamic.items() if v}

    meta: dict[str, Any] = {
        "name": case.name,
        "module": case.module_desc,
        "kwargs": case.kwargs,
        "exporter": case.exporter,
        "opset": opset_of(model),
        **versions(),
        "inputs": in_names,
        "outputs": out_names,
        "rtol": case.rtol,
        "atol": case.atol,
        "notes": "; ".join(notes),
        "onnxruntime": ort_info,
        "input_shapes": [list(a.shape) for a in inputs],
        "input_dtypes": [str(a.dtype) for a in inputs],
        "output_shapes": [list(a.shape) for a in expected],
        "output_dtypes": [str(a.dtype) for a in expected],
        "graph_input_shapes": [vi_shape(vi) for vi in g_inputs],
        "graph_output_shapes": [vi_shape(vi) for vi in g_outputs],
        "dynamic_dims": dynamic,
        "external_data": external,
        "op_types": op_types(model),
        "rnn_nodes": rnn_nodes(model),
        "requested_opset": case.opset,
        "do_constant_folding": case.do_constant_folding if case.exporter == "legacy" else None,
    }
    if alt_info is not None:
        meta["onnxruntime_alt"] = alt_info
        if case.store_alt:
            meta["alt_shapes"] = True
            meta["run_input_shapes"] = alt_info["input_shapes"]
    if expect_error:
        meta["expect_error"] = True
    meta.update(case.extra_meta)
    write_meta(out_dir, meta)
    return meta


def check_fixture_dir(path: Path) -> list[str]:
    """Validate the layout of one fixture directory; return a list of problems."""
    probs = []
    meta_p = path / "meta.json"
    if not (path / "model.onnx").exists():
        probs.append("missing model.onnx")
    if not meta_p.exists():
        return probs + ["missing meta.json"]
    meta = json.loads(meta_p.read_text())
    for k in ["name", "module", "kwargs", "exporter", "opset", "torch", "onnx", "inputs", "outputs",
              "rtol", "atol", "notes", "onnxruntime"]:
        if k not in meta:
            probs.append(f"meta.json lacks {k}")
    n_in, n_out = len(meta.get("inputs", [])), len(meta.get("outputs", []))
    for i in range(n_in):
        if not (path / f"input_{i}.npy").exists():
            probs.append(f"missing input_{i}.npy")
    for i in range(n_out):
        if not (path / f"expected_{i}.npy").exists():
            probs.append(f"missing expected_{i}.npy")
    if (path / f"input_{n_in}.npy").exists() or (path / f"expected_{n_out}.npy").exists():
        probs.append("extra input/expected files")
    if meta.get("alt_shapes"):
        for i in range(n_in):
            if not (path / f"run_input_{i}.npy").exists():
                probs.append(f"missing run_input_{i}.npy")
        for i in range(n_out):
            if not (path / f"run_expected_{i}.npy").exists():
                probs.append(f"missing run_expected_{i}.npy")
    model = onnx.load(str(path / "model.onnx"), load_external_data=False)
    ext = _external_data_files(model)
    if ext and not (path / "model.onnx.data").exists():
        probs.append("missing model.onnx.data")
    ins, outs = graph_io(model)
    if [v.name for v in ins] != meta.get("inputs") or [v.name for v in outs] != meta.get("outputs"):
        probs.append("meta inputs/outputs differ from graph")
    return probs


def format_exc_short(e: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(e), e)).strip()[:600]


Builder = Callable[[], TorchCase]


# --------------------------------------------------------------------------------------
# npz + manifest.json layout (fixtures/realworld, fixtures/graphs, fixtures/streaming)
# --------------------------------------------------------------------------------------
#
# One manifest.json per folder; every call of every case is a pair of uncompressed .npz
# files: <case>_call<k>_inputs.npz keyed by graph input name, <case>_call<k>_expected.npz
# keyed by graph output name, dtypes exactly as the graph declares (0-d arrays for scalars).


def ort_session(model_path: Path):
    """onnxruntime session as used for every reference: CPUExecutionProvider, 1 thread."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])


def ort_run_named(sess, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def declared_np_dtype(vi: onnx.ValueInfoProto):
    return onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)


def check_against_graph(model: onnx.ModelProto, inputs: dict[str, np.ndarray],
                        outputs: dict[str, np.ndarray] | None = None) -> None:
    """Names, dtypes and ranks/fixed dims of the arrays must match the graph's declarations."""
    g_in, g_out = graph_io(model)
    for vis, arrs, what in [(g_in, inputs, "input"), (g_out, outputs, "output")]:
        if arrs is None:
            continue
        names = [v.name for v in vis]
        if sorted(names) != sorted(arrs):
            raise RuntimeError(f"{what} names {sorted(arrs)} differ from graph {names}")
        for vi in vis:
            a = arrs[vi.name]
            if a.dtype != declared_np_dtype(vi):
                raise RuntimeError(f"{what} {vi.name}: dtype {a.dtype} vs declared {declared_np_dtype(vi)}")
            if not shape_compatible(vi_shape(vi), a.shape):
                raise RuntimeError(f"{what} {vi.name}: shape {list(a.shape)} vs declared {vi_shape(vi)}")


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez (uncompressed); the arrays keep their dtype and rank (0-d stays 0-d)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # np.ascontiguousarray would turn a 0-d array into shape (1,): copy in C order instead.
    arrays = {k: np.array(v, order="C", copy=True) for k, v in arrays.items()}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with np.load(path) as back:
        for k, v in arrays.items():
            assert back[k].dtype == v.dtype and back[k].shape == v.shape, (path, k)


def sha256_of(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def io_decl(model: onnx.ModelProto) -> dict:
    """Graph inputs/outputs as {"name", "dtype", "shape"} (shape entries: int, dim_param or null)."""
    g_in, g_out = graph_io(model)
    conv = lambda vi: {"name": vi.name, "dtype": str(np.dtype(declared_np_dtype(vi))),  # noqa: E731
                       "shape": vi_shape(vi)}
    return {"inputs": [conv(v) for v in g_in], "outputs": [conv(v) for v in g_out]}


def all_op_types(model: onnx.ModelProto) -> list[str]:
    """Op types of the graph and of every subgraph (If/Loop/Scan bodies)."""
    ops: set[str] = set()

    def walk(g):
        for n in g.node:
            ops.add(n.op_type)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for sg in a.graphs:
                    walk(sg)

    walk(model.graph)
    return sorted(ops)


def write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
