#!/usr/bin/env python3
"""Generate fixtures/streaming/: PyTorch models for the streaming issue, each exported with the
legacy exporter (opset 17, dynamic batch/time axes) and the dynamo exporter (dynamic_shapes),
with one whole-run input case (batch 2, 20-40 steps) and its onnxruntime reference.

  fixtures/streaming/<module>_<exporter>/model.onnx [+ model.onnx.data]
  fixtures/streaming/<module>_<exporter>/whole_call0_{inputs,expected}.npz
  fixtures/streaming/manifest.json

Each manifest entry says whether running the model step by step (or chunk by chunk) can give
exactly the whole-run result ("stream": "exact") or must be refused ("stream": "refuse", with
"refuse_because" naming the op that needs the whole sequence), which inputs carry the time
axis, which inputs are stream-start inputs (initial states), which outputs are per-step (with
their time axis) and which are produced once per sequence ("final_outputs").

Usage: python scripts/gen_streaming.py [--only PATTERN ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.export import Dim

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixturelib as fl  # noqa: E402
from gen_graphs import export_error_message, torch_export  # noqa: E402

torch.set_num_threads(1)
ATOL, RTOL = 1e-5, 1e-4
I, H, O = 6, 8, 3  # input features, hidden, output features


# --------------------------------------------------------------------------------------
# modules (batch_first unless said otherwise)
# --------------------------------------------------------------------------------------


class LSTMHead(nn.Module):
    def __init__(self, head: str):
        super().__init__()
        self.lstm = nn.LSTM(I, H, batch_first=True)
        self.fc = nn.Linear(H, O)
        self.head = head

    def forward(self, x):
        y, (h_n, _) = self.lstm(x)
        if self.head == "mean":
            return self.fc(y.mean(dim=1))
        if self.head == "max":
            return y.max(dim=1).values
        if self.head == "first":
            return y[:, 0]
        if self.head == "step4":
            return y[:, 4]
        if self.head == "last":
            return y[:, -1]
        if self.head == "hn":
            return self.fc(h_n[-1])
        raise ValueError(self.head)


class GRUTwoInputs(nn.Module):
    def __init__(self, causal: bool):
        super().__init__()
        self.gru = nn.GRU(I, H, batch_first=True)
        self.causal = causal
        self.conv = nn.Conv1d(4, H, kernel_size=3, padding=0 if causal else 1)

    def forward(self, x, y):  # x [B, T, I], y [B, T, 4]
        g, _ = self.gru(x)
        yc = y.transpose(1, 2)  # [B, 4, T]
        if self.causal:
            yc = F.pad(yc, (2, 0))
        return g + self.conv(yc).transpose(1, 2)


class LinearGRU(nn.Module):
    """NSNet2-like: Linear -> ReLU -> GRU -> GRU -> Linear -> Sigmoid, per-step gains."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(I, H)
        self.gru1 = nn.GRU(H, H, batch_first=True)
        self.gru2 = nn.GRU(H, H, batch_first=True)
        self.fc2 = nn.Linear(H, I)

    def forward(self, x):
        z = F.relu(self.fc1(x))
        z, _ = self.gru1(z)
        z, _ = self.gru2(z)
        return torch.sigmoid(self.fc2(z))


class Seq2Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.GRU(I, H, batch_first=True)
        self.dec = nn.GRU(5, H, batch_first=True)
        self.out = nn.Linear(H, O)

    def forward(self, src, tgt):  # src [B, S, I], tgt [B, T, 5]
        _, h = self.enc(src)
        y, _ = self.dec(tgt, h)
        return self.out(y)


