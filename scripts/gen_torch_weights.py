#!/usr/bin/env python3
"""Generate fixtures/torch_weights: PyTorch recurrent modules saved as state dicts.

Each fixture directory fixtures/torch_weights/<name>/ holds:

  state_dict.npz           the module's state_dict() (np.savez, uncompressed), keyed by name
  state_dict.safetensors   the same, written by safetensors.torch.save_file
  input_0.npy              x      ([T, B, I], or [B, T, I] with batch_first)
  input_1.npy              h0     ([num_layers * D, B, H])
  input_2.npy              c0     (LSTM only)
  expected_0.npy           PyTorch's output
  expected_1.npy           PyTorch's h_n
  expected_2.npy           PyTorch's c_n (LSTM only)
  model.onnx               the same module exported by the legacy exporter (dynamo=False),
                           graph inputs (input, h0[, c0]), outputs (output, h_n[, c_n]);
                           absent for nn.LSTM(proj_size=...), which ONNX's LSTM cannot express
                           (h0 and h_n are then [num_layers * D, B, proj_size])
  meta.json                {name, module, kind, kwargs, prefix, dtype, torch, onnx, opset, ...}

tests/torch_weights.rs builds rnn_run::torch::TorchRecurrent from both state-dict files and
checks it against PyTorch and against the ONNX path.

Usage: python scripts/gen_torch_weights.py [--only PATTERN ...] [--out DIR]
Seeds are derived from the fixture name; versions pinned in scripts/requirements.txt.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import safetensors.torch
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixturelib as fl  # noqa: E402

MAX_BYTES = 50 * 1024
OPSET = 17
INPUT, HIDDEN = 4, 5


@dataclass
class Case:
    name: str
    kind: str  # RNN | LSTM | GRU
    kwargs: dict = field(default_factory=dict)
    seq: int = 3
    batch: int = 2
    dtype: torch.dtype = torch.float32
    prefix: str = ""  # non-empty: the module is `self.<prefix[:-1]>` of a wrapper with a head


CASES = [
    Case("rnn_tanh_l1", "RNN"),
    Case("rnn_relu_l1_bf", "RNN", {"nonlinearity": "relu", "batch_first": True}),
    Case("rnn_relu_l2_bi", "RNN", {"num_layers": 2, "nonlinearity": "relu", "bidirectional": True}),
    Case("rnn_tanh_l2_bf_nobias", "RNN", {"num_layers": 2, "batch_first": True, "bias": False}),
    Case("lstm_l1", "LSTM", seq=4),
    Case("lstm_l2", "LSTM", {"num_layers": 2}),
    Case("lstm_l1_bi_bf", "LSTM", {"bidirectional": True, "batch_first": True}),
    Case("lstm_l2_bi_nobias", "LSTM", {"num_layers": 2, "bidirectional": True, "bias": False}),
    Case("lstm_l1_f64", "LSTM", {"num_layers": 1}, dtype=torch.float64),
    Case("gru_l1", "GRU", seq=4),
    Case("gru_l2_bi_bf", "GRU", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    Case("gru_l1_nobias", "GRU", {"bias": False}),
    Case("gru_l2_prefix", "GRU", {"num_layers": 2}, prefix="encoder."),
    # LSTM projections: no ONNX export (ONNX's LSTM has none), so no model.onnx.
    Case("lstm_proj_l1", "LSTM", {"proj_size": 3}, seq=4),
    Case("lstm_proj_l2_bi_bf", "LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True, "proj_size": 3}),
    Case("lstm_proj_l2_nobias_f64", "LSTM", {"num_layers": 2, "bias": False, "proj_size": 2}, dtype=torch.float64),
]


class Wrapper(nn.Module):
    """A bigger module holding the recurrent one as `encoder` (plus a head that the
    forward does not use), so that its state_dict has `encoder.*` and `head.*` keys."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.encoder = rnn
        self.head = nn.Linear(HIDDEN, 3)

    def forward(self, x, hx):
        return self.encoder(x, hx)


def module_desc(kind: str, kwargs: dict) -> str:
    extra = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return f"nn.{kind}({INPUT}, {HIDDEN}{extra})"


