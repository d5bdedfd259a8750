#!/usr/bin/env python3
"""Generate fixtures/matrix/<name>/: the PyTorch RNN/LSTM/GRU export matrix.

Same fixture layout as gen_fixtures.py, plus optional run_input_<i>.npy / run_expected_<i>.npy
at a different batch and sequence length for exports with dynamic axes ("alt_shapes": true).

Not a cartesian product: every value of every axis is covered at least once, plus the
interacting pairs (bidirectional x batch_first, bidirectional x num_layers,
module x exporter x opset). Combinations an exporter refuses are listed in
fixtures/matrix/SKIPPED.txt.

Usage: python scripts/gen_matrix.py [--only PATTERN ...] [--out DIR] [--list]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.export import Dim
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixturelib as fl  # noqa: E402
from gen_fixtures import report  # noqa: E402

# input size / hidden size per module kind (input != hidden on purpose)
SIZES = {"rnn_tanh": (3, 5), "rnn_relu": (5, 4), "lstm": (4, 6), "gru": (3, 7)}
EXPORT_SHAPE = (5, 2)  # (seq, batch) used for the export / input_*.npy
ALT_SHAPE = (3, 3)  # (seq, batch) for run_input_*.npy
DYNAMO_DEFAULT = None  # opset None -> exporter default (20 with torch 2.15)
DYNAMO_OTHER = 18
LEGACY_OPSETS = [9, 14, 17, 20]


@dataclass
class Cfg:
    kind: str  # rnn_tanh | rnn_relu | lstm | gru
    exporter: str  # legacy | dynamo
    opset: int | None
    layers: int = 1
    bi: bool = False
    bf: bool = False
    bias: bool = True
    dropout: float = 0.0
    init: bool = True  # initial states passed as graph inputs
    dynamic: bool = True
    fold: bool = True
    double: bool = False
    seq: int = EXPORT_SHAPE[0]
    batch: int = EXPORT_SHAPE[1]
    input_size: int | None = None
    hidden: int | None = None
    tag: str = ""  # extra name part
    atol: float | None = None
    rtol: float | None = None

    @property
    def name(self) -> str:
        parts = [self.kind, f"l{self.layers}"]
        if self.bi:
            parts.append("bi")
        if self.bf:
            parts.append("bf")
        if not self.bias:
            parts.append("nobias")
        if self.dropout:
            parts.append("drop")
        if not self.init:
            parts.append("noinit")
        if not self.fold:
            parts.append("nofold")
        if self.double:
            parts.append("f64")
        if self.tag:
            parts.append(self.tag)
        if not self.dynamic:
            parts.append("static")
        parts.append(exporter_tag(self.exporter, self.opset))
        return "_".join(parts)


def exporter_tag(exporter: str, opset: int | None) -> str:
    if exporter == "legacy":
        return f"legacy_op{opset}"
    return "dynamo" if opset is None else f"dynamo_op{opset}"


def make_rnn(cfg: Cfg) -> tuple[nn.Module, str, dict]:
    i, h = SIZES[cfg.kind]
    i = cfg.input_size or i
    h = cfg.hidden or h
    kw: dict[str, Any] = {"input_size": i, "hidden_size": h, "num_layers": cfg.layers}
    if cfg.kind.startswith("rnn"):
        kw["nonlinearity"] = cfg.kind.split("_")[1]
        cls = nn.RNN
    else:
        cls = nn.LSTM if cfg.kind == "lstm" else nn.GRU
    if not cfg.bias:
        kw["bias"] = False
    if cfg.bf:
        kw["batch_first"] = True
    if cfg.dropout:
        kw["dropout"] = cfg.dropout
    if cfg.bi:
        kw["bidirectional"] = True
    m = cls(**kw)
    desc = f"nn.{cls.__name__}(" + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")"
    if cfg.double:
        m = m.double()
        desc += ".double()"
    return m, desc, kw


def rnn_args(cfg: Cfg, seq: int, batch: int, gen: torch.Generator | None = None) -> tuple:
    i, h = SIZES[cfg.kind]
    i = cfg.input_size or i
    h = cfg.hidden or h
    dt = torch.float64 if cfg.double else torch.float32
    x = torch.randn(*((batch, seq) if cfg.bf else (seq, batch)), i, generator=gen, dtype=dt)
    if not cfg.init:
        return (x,)
    nd = cfg.layers * (2 if cfg.bi else 1)
    h0 = torch.randn(nd, batch, h, generator=gen, dtype=dt)
    if cfg.kind == "lstm":
        c0 = torch.randn(nd, batch, h, generator=gen, dtype=dt)
        return (x, (h0, c0))
    return (x, h0)


def state_names(cfg: Cfg) -> tuple[list[str], list[str]]:
    ins = ["input"] + ((["h0", "c0"] if cfg.kind == "lstm" else ["h0"]) if cfg.init else [])
    outs = ["output"] + (["hn", "cn"] if cfg.kind == "lstm" else ["hn"])
    return ins, outs


def make_alt_fn(cfg: Cfg, build_args: Callable[[int, int, torch.Generator], tuple],
                seq_axis: int, seq0: int) -> Callable:
    def alt(gshapes: list, notes: list[str]) -> tuple:
        aseq, abatch = ALT_SHAPE
        if isinstance(gshapes[0][seq_axis], int):
            aseq = seq0
            notes.append(f"sequence axis exported static ({seq0}); run_* files change the batch only")
        g = torch.Generator().manual_seed(4321)
        return build_args(aseq, abatch, g)
    return alt


def rnn_case(cfg: Cfg) -> fl.TorchCase:
    name = cfg.name
    fl.seed_everything(name)
    module, desc, kw = make_rnn(cfg)
    args = rnn_args(cfg, cfg.seq, cfg.batch)
    ins, outs = state_names(cfg)
    notes = []
    if cfg.dropout:
        notes.append(f"dropout={cfg.dropout} between layers, module in eval mode (no dropout)")
    if not cfg.init:
        notes.append("initial states omitted (module called with input only)")
    else:
        notes.append("initial states passed as graph inputs")
    if cfg.exporter == "dynamo" and cfg.kind.startswith("rnn"):
        notes.append("dynamo decomposes nn.RNN into unrolled MatMul/Add/" +
                     ("Tanh" if cfg.kind == "rnn_tanh" else "Relu") + " ops (no ONNX RNN op)")
    if not cfg.fold:
        notes.append("legacy export with do_constant_folding=False")
    call = "m(input" + (", (h0, c0))" if cfg.kind == "lstm" and cfg.init else ", h0)" if cfg.init else ")")
    is_double = cfg.double
    case = fl.TorchCase(
        name=name, module=module, module_desc=desc, kwargs=kw, args=args,
        exporter=cfg.exporter, opset=cfg.opset,
        rtol=cfg.rtol or (1e-9 if is_double else 1e-4),
        atol=cfg.atol or (1e-9 if is_double else 1e-5),
        notes=notes, do_constant_folding=cfg.fold,
        extra_meta={"call": call, "seq_len": cfg.seq, "batch": cfg.batch, "batch_first": cfg.bf,
                    "bidirectional": cfg.bi, "num_layers": cfg.layers, "initial_states": cfg.init,
                    "dtype": "float64" if is_double else "float32"},
    )
    seq_axis, batch_axis = (1, 0) if cfg.bf else (0, 1)
    if cfg.exporter == "legacy":
        case.input_names, case.output_names = ins, outs
    if cfg.dynamic:
        if cfg.exporter == "legacy":
            ax = {"input": {seq_axis: "seq", batch_axis: "batch"}, "output": {seq_axis: "seq", batch_axis: "batch"}}
            for n in ins[1:] + outs[1:]:
                ax[n] = {1: "batch"}
            case.dynamic_axes = ax
        else:
            S, B = Dim("seq"), Dim("batch")
            xs = {seq_axis: S, batch_axis: B}
            if not cfg.init:
                case.dynamic_shapes = (xs,)
            elif cfg.kind == "lstm":
                case.dynamic_shapes = (xs, ({1: B}, {1: B}))
            else:
                case.dynamic_shapes = (xs, {1: B})
        case.alt_args = make_alt_fn(cfg, lambda s, b, g: rnn_args(cfg, s, b, g), seq_axis, cfg.seq)
        case.store_alt = True
    return case


# --------------------------------------------------------------------------------------
# Special models
# --------------------------------------------------------------------------------------


class Packed(nn.Module):
    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, lengths):
        p = pack_padded_sequence(x, lengths, enforce_sorted=True)
        out, h = self.rnn(p)
        out, _ = pad_packed_sequence(out)
        return out, h


class EmbedLSTMLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 4)
        self.lstm = nn.LSTM(4, 6)
        self.fc = nn.Linear(6, 7)

    def forward(self, tokens):
        y, _ = self.lstm(self.emb(tokens))
        return self.fc(y)


class BiGRUHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, 5, batch_first=True, bidirectional=True)
        self.head = nn.Linear(10, 3)

    def forward(self, x):
        y, h = self.gru(x)
        return self.head(y), h


class LSTMOnGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 5)
        self.lstm = nn.LSTM(5, 4)

    def forward(self, x):
        y, hg = self.gru(x)
        z, (hl, cl) = self.lstm(y)
        return z, hg, hl, cl


def proj_name(exporter: str, opset: int | None) -> str:
    # the dynamo export "succeeds" but is inconsistent: saved with expect_error
    return ("broken_" if exporter == "dynamo" else "") + f"lstm_proj_{exporter_tag(exporter, opset)}"


def special_case(kind: str, exporter: str, opset: int | None) -> fl.TorchCase:
    name = f"{kind}_{exporter_tag(exporter, opset)}"
    fl.seed_everything(name)
    seq, batch = EXPORT_SHAPE
    S, B = Dim("seq"), Dim("batch")
    case: fl.TorchCase
    if kind in ("lstm_packed", "gru_packed"):
        rnn = nn.LSTM(4, 6) if kind == "lstm_packed" else nn.GRU(4, 6)
        module = Packed(rnn)
        batch = 3

        def mk(s, b, g=None):
            lengths = torch.tensor(sorted([s] + [max(1, s - 1 - k) for k in range(b - 1)], reverse=True),
                                   dtype=torch.int64)
            return (torch.randn(s, b, 4, generator=g), lengths)

        outs = ["output", "hn", "cn"] if kind == "lstm_packed" else ["output", "hn"]
        case = fl.TorchCase(
            name=name, module=module, args=mk(seq, batch), exporter=exporter, opset=opset,
            module_desc=f"pad_packed_sequence(nn.{type(rnn).__name__}(4, 6)(pack_padded_sequence(x, lengths, "
                        "enforce_sorted=True)))",
            kwargs={"input_size": 4, "hidden_size": 6, "enforce_sorted": True},
            input_names=["input", "lengths"], output_names=outs,
            notes=["lengths is an int64 graph input (descending, max == seq so PyTorch's padded output "
                   "has the full sequence length)"],
            extra_meta={"lengths_input": "lengths"},
        )
        if exporter == "legacy":
            case.notes.append("legacy exporter emits Cast(lengths -> int32) feeding the ONNX "
                              f"{type(rnn).__name__.upper()} sequence_lens input; initial states become "
                              "ConstantOfShape zeros; pack/pad become no-ops (prim::PackPadded/PadPacked)")
        if exporter == "legacy":
            ax = {"input": {0: "seq", 1: "batch"}, "lengths": {0: "batch"}, "output": {0: "seq", 1: "batch"}}
            for n in outs[1:]:
                ax[n] = {1: "batch"}
            case.dynamic_axes = ax
        else:
            case.dynamic_shapes = ({0: S, 1: B}, {0: B})
        case.alt_args = lambda gs, notes: mk(ALT_SHAPE[0], ALT_SHAPE[1], torch.Generator().manual_seed(4321))
        case.store_alt = True
    elif kind == "embed_lstm_linear":
        module = EmbedLSTMLinear()

        def mk(s, b, g=None):
            return (torch.randint(0, 20, (s, b), generator=g, dtype=torch.int64),)

        case = fl.TorchCase(
            name=name, module=module, args=mk(seq, batch), exporter=exporter, opset=opset,
            module_desc="nn.Embedding(20, 4) -> nn.LSTM(4, 6) -> nn.Linear(6, 7)",
            kwargs={"vocab": 20, "embed": 4, "hidden_size": 6, "out_features": 7},
            input_names=["tokens"], output_names=["logits"],
            notes=["int64 token ids (seq, batch) -> logits (seq, batch, 7); LSTM initial states omitted"],
        )
        if exporter == "legacy":
            case.dynamic_axes = {"tokens": {0: "seq", 1: "batch"}, "logits": {0: "seq", 1: "batch"}}
        else:
            case.dynamic_shapes = ({0: S, 1: B},)
        case.alt_args = lambda gs, notes: mk(*ALT_SHAPE, torch.Generator().manual_seed(4321))
        case.store_alt = True
    elif kind == "bigru_linear_head":
        module = BiGRUHead()

        def mk(s, b, g=None):
            return (torch.randn(b, s, 4, generator=g),)

        case = fl.TorchCase(
            name=name, module=module, args=mk(seq, batch), exporter=exporter, opset=opset,
            module_desc="nn.GRU(4, 5, batch_first=True, bidirectional=True) -> per-step nn.Linear(10, 3)",
            kwargs={"input_size": 4, "hidden_size": 5, "batch_first": True, "bidirectional": True,
                    "out_features": 3},
            input_names=["input"], output_names=["scores", "hn"],
            notes=["batch_first bidirectional GRU, Linear head applied to every step; initial state omitted"],
        )
        if exporter == "legacy":
            case.dynamic_axes = {"input": {0: "batch", 1: "seq"}, "scores": {0: "batch", 1: "seq"},
                                 "hn": {1: "batch"}}
        else:
            case.dynamic_shapes = ({0: B, 1: S},)
        case.alt_args = lambda gs, notes: mk(*ALT_SHAPE, torch.Generator().manual_seed(4321))
        case.store_alt = True
    elif kind == "lstm_on_gru":
        module = LSTMOnGRU()

        def mk(s, b, g=None):
            return (torch.randn(s, b, 3, generator=g),)

        case = fl.TorchCase(
            name=name, module=module, args=mk(seq, batch), exporter=exporter, opset=opset,
            module_desc="nn.GRU(3, 5) -> nn.LSTM(5, 4)",
            kwargs={"gru": {"input_size": 3, "hidden_size": 5}, "lstm": {"input_size": 5, "hidden_size": 4}},
            input_names=["input"], output_names=["output", "gru_hn", "lstm_hn", "lstm_cn"],
            notes=["LSTM stacked on a GRU; initial states omitted; outputs (lstm output, gru h_n, lstm h_n, "
                   "lstm c_n)"],
        )
        if exporter == "legacy":
            case.dynamic_axes = {"input": {0: "seq", 1: "batch"}, "output": {0: "seq", 1: "batch"},
                                 "gru_hn": {1: "batch"}, "lstm_hn": {1: "batch"}, "lstm_cn": {1: "batch"}}
        else:
            case.dynamic_shapes = ({0: S, 1: B},)
        case.alt_args = lambda gs, notes: mk(*ALT_SHAPE, torch.Generator().manual_seed(4321))
        case.store_alt = True
    elif kind in ("lstm_long_h192", "gru_long_h192"):
        is_lstm = kind.startswith("lstm")
        rnn = nn.LSTM(2, 192) if is_lstm else nn.GRU(2, 192)
        x = torch.randn(320, 1, 2)
        case = fl.TorchCase(
            name=name, module=rnn, args=(x,), exporter=exporter, opset=opset,
            module_desc=f"nn.{type(rnn).__name__}(2, 192)", kwargs={"input_size": 2, "hidden_size": 192},
            input_names=["input"], output_names=["output", "hn", "cn"] if is_lstm else ["output", "hn"],
            rtol=1e-4, atol=1e-4,
            notes=["long sequence (320 steps, batch 1), hidden 192, static shapes, initial states omitted; "
                   f"over the 300 KiB budget on purpose: recurrent weights alone are "
                   f"{(4 if is_lstm else 3) * 192 * 192 * 4 // 1024} KiB fp32 and expected_0 is 240 KiB"],
        )
    elif kind == "lstm_proj":
        module = nn.LSTM(3, 6, proj_size=4)
        x, h0, c0 = torch.randn(seq, batch, 3), torch.randn(1, batch, 4), torch.randn(1, batch, 6)
        case = fl.TorchCase(
            name=proj_name(exporter, opset), module=module, args=(x, (h0, c0)),
            exporter=exporter, opset=opset, module_desc="nn.LSTM(3, 6, proj_size=4)",
            kwargs={"input_size": 3, "hidden_size": 6, "proj_size": 4},
            input_names=["input", "h0", "c0"], output_names=["output", "hn", "cn"],
            notes=["LSTM with projection: h is proj_size=4, c is hidden_size=6"],
            allow_broken=True, extra_meta={"call": "m(input, (h0, c0))"},
        )
    else:
        raise ValueError(kind)
    return case


# --------------------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------------------

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def matrix() -> list[tuple[str, Callable[[], fl.TorchCase], str]]:
    """[(name, builder, exporter)]"""
    items: list[tuple[str, Callable[[], fl.TorchCase], str]] = []

    def add_cfg(cfg: Cfg):
        items.append((cfg.name, lambda cfg=cfg: rnn_case(cfg), cfg.exporter))

    exporters = [("legacy", op) for op in LEGACY_OPSETS] + [("dynamo", DYNAMO_DEFAULT), ("dynamo", DYNAMO_OTHER)]
    # 1. module x exporter x opset sweep: 2 layers, unidirectional, initial states as inputs.
    #    legacy opset 14 is exported static (no dynamic axes) to cover that axis value.
    for kind in KINDS:
        for exp, op in exporters:
            add_cfg(Cfg(kind, exp, op, layers=2, dynamic=not (exp == "legacy" and op == 14)))
    # 1b. dynamo without dynamic_shapes (its default) writes the sequence length into Reshape
    #     targets; streaming has to free them.
    for kind in ("lstm", "gru"):
        add_cfg(Cfg(kind, "dynamo", DYNAMO_DEFAULT, layers=2, dynamic=False))
    # 2. structural features x {legacy op17, dynamo default}: covers bidirectional x batch_first,
    #    bidirectional x num_layers, bias, dropout and omitted initial states.
    feats = [
        dict(layers=1, bf=True),
        dict(layers=1, bi=True),
        dict(layers=1, bi=True, bf=True),
        dict(layers=2, dropout=0.3),
        dict(layers=2, bi=True, bf=True, bias=False),
        dict(layers=3, bf=True),
        dict(layers=3, bi=True, init=False),
        dict(layers=1, init=False, bias=False),
    ]
    for kind in KINDS:
        for f in feats:
            for exp, op in [("legacy", 17), ("dynamo", DYNAMO_DEFAULT)]:
                add_cfg(Cfg(kind, exp, op, **f))
    # 3. oldest opset with the tricky layout
    for kind in KINDS:
        add_cfg(Cfg(kind, "legacy", 9, layers=2, bi=True, bf=True))
    # 4. do_constant_folding=False
    add_cfg(Cfg("lstm", "legacy", 17, layers=2, bi=True, fold=False))
    add_cfg(Cfg("gru", "legacy", 17, layers=2, bi=True, fold=False))
    add_cfg(Cfg("rnn_tanh", "legacy", 17, layers=2, bi=True, fold=False))
    add_cfg(Cfg("rnn_relu", "legacy", 17, layers=1, bf=True, fold=False))
    # 5. float64
    add_cfg(Cfg("lstm", "legacy", 17, layers=2, bi=True, double=True))
    add_cfg(Cfg("gru", "legacy", 17, layers=1, double=True))
    add_cfg(Cfg("rnn_tanh", "legacy", 17, layers=1, double=True))
    add_cfg(Cfg("lstm", "dynamo", DYNAMO_DEFAULT, layers=1, double=True))
    # 6. sequence length 1 (batch 1, static)
    add_cfg(Cfg("lstm", "legacy", 17, layers=2, seq=1, batch=1, dynamic=False, tag="seq1"))
    add_cfg(Cfg("gru", "dynamo", DYNAMO_DEFAULT, layers=1, bi=True, seq=1, batch=1, dynamic=False, tag="seq1"))
    add_cfg(Cfg("rnn_tanh", "legacy", 20, layers=1, seq=1, batch=1, dynamic=False, tag="seq1"))
    add_cfg(Cfg("rnn_relu", "dynamo", DYNAMO_DEFAULT, layers=2, seq=1, batch=1, dynamic=False, tag="seq1"))
    # 7. special models
    specials = [
        ("lstm_packed", "legacy", 17), ("gru_packed", "legacy", 17),
        ("lstm_packed", "dynamo", DYNAMO_DEFAULT), ("gru_packed", "dynamo", DYNAMO_DEFAULT),
        ("embed_lstm_linear", "legacy", 17), ("embed_lstm_linear", "dynamo", DYNAMO_DEFAULT),
        ("bigru_linear_head", "legacy", 17), ("bigru_linear_head", "dynamo", DYNAMO_DEFAULT),
        ("lstm_on_gru", "legacy", 17), ("lstm_on_gru", "dynamo", DYNAMO_DEFAULT),
        ("lstm_long_h192", "legacy", 17), ("gru_long_h192", "dynamo", DYNAMO_DEFAULT),
        ("lstm_proj", "legacy", 17), ("lstm_proj", "dynamo", DYNAMO_DEFAULT),
    ]
    for kind, exp, op in specials:
        nm = proj_name(exp, op) if kind == "lstm_proj" else f"{kind}_{exporter_tag(exp, op)}"
        items.append((nm, lambda kind=kind, exp=exp, op=op: special_case(kind, exp, op), exp))
    names = [n for n, _, _ in items]
    assert len(names) == len(set(names)), "duplicate fixture names"
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", metavar="PATTERN",
                    help="only fixtures whose name matches (glob or substring); repeatable")
    ap.add_argument("--out", type=Path, default=fl.FIXTURES_DIR, help="output root (default: <repo>/fixtures)")
    ap.add_argument("--list", action="store_true", help="list fixture names and exit")
    args = ap.parse_args()
    root = args.out.resolve() / "matrix"
    root.mkdir(parents=True, exist_ok=True)
    items = matrix()
    if args.list:
        for n, _, _ in items:
            print(n)
        return

    skipped_path = root / "SKIPPED.txt"
    skipped: dict[str, str] = {}
    if args.only and skipped_path.exists():  # keep entries of fixtures not attempted now
        for line in skipped_path.read_text().splitlines():
            if line and not line.startswith("#"):
                skipped[line.split("\t", 1)[0]] = line
    written, refused, broken = [], [], []
    for name, build, exp in items:
        if not fl.selected(name, args.only):
            continue
        skipped.pop(name, None)
        case = build()
        d = root / name
        try:
            meta = fl.build_torch_fixture(case, d)
        except fl.ExportRefused as e:
            msg = str(e).replace("\t", " ").replace("\n", " ")
            print(f"SKIPPED {name}: {exp} exporter refused: {msg}")
            skipped[name] = f"{name}\t{exp}\t{msg}"
            refused.append(name)
            continue
        report(d, meta)
        written.append(name)
        if meta.get("expect_error"):
            broken.append(name)
            print(f"  BROKEN (expect_error): {meta['notes']}")

    with open(skipped_path, "w") as f:
        f.write("# fixture\texporter\texception (combinations the exporter refused; regenerate with "
                "scripts/gen_matrix.py)\n")
        for k in sorted(skipped):
            f.write(skipped[k] + "\n")

    if not args.only:  # drop stale fixture directories
        keep = {n for n, _, _ in items}
        for d in root.iterdir():
            if d.is_dir() and d.name not in keep:
                print(f"removing stale {d}")
                shutil.rmtree(d)

    bad = 0
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        probs = fl.check_fixture_dir(d)
        if probs:
            bad += 1
            print(f"LAYOUT PROBLEM {d}: {probs}")
    total = sum(fl.dir_size(p) for p in root.iterdir() if p.is_dir())
    print(f"{len(written)} fixtures written, {len(refused)} refused (SKIPPED.txt), {len(broken)} broken "
          f"(expect_error); matrix total {total / 1024 / 1024:.2f} MiB; layout problems: {bad}")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