class LSTMStateIO(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(I, H)  # seq-major

    def forward(self, x, h0, c0):
        y, (h_n, c_n) = self.lstm(x, (h0, c0))
        return y, h_n, c_n


class LSTMPool(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.lstm = nn.LSTM(I, H, batch_first=True)
        self.kind = kind
        self.att = nn.Linear(H, 1)
        self.norm = nn.LayerNorm(H)

    def forward(self, x):
        y, _ = self.lstm(x)
        if self.kind == "softmax_pool":
            w = torch.softmax(self.att(y), dim=1)  # [B, T, 1], softmax over time
            return (w * y).sum(dim=1)
        if self.kind == "layernorm":
            return self.norm(y)
        if self.kind == "cumsum":
            return torch.cumsum(y, dim=1)
        raise ValueError(self.kind)


# --------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------


@dataclass
class Spec:
    name: str
    make: Callable[[], nn.Module]
    desc: str
    inputs: list[tuple[str, tuple]]  # (name, shape with "B"/"T"/"S" placeholders)
    outputs: list[str]
    stream: str  # exact | refuse
    refuse_because: str | None
    time_inputs: dict[str, int]  # input -> time axis
    per_step: dict[str, int]  # output -> time axis
    final: list[str]
    stream_start: list[str] = field(default_factory=list)
    batch_axes: dict[str, int] = field(default_factory=dict)  # default: 0 for every input/output
    min_t: int = 2
    note: str = ""


def specs() -> list[Spec]:
    out = []
    heads = [
        ("lstm_mean_fc", "mean", "fc(y.mean(dim=1))", "refuse", "ReduceMean over time"),
        ("lstm_max", "max", "y.max(dim=1).values", "refuse", "ReduceMax over time"),
        ("lstm_first_step", "first", "y[:, 0]", "refuse", "Gather/Slice of time step 0 of the LSTM output"),
        ("lstm_step4", "step4", "y[:, 4]", "refuse", "Gather/Slice of time step 4 of the LSTM output"),
        ("lstm_last_step", "last", "y[:, -1]", "exact", None),
        ("lstm_hn_fc", "hn", "fc(h_n[-1])", "exact", None),
    ]
    for nm, head, expr, stream, why in heads:
        out.append(Spec(nm, lambda head=head: LSTMHead(head),
                        f"nn.LSTM({I}, {H}, batch_first=True) on x [B, T, {I}], output {expr}"
                        + (" (a last-step read: the output is final)" if head == "last" else ""),
                        [("x", ("B", "T", I))], ["out"], stream, why, {"x": 1}, {}, ["out"],
                        min_t=8 if head == "step4" else 2))
    out.append(Spec("gru_two_inputs_lookahead", lambda: GRUTwoInputs(False),
                    f"GRU({I}, {H}) on x [B, T, {I}] plus Conv1d(4, {H}, k=3, padding=1) over the time axis of a "
                    f"second input y [B, T, 4], added per step: out [B, T, {H}]",
                    [("x", ("B", "T", I)), ("y", ("B", "T", 4))], ["out"], "refuse",
                    "Conv over time with padding 1 on both sides (step t reads step t+1 of y: looks ahead)",
                    {"x": 1, "y": 1}, {"out": 1}, []))
    out.append(Spec("gru_two_inputs_causal", lambda: GRUTwoInputs(True),
                    f"GRU({I}, {H}) on x [B, T, {I}] plus F.pad(y, (2, 0)) -> Conv1d(4, {H}, k=3) over the time axis "
                    f"of y [B, T, 4] (causal), added per step: out [B, T, {H}]",
                    [("x", ("B", "T", I)), ("y", ("B", "T", 4))], ["out"], "exact", None,
                    {"x": 1, "y": 1}, {"out": 1}, []))
    out.append(Spec("linear_gru", LinearGRU,
                    f"NSNet2-like: Linear({I}, {H}) -> ReLU -> GRU -> GRU -> Linear({H}, {I}) -> Sigmoid, per-step "
                    f"gains [B, T, {I}]", [("x", ("B", "T", I))], ["gains"], "exact", None, {"x": 1}, {"gains": 1}, []))
    out.append(Spec("seq2seq_gru", Seq2Seq,
                    f"encoder GRU({I}, {H}) over src [B, S, {I}]; its final state initialises a decoder GRU(5, {H}) "
                    f"over tgt [B, T, 5] (own time axis); out = Linear(decoder y) [B, T, {O}]",
                    [("src", ("B", "S", I)), ("tgt", ("B", "T", 5))], ["out"], "refuse",
                    "decoder GRU initial_h is the encoder GRU's final state Y_h (depends on the whole source sequence)",
                    {"src": 1, "tgt": 1}, {"out": 1}, []))
    out.append(Spec("lstm_state_io", LSTMStateIO,
                    f"seq-major nn.LSTM({I}, {H}) called as lstm(x, (h0, c0)) -> (y, (h_n, c_n)); h0/c0 are "
                    "stream-start inputs", [("x", ("T", "B", I)), ("h0", (1, "B", H)), ("c0", (1, "B", H))],
                    ["y", "h_n", "c_n"], "exact", None, {"x": 0}, {"y": 0}, ["h_n", "c_n"],
                    stream_start=["h0", "c0"], batch_axes={"x": 1, "h0": 1, "c0": 1, "y": 1, "h_n": 1, "c_n": 1}))
    out.append(Spec("lstm_softmax_pool", lambda: LSTMPool("softmax_pool"),
                    f"attention pooling over time: w = softmax(Linear({H}, 1)(y), dim=1); out = (w * y).sum(dim=1)",
                    [("x", ("B", "T", I))], ["out"], "refuse", "Softmax over time (attention pooling, then ReduceSum "
                    "over time)", {"x": 1}, {}, ["out"]))
    out.append(Spec("lstm_layernorm", lambda: LSTMPool("layernorm"),
                    f"LSTM then LayerNorm({H}) over the feature axis, per step: out [B, T, {H}]",
                    [("x", ("B", "T", I))], ["out"], "exact", None, {"x": 1}, {"out": 1}, []))
    out.append(Spec("lstm_cumsum", lambda: LSTMPool("cumsum"),
                    "LSTM then torch.cumsum(y, dim=1) over time: out [B, T, 8]",
                    [("x", ("B", "T", I))], ["out"], "refuse", "CumSum over time", {"x": 1}, {"out": 1}, []))
    return out


# --------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------


def steps_for(name: str) -> int:
    return 20 + zlib.crc32(name.encode()) % 21  # 20..40


def build(root: Path, spec: Spec, exporter: str) -> dict:
    name = f"{spec.name}_{exporter}"
    d = root / name
    fl.clean_dir(d)
    fl.seed_everything(spec.name)  # same weights for both exporters
    module = spec.make().eval()
    gen = torch.Generator().manual_seed(zlib.crc32(spec.name.encode()))
    T = steps_for(spec.name)
    S = T + 5
    B = 2
    sub = {"B": B, "T": T, "S": S}
    args = tuple(torch.randn(*[sub.get(s, s) for s in shape], generator=gen) for _, shape in spec.inputs)
    # export example: another time length (and batch 3) so that nothing can be specialised to the case
    ex_sub = {"B": 3, "T": 11, "S": 13}
    ex_args = tuple(torch.randn(*[ex_sub.get(s, s) for s in shape], generator=gen) for _, shape in spec.inputs)
    in_names = [n for n, _ in spec.inputs]
    entry: dict[str, Any] = {
        "name": name, "module": spec.name, "exporter": exporter, "description": spec.desc,
        "stream": spec.stream, "refuse_because": spec.refuse_because,
        "time_inputs": [{"name": k, "axis": v} for k, v in spec.time_inputs.items()],
        "stream_start_inputs": spec.stream_start,
        "per_step_outputs": [{"name": k, "axis": v} for k, v in spec.per_step.items()],
        "final_outputs": spec.final,
    }
    if spec.name == "seq2seq_gru":
        entry["time_inputs_note"] = "src and tgt have different time axes (S != T); out follows tgt's"
    try:
        if exporter == "legacy":
            axes: dict[str, dict[int, str]] = {}
            for (n, shape) in spec.inputs:
                axes[n] = {i: {"B": "batch", "T": "time", "S": "src_time"}[s] for i, s in enumerate(shape)
                           if isinstance(s, str)}
            for o in spec.outputs:
                axes[o] = {spec.batch_axes.get(o, 0): "batch"}
                if o in spec.per_step:
                    axes[o][spec.per_step[o]] = "time"
            torch_export(module, ex_args, d / "model.onnx", "legacy", in_names, spec.outputs, dynamic_axes=axes)
        else:
            dims = {"B": Dim("batch", min=2), "T": Dim("time", min=spec.min_t), "S": Dim("src_time", min=2)}
            ds = tuple({i: dims[s] for i, s in enumerate(shape) if isinstance(s, str)} for _, shape in spec.inputs)
            torch_export(module, ex_args, d / "model.onnx", "dynamo", in_names, spec.outputs, dynamic_shapes=ds)
    except Exception as e:  # noqa: BLE001
        shutil.rmtree(d, ignore_errors=True)
        entry["export_error"] = export_error_message(e)
        entry["cases"] = []
        return entry
    model = onnx.load(str(d / "model.onnx"))
    onnx.checker.check_model(model, full_check=False)
    decl = fl.io_decl(onnx.load(str(d / "model.onnx"), load_external_data=False))
    if [v["name"] for v in decl["inputs"]] != in_names or [v["name"] for v in decl["outputs"]] != spec.outputs:
        raise RuntimeError(f"{name}: graph io {decl} differs from {in_names} -> {spec.outputs}")
    entry["file"] = f"{name}/model.onnx"
    if (d / "model.onnx.data").exists():
        entry["external_data"] = f"{name}/model.onnx.data"
    entry["opset"] = fl.opset_of(model)
    entry.update(decl)
    entry["op_types"] = fl.all_op_types(model)
    feeds = {n: fl.to_np(a) for n, a in zip(in_names, args)}
    fl.check_against_graph(model, feeds, None)
    outs = fl.ort_run_named(fl.ort_session(d / "model.onnx"), feeds)
    with torch.no_grad():
        t_outs = dict(zip(spec.outputs, [fl.to_np(t) for t in fl.flatten(module(*args))]))
    agree = all(outs[k].shape == t_outs[k].shape and np.allclose(outs[k], t_outs[k], atol=ATOL, rtol=RTOL)
                for k in spec.outputs)
    err = fl.max_abs_err([outs[k] for k in spec.outputs], [t_outs[k] for k in spec.outputs])
    # dynamic axes really dynamic? run onnxruntime at the export example's shapes too
    ex_feeds = {n: fl.to_np(a) for n, a in zip(in_names, ex_args)}
    try:
        fl.ort_run_named(fl.ort_session(d / "model.onnx"), ex_feeds)
        other_ok = True
    except Exception:  # noqa: BLE001
        other_ok = False
    rel_in, rel_out = f"{name}/whole_call0_inputs.npz", f"{name}/whole_call0_expected.npz"
    fl.save_npz(root / rel_in, feeds)
    fl.save_npz(root / rel_out, outs)
    entry["cases"] = [{"name": "whole", "calls": [{"inputs": rel_in, "expected": rel_out}], "feed_back": {},
                       "atol": ATOL, "rtol": RTOL, "steps": T,
                       "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
                       "output_shapes": {k: list(v.shape) for k, v in outs.items()},
                       "onnxruntime_vs_torch": {"agree": bool(agree), "max_abs_err": err}}]
    entry["export_example_shapes"] = {k: list(v.shape) for k, v in ex_feeds.items()}
    entry["onnxruntime_runs_export_example"] = other_ok
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", metavar="PATTERN")
    ap.add_argument("--out", type=Path, default=fl.FIXTURES_DIR / "streaming")
    args = ap.parse_args()
    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    old = {}
    if args.only and manifest_path.exists():
        old = {e["name"]: e for e in json.loads(manifest_path.read_text())["models"]}
    entries: dict[str, dict] = {}
    for spec in specs():
        for exporter in ("legacy", "dynamo"):
            nm = f"{spec.name}_{exporter}"
            if not fl.selected(nm, args.only):
                if nm in old:
                    entries[nm] = old[nm]
                continue
            e = build(root, spec, exporter)
            entries[nm] = e
            if "export_error" in e:
                print(f"{nm}: EXPORT ERROR {e['export_error'][:200]}")
                continue
            c = e["cases"][0]
            size = sum(p.stat().st_size for p in (root / nm).glob("*"))
            print(f"{nm}: {e['stream']}, T={c['steps']}, {size / 1024:.0f} KiB, ORT vs torch "
                  f"{'ok' if c['onnxruntime_vs_torch']['agree'] else 'DIFFER'}"
                  + ("" if e["onnxruntime_runs_export_example"] else ", ORT FAILS at the export example shapes"))
    if not args.only:
        for p in root.iterdir():
            if p.is_dir() and p.name not in entries:
                print(f"removing stale {p}")
                shutil.rmtree(p)
    fl.write_json(manifest_path, {
        "format": "rnn-run streaming fixtures v1",
        "reference": f"onnxruntime {__import__('onnxruntime').__version__}, CPUExecutionProvider, 1 thread; "
                     "whole-sequence run",
        "paths": "relative to this manifest's folder",
        "comparison": "|got - expected| <= atol + rtol * |expected| element-wise",
        "fields": {
            "stream": "exact: feeding the time inputs step by step / chunk by chunk (state carried) must give "
                      "the whole-run per-step outputs and, after the last chunk, the final outputs; refuse: a "
                      "streaming run must be refused, naming the op in refuse_because",
            "time_inputs": "inputs that carry a time axis, with that axis",
            "stream_start_inputs": "inputs that only matter at the start of the stream (initial states)",
            "per_step_outputs": "outputs with one entry per time step, with the time axis",
            "final_outputs": "outputs produced once per sequence",
        },
        "models": list(entries.values()),
    })


if __name__ == "__main__":
    main()