def generate(case: Case, out_root: Path) -> Path:
    fl.seed_everything(case.name)
    rnn = getattr(nn, case.kind)(INPUT, HIDDEN, **case.kwargs)
    module: nn.Module = Wrapper(rnn) if case.prefix else rnn
    assert not case.prefix or case.prefix == "encoder."
    module = module.to(case.dtype).eval()

    layers = case.kwargs.get("num_layers", 1)
    dirs = 2 if case.kwargs.get("bidirectional", False) else 1
    batch_first = case.kwargs.get("batch_first", False)
    lstm = case.kind == "LSTM"
    x_shape = (case.batch, case.seq, INPUT) if batch_first else (case.seq, case.batch, INPUT)
    x = torch.randn(*x_shape, dtype=case.dtype)
    proj = case.kwargs.get("proj_size", 0)
    h0 = torch.randn(layers * dirs, case.batch, proj or HIDDEN, dtype=case.dtype)
    c0 = torch.randn(layers * dirs, case.batch, HIDDEN, dtype=case.dtype) if lstm else None
    args = (x, (h0, c0)) if lstm else (x, h0)
    inputs = [x, h0] + ([c0] if lstm else [])

    with torch.no_grad():
        output, hx = module(*args)
    outputs = [output] + (list(hx) if lstm else [hx])

    d = out_root / case.name
    fl.clean_dir(d)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    safetensors.torch.save_file(state, str(d / "state_dict.safetensors"))
    np.savez(d / "state_dict.npz", **{k: fl.to_np(v) for k, v in state.items()})
    fl.write_arrays(d, "input", [fl.to_np(t) for t in inputs])
    fl.write_arrays(d, "expected", [fl.to_np(t) for t in outputs])

    input_names = ["input", "h0"] + (["c0"] if lstm else [])
    output_names = ["output", "h_n"] + (["c_n"] if lstm else [])
    model = None
    if not proj:
        with fl.quiet():
            torch.onnx.export(
                module,
                args,
                str(d / "model.onnx"),
                dynamo=False,
                opset_version=OPSET,
                input_names=input_names,
                output_names=output_names,
            )
        model = onnx.load(str(d / "model.onnx"))
        g_inputs, g_outputs = fl.graph_io(model)
        assert [i.name for i in g_inputs] == input_names, [i.name for i in g_inputs]
        assert [o.name for o in g_outputs] == output_names, [o.name for o in g_outputs]

    fl.write_meta(
        d,
        {
            "name": case.name,
            "module": module_desc(case.kind, case.kwargs)
            + (f" as `{case.prefix[:-1]}` of a wrapper with a Linear head" if case.prefix else ""),
            "kind": case.kind,
            "kwargs": {"input_size": INPUT, "hidden_size": HIDDEN, **case.kwargs},
            "prefix": case.prefix,
            "dtype": str(case.dtype).removeprefix("torch."),
            "state_dict_keys": list(state.keys()),
            "exporter": "legacy" if model else None,
            "opset": fl.opset_of(model) if model else None,
            **fl.versions(),
            "inputs": input_names,
            "outputs": output_names,
            "input_shapes": [list(t.shape) for t in inputs],
            "output_shapes": [list(t.shape) for t in outputs],
            "rnn_nodes": fl.rnn_nodes(model) if model else [],
            "rtol": 1e-4,
            "atol": 1e-5,
        },
    )
    size = fl.dir_size(d)
    if size > MAX_BYTES:
        raise SystemExit(f"{case.name}: {size} bytes, over the {MAX_BYTES} byte budget")
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", help="glob or substring of fixture names (repeatable)")
    ap.add_argument("--out", type=Path, default=fl.FIXTURES_DIR, help="fixtures root (default: fixtures/)")
    ap.add_argument("--list", action="store_true", help="print the fixture names and exit")
    args = ap.parse_args()
    if args.list:
        print("\n".join(c.name for c in CASES))
        return
    torch.set_num_threads(1)
    root = args.out / "torch_weights"
    root.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        if fl.selected(case.name, args.only):
            d = generate(case, root)
            print(f"{case.name}: {fl.dir_size(d)} bytes")


if __name__ == "__main__":
    main()
