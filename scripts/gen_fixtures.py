#!/usr/bin/env python3
"""Generate the committed fixtures under fixtures/tutorial and fixtures/onnx_node.

  fixtures/tutorial/<name>/   PyTorch tutorial RNN/LSTM/GRU exported with the legacy
                              (TorchScript) and the dynamo exporter.
  fixtures/onnx_node/<name>/  ONNX backend node tests for RNN/LSTM/GRU from the installed
                              `onnx` package.

Usage: python scripts/gen_fixtures.py [--only PATTERN ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn
from torch.export import Dim

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixturelib as fl  # noqa: E402

TUTORIAL_VARIANTS = {
    # suffix: (seq, batch)
    "": (1, 3),
    "_long": (50, 3),
    "_batch": (4, 16),
}
ALT = {"": (7, 2), "_long": (9, 5), "_batch": (3, 5)}  # ORT-only check of dynamic axes


def tutorial_case(kind: str, exporter: str, suffix: str) -> fl.TorchCase:
    name = f"{kind.lower()}_{exporter}{suffix}"
    fl.seed_everything(name)
    module = getattr(nn, kind)(5, 6, 2)
    seq, batch = TUTORIAL_VARIANTS[suffix]
    input1 = torch.randn(seq, batch, 5)
    h0 = torch.randn(2, batch, 6)
    is_lstm = kind == "LSTM"
    if is_lstm:
        c0 = torch.randn(2, batch, 6)
        args = (input1, (h0, c0))
        call = "lstm(input1, (h0, c0))"
    else:
        args = (input1, h0)
        call = f"{kind.lower()}(input1, h0)"

    notes = [f"tutorial code: input1=randn({seq},{batch},5), h0=randn(2,{batch},6)"
             + (f", c0=randn(2,{batch},6)" if is_lstm else "") + f"; called as {call}; outputs (output, hn"
             + (", cn)" if is_lstm else ")")]

    # dynamo unrolls nn.RNN (aten::rnn_tanh is decomposed): the sequence axis is specialized.
    seq_dynamic = not (exporter == "dynamo" and kind == "RNN")
    aseq, abatch = ALT[suffix]
    if not seq_dynamic:
        aseq = seq
    g = torch.Generator().manual_seed(1234)
    alt = (torch.randn(aseq, abatch, 5, generator=g), torch.randn(2, abatch, 6, generator=g))
    alt_args = (alt[0], (alt[1], torch.randn(2, abatch, 6, generator=g))) if is_lstm else alt

    case = fl.TorchCase(
        name=name,
        module=module,
        module_desc=f"nn.{kind}(5, 6, 2)",
        kwargs={"input_size": 5, "hidden_size": 6, "num_layers": 2},
        args=args,
        exporter=exporter,
        rtol=1e-4,
        atol=1e-5,
        notes=notes,
        alt_args=alt_args,
        store_alt=False,
        extra_meta={"call": call, "seq_len": seq, "batch": batch},
    )
    if exporter == "legacy":
        case.input_names = ["input", "h0", "c0"] if is_lstm else ["input", "h0"]
        case.output_names = ["output", "hn", "cn"] if is_lstm else ["output", "hn"]
        axes = {"input": {0: "seq", 1: "batch"}, "output": {0: "seq", 1: "batch"}}
        for n in case.input_names[1:] + case.output_names[1:]:
            axes[n] = {1: "batch"}
        case.dynamic_axes = axes
        case.notes.append("legacy exporter, default opset, dynamic_axes seq/batch on all inputs/outputs")
    else:
        S, B = Dim("seq"), Dim("batch")
        if is_lstm:
            case.dynamic_shapes = ({0: S, 1: B}, ({1: B}, {1: B}))
        else:
            case.dynamic_shapes = ({0: S, 1: B}, {1: B})
        case.notes.append("dynamo exporter, default opset, dynamic_shapes Dim('seq')/Dim('batch')")
        if kind == "RNN":
            case.notes.append(
                "dynamo decomposes nn.RNN into an unrolled MatMul/Add/Tanh graph (no ONNX RNN op); "
                f"the sequence axis is silently specialized to {seq}, only batch stays dynamic")
    return case


def gen_tutorial(out: Path, only: list[str] | None) -> list[str]:
    written = []
    for kind in ["RNN", "LSTM", "GRU"]:
        for exporter in ["legacy", "dynamo"]:
            for suffix in TUTORIAL_VARIANTS:
                name = f"{kind.lower()}_{exporter}{suffix}"
                if not fl.selected(name, only):
                    continue
                case = tutorial_case(kind, exporter, suffix)
                d = out / "tutorial" / name
                meta = fl.build_torch_fixture(case, d)
                report(d, meta)
                written.append(name)
    return written


# --------------------------------------------------------------------------------------
# ONNX backend node tests
# --------------------------------------------------------------------------------------

NODE_OPS = ["rnn", "lstm", "gru"]


def collect_node_cases():
    """Return [(TestCase, source_module)] for RNN/LSTM/GRU node tests.

    Importing the case modules runs their export_* functions (np.random.seed(0) before each)
    and registers TestCases via onnx.backend.test.case.node.expect."""
    import onnx.backend.test.case.node as node_pkg

    cases = []
    for op in NODE_OPS:
        before = len(node_pkg._NodeTestCases)
        importlib.import_module(f"onnx.backend.test.case.node.{op}")
        for c in node_pkg._NodeTestCases[before:]:
            cases.append((c, op))
    if not cases:  # modules already imported elsewhere: fall back to full collection
        for c in node_pkg.collect_testcases():
            ops = {n.op_type for n in c.model.graph.node}
            for op in NODE_OPS:
                if op.upper() in ops:
                    cases.append((c, op))
    return cases


def node_data_dir() -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def gen_onnx_node(out: Path, only: list[str] | None) -> list[str]:
    written = []
    data_dir = node_data_dir()
    for case, op in collect_node_cases():
        name = case.name
        if not fl.selected(name, only):
            continue
        d = out / "onnx_node" / name
        fl.clean_dir(d)
        src_dir = data_dir / name
        if (src_dir / "model.onnx").exists() and (src_dir / "test_data_set_0").exists():
            model = onnx.load(str(src_dir / "model.onnx"))
            ds = src_dir / "test_data_set_0"
            n_in = len(list(ds.glob("input_*.pb")))
            n_out = len(list(ds.glob("output_*.pb")))
            read = lambda p: onnx.numpy_helper.to_array(onnx.load_tensor(str(p)))  # noqa: E731
            inputs = [read(ds / f"input_{i}.pb") for i in range(n_in)]
            outputs = [read(ds / f"output_{i}.pb") for i in range(n_out)]
            source = f"copied from {src_dir.relative_to(Path(onnx.__file__).parent.parent)}"
        else:
            # The installed wheel ships no node test data: regenerate from the case definitions
            # exactly like `backend-test-tools generate-data` (TensorProto round trip).
            model = case.model
            ins, outs = case.data_sets[0]
            gi, go = fl.graph_io(model)
            inputs = [onnx.numpy_helper.to_array(onnx.numpy_helper.from_array(np.asarray(a), vi.name))
                      for a, vi in zip(ins, gi)]
            outputs = [onnx.numpy_helper.to_array(onnx.numpy_helper.from_array(np.asarray(a), vi.name))
                       for a, vi in zip(outs, go)]
            source = (f"regenerated from onnx/backend/test/case/node/{op}.py "
                      "(installed onnx has no backend/test/data/node)")
        onnx.save(model, str(d / "model.onnx"))
        gi, go = fl.graph_io(model)
        assert len(gi) == len(inputs) and len(go) == len(outputs), name
        for vi, a in zip(gi, inputs):
            assert fl.shape_compatible(fl.vi_shape(vi), a.shape), (name, vi.name)
        for vi, a in zip(go, outputs):
            assert fl.shape_compatible(fl.vi_shape(vi), a.shape), (name, vi.name)
        fl.write_arrays(d, "input", inputs)
        fl.write_arrays(d, "expected", outputs)

        is64 = any(a.dtype == np.float64 for a in outputs)
        rtol, atol = (1e-7, 1e-7) if is64 else (1e-4, 1e-5)
        got, err = fl.run_ort(d / "model.onnx", {vi.name: a for vi, a in zip(gi, inputs)})
        ort = {"ok": got is not None, "max_abs_err": None, "error": err}
        if got is not None:
            ort["max_abs_err"] = fl.max_abs_err(got, outputs)
            if not fl.within_tol(got, outputs, rtol, atol):
                ort["ok"] = False
                ort["error"] = "onnxruntime result outside tolerance"
        node = model.graph.node[0]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        if isinstance(attrs.get("activations"), list):
            attrs["activations"] = [x.decode() if isinstance(x, bytes) else x for x in attrs["activations"]]
        meta = {
            "name": name,
            "module": f"onnx {node.op_type} node",
            "kwargs": attrs,
            "exporter": "onnx-node-test",
            "opset": fl.opset_of(model),
            **fl.versions(),
            "inputs": [vi.name for vi in gi],
            "outputs": [vi.name for vi in go],
            "rtol": rtol,
            "atol": atol,
            "notes": f"{source}; node inputs {list(node.input)}; reference rtol/atol of the onnx test "
                     f"case: {case.rtol}/{case.atol}",
            "onnxruntime": ort,
            "input_shapes": [list(a.shape) for a in inputs],
            "input_dtypes": [str(a.dtype) for a in inputs],
            "output_shapes": [list(a.shape) for a in outputs],
            "output_dtypes": [str(a.dtype) for a in outputs],
            "op_types": fl.op_types(model),
            "external_data": False,
        }
        fl.write_meta(d, meta)
        report(d, meta)
        written.append(name)
    return written


def report(d: Path, meta: dict) -> None:
    size = fl.dir_size(d)
    ort = meta["onnxruntime"]
    ort_s = f"ort ok err={ort['max_abs_err']:.2e}" if ort["ok"] else f"ORT FAIL ({(ort['error'] or '')[:90]})"
    alt = meta.get("onnxruntime_alt")
    if alt is not None:
        ort_s += " | alt " + ("ok" if alt["ok"] else f"FAIL ({(alt['error'] or '')[:90]})")
    flag = "  !! > 300 KiB" if size > fl.MAX_FIXTURE_BYTES else ""
    print(f"wrote {d.relative_to(fl.REPO_ROOT) if d.is_relative_to(fl.REPO_ROOT) else d} "
          f"[{meta['exporter']} opset {meta['opset']}] {size / 1024:.1f} KiB, {ort_s}{flag}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", metavar="PATTERN",
                    help="only fixtures whose name matches (glob or substring); repeatable")
    ap.add_argument("--out", type=Path, default=fl.FIXTURES_DIR, help="output root (default: <repo>/fixtures)")
    ap.add_argument("--group", choices=["tutorial", "onnx_node", "all"], default="all")
    args = ap.parse_args()
    out = args.out.resolve()
    names = []
    if args.group in ("tutorial", "all"):
        names += gen_tutorial(out, args.only)
    if args.group in ("onnx_node", "all"):
        names += gen_onnx_node(out, args.only)
    if not args.only:  # drop stale fixture directories of the regenerated groups
        groups = ["tutorial", "onnx_node"] if args.group == "all" else [args.group]
        for grp in groups:
            for d in sorted((out / grp).glob("*")):
                if d.is_dir() and d.name not in names:
                    print(f"removing stale {d}")
                    shutil.rmtree(d)
    bad = 0
    for grp in ["tutorial", "onnx_node"]:
        for d in sorted((out / grp).glob("*")) if (out / grp).exists() else []:
            if d.is_dir():
                probs = fl.check_fixture_dir(d)
                if probs:
                    bad += 1
                    print(f"LAYOUT PROBLEM {d}: {probs}")
    print(f"{len(names)} fixtures written under {out}; layout problems: {bad}")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
