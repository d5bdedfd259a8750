#!/usr/bin/env python3
"""Generate fixtures/graphs/: small models that each reproduce one way real third-party
models break loaders, with onnxruntime references at 2-3 input shapes.

  fixtures/graphs/<model>/model.onnx [+ model.onnx.data]
  fixtures/graphs/<model>/<case>_call0_{inputs,expected}.npz   (+ <case>_call0_torch.npz)
  fixtures/graphs/manifest.json

Hand-built graphs use onnx.helper (opset 13-17) with random weights from a seed derived from
the model name; the PyTorch ones (packed sequences, DeepFilterNet-like conv+GRU) are exported
with the legacy and the dynamo exporter. Every model passes onnx.checker; every reference is
onnxruntime (CPUExecutionProvider, 1 thread); PyTorch outputs are stored beside it for the
exported ones (`expected_torch`).

Usage: python scripts/gen_graphs.py [--only PATTERN ...] [--out DIR] [--dfn-hidden N]
"""

from __future__ import annotations

import argparse
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
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as onh
from torch.export import Dim
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixturelib as fl  # noqa: E402

torch.set_num_threads(1)
INT64_MIN = np.iinfo(np.int64).min
ATOL, RTOL = 1e-5, 1e-4


@dataclass
class Model:
    name: str
    klass: str
    description: str
    cases: list[tuple[str, dict[str, np.ndarray]]]  # (case name, feeds)
    torch_outputs: dict[str, dict[str, np.ndarray]] | None = None  # case -> {graph output name: array}
    extra: dict[str, Any] = field(default_factory=dict)
    atol: float = ATOL
    rtol: float = RTOL
    export_error: str | None = None


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()) & 0x7FFFFFFF)


# --------------------------------------------------------------------------------------
# onnx.helper building blocks
# --------------------------------------------------------------------------------------


class G:
    """Tiny graph builder: nodes, initializers and constants with unique names."""

    def __init__(self, name: str):
        self.name = name
        self.rng = rng_for(name)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def uid(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def init(self, base: str, arr: np.ndarray) -> str:
        nm = self.uid(base)
        self.inits.append(onh.from_array(np.asarray(arr), nm))
        return nm

    def i64(self, vals, base="c") -> str:
        return self.init(base, np.array(vals, dtype=np.int64))

    def f32(self, arr, base="w") -> str:
        return self.init(base, np.asarray(arr, dtype=np.float32))

    def rand(self, *shape, scale=None, base="w") -> str:
        scale = scale if scale is not None else 1.0 / np.sqrt(shape[-1])
        return self.f32(self.rng.uniform(-scale, scale, size=shape), base)

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, base: str | None = None, **attrs) -> Any:
        outs = [self.uid(base or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(oh.make_node(op_type, inputs, outs, name=self.uid("n_" + op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def rnn_weights(self, kind: str, inp: int, hid: int, dirs: int = 1) -> list[str]:
        g = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
        s = 1 / np.sqrt(hid)
        return [self.rand(dirs, g * hid, inp, scale=s, base=f"{kind}_W"),
                self.rand(dirs, g * hid, hid, scale=s, base=f"{kind}_R"),
                self.rand(dirs, 2 * g * hid, scale=s, base=f"{kind}_B")]

    def subgraph(self, name: str, outputs: list[onnx.ValueInfoProto], body: Callable[["G"], list[str]]) -> onnx.GraphProto:
        """Build a branch body with a fresh node list (outer names stay visible)."""
        saved_nodes, saved_inits = self.nodes, self.inits
        self.nodes, self.inits = [], []
        outs = body(self)
        # rename the body's final values to the declared output names
        for vi, o in zip(outputs, outs):
            self.nodes.append(oh.make_node("Identity", [o], [vi.name], name=self.uid("n_Identity")))
        g = oh.make_graph(self.nodes, name, [], outputs, initializer=self.inits)
        self.nodes, self.inits = saved_nodes, saved_inits
        return g

    def model(self, inputs, outputs, opset: int) -> onnx.ModelProto:
        graph = oh.make_graph(self.nodes, self.name, inputs, outputs, initializer=self.inits)
        m = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)], producer_name="rnn-run gen_graphs.py")
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=False)
        return m


def vi(name: str, shape, elem=TP.FLOAT) -> onnx.ValueInfoProto:
    if shape == "norank":
        return oh.make_tensor_value_info(name, elem, None)
    return oh.make_tensor_value_info(name, elem, shape)


def randn(rng: np.random.Generator, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# --------------------------------------------------------------------------------------
# 1. unnamed_dims
# --------------------------------------------------------------------------------------


def build_unnamed_dims(d: Path) -> list[Model]:
    name = "unnamed_dims"
    g = G(name)
    F_, H = 8, 6
    lstm_w = g.rnn_weights("LSTM", F_, H)
    gru_w = g.rnn_weights("GRU", F_, H)
    h0 = g.op("Slice", ["state", g.i64([0]), g.i64([1]), g.i64([0])])
    c0 = g.op("Slice", ["state", g.i64([1]), g.i64([2]), g.i64([0])])
    cond = g.op("Equal", ["sr", g.i64(16000)])

    def then_b(g: G):
        y, yh, yc = g.op("LSTM", ["x", *lstm_w, "", h0, c0], n_out=3, hidden_size=H)
        y3 = g.op("Squeeze", [y, g.i64([1])])  # [T, B, H]
        return [y3, g.op("Concat", [yh, yc], axis=0)]

    def else_b(g: G):
        y, yh = g.op("GRU", ["x", *gru_w, "", h0], n_out=2, hidden_size=H, linear_before_reset=1)
        return [y, g.op("Concat", [yh, c0], axis=0)]  # y stays [T, 1, B, H]

    outs = [vi("then_y", "norank"), vi("then_state", [None, None, None])]
    outs_e = [vi("else_y", "norank"), vi("else_state", [None, None, None])]
    y, st = g.op("If", [cond], n_out=2, base="if",
                 then_branch=g.subgraph("then_lstm_16k", outs, then_b),
                 else_branch=g.subgraph("else_gru_8k", outs_e, else_b))
    # back to rank 3 with a Reshape whose target comes from Shape(x): [T, B, -1]
    tb = g.op("Slice", [g.op("Shape", ["x"]), g.i64([0]), g.i64([2]), g.i64([0])])
    g.nodes.append(oh.make_node("Reshape", [y, g.op("Concat", [tb, g.i64([-1])], axis=0)], ["y"]))
    g.nodes.append(oh.make_node("Identity", [st], ["stateN"]))
    m = g.model([vi("x", [None, None, None]), vi("state", [None, None, None]), vi("sr", [], TP.INT64)],
                [vi("y", [None, None, None]), vi("stateN", [None, None, None])], opset=16)
    onnx.save(m, str(d / "model.onnx"))
    rng = rng_for(name + "/data")
    cases = []
    for sr, T, B in [(16000, 5, 1), (16000, 9, 3), (8000, 7, 2)]:
        cases.append((f"sr{sr}_t{T}_b{B}", {"x": randn(rng, T, B, F_), "state": randn(rng, 2, B, H) * 0.5,
                                            "sr": np.array(sr, dtype=np.int64)}))
    return [Model(name, "unnamed_dims",
                  "Graph inputs whose dims have neither dim_value nor dim_param (x [?, ?, ?] seq-major, "
                  "state [?, ?, ?] = [2, batch, 6]), sr an int64 scalar. If(sr == 16000): LSTM (hidden 6, "
                  "Y squeezed to rank 3 [T, B, 6]) else GRU (hidden 6, linear_before_reset=1, Y kept rank 4 "
                  "[T, 1, B, 6]), the If's y output declared without shape; then y = Reshape(If.y, "
                  "Concat(Shape(x)[0:2], [-1])) [T, B, 6];  [2, B, 6] (LSTM: h;c, GRU: h;state[1]).", cases)]


# --------------------------------------------------------------------------------------
# 2. if_rank
# --------------------------------------------------------------------------------------


def build_if_rank(d: Path) -> list[Model]:
    name = "if_rank"
    g = G(name)
    C, K, S, H = 8, 64, 32, 6
    padded = g.op("Pad", ["x", g.i64([0, 96, 0, 96])], mode="reflect")  # [B, seq + 192]
    u = g.op("Unsqueeze", [padded, g.i64([1])])  # [B, 1, seq + 192]
    rank = g.op("Size", [g.op("Shape", [u])])
    cond1 = g.op("Equal", [rank, g.i64(3)])
    o1 = [vi("if1_then", "norank")]
    o1e = [vi("if1_else", "norank")]
    r4 = g.op("If", [cond1], base="if1",
              then_branch=g.subgraph("to_rank4", o1, lambda g: [g.op("Unsqueeze", [u, g.i64([2])])]),  # [B,1,1,S']
              else_branch=g.subgraph("keep_rank", o1e, lambda g: [g.op("Identity", [u])]))
    conv = g.op("Conv", [r4, g.rand(C, 1, 1, K, scale=0.2), g.rand(C, scale=0.1)],
                kernel_shape=[1, K], strides=[1, S])  # [B, C, 1, L]
    conv = g.op("Relu", [conv])
    cond2 = g.op("Equal", [g.op("Gather", [g.op("Shape", [conv]), g.i64(2)], axis=0), g.i64(1)])
    w = g.rnn_weights("LSTM", C, H)
    head_w, head_b = g.rand(H, 1), g.rand(1, scale=0.1)

    def then_b(g: G):
        sq = g.op("Squeeze", [conv, g.i64([2])])  # [B, C, L]
        seq = g.op("Transpose", [sq], perm=[2, 0, 1])  # [L, B, C]
        _, yh, _ = g.op("LSTM", [seq, *w], n_out=3, hidden_size=H)
        last = g.op("Squeeze", [yh, g.i64([0])])  # [B, H]
        return [g.op("Sigmoid", [g.op("Add", [g.op("MatMul", [last, head_w]), head_b])])]  # [B, 1]

    def else_b(g: G):
        return [g.op("ReduceMean", [conv], axes=[3], keepdims=1)]  # [B, C, 1, 1]

    y = g.op("If", [cond2], base="if2", then_branch=g.subgraph("lstm_branch", [vi("if2_then", "norank")], then_b),
             else_branch=g.subgraph("rank4_branch", [vi("if2_else", "norank")], else_b))
    g.nodes.append(oh.make_node("Identity", [y], ["y"]))
    m = g.model([vi("x", ["batch", "sequence"])], [vi("y", ["batch", 1])], opset=15)
    onnx.save(m, str(d / "model.onnx"))
    rng = rng_for(name + "/data")
    cases = [(f"b{B}_s{Sq}", {"x": randn(rng, B, Sq) * 0.3}) for B, Sq in [(1, 512), (2, 256), (3, 320)]]
    return [Model(name, "if_rank",
                  "x [batch, sequence] -> reflect Pad 96 each side -> Unsqueeze -> [B, 1, seq+192]; "
                  "If(Size(Shape(.)) == 3) then Unsqueeze -> [B, 1, 1, seq+192] else Identity (rank 3) "
                  "(silero_vad_16k_op15's pattern); Conv [1, 64] stride 32 -> [B, 8, 1, L]; "
                  "If(Shape[2] == 1) then Squeeze -> Transpose -> LSTM(hidden 6) -> last h -> Linear -> "
                  "Sigmoid [B, 1] else ReduceMean -> [B, 8, 1, 1]. The taken branches are 'then' at run time.",
                  cases)]


# --------------------------------------------------------------------------------------
# 3. tf2onnx_zero_state (+ keras2onnx variant)
# --------------------------------------------------------------------------------------


def build_tf2onnx(d_root: Path, keras: bool) -> Model:
    name = "keras2onnx_zero_state" if keras else "tf2onnx_zero_state"
    d = d_root / name
    fl.clean_dir(d)
    g = G(name)
    F_, H, O = 5, 8, 3
    shp = g.op("Shape", ["input_1"])  # [N, T, F]
    shp32 = g.op("Cast", [shp], to=TP.INT32)
    batch32 = g.op("Slice", [shp32, g.i64([0]), g.i64([1]), g.i64([0])])
    batch = g.op("Cast", [batch32], to=TP.INT64)
    zshape = g.op("Concat", [g.i64([1]), batch, g.i64([H])], axis=0)
    h0 = g.op("ConstantOfShape", [zshape], value=onh.from_array(np.zeros(1, np.float32)))
    c0 = g.op("Expand", [g.f32(np.zeros((1, 1, H))), zshape])
    xt = g.op("Transpose", ["input_1"], perm=[1, 0, 2])
    y, _, _ = g.op("LSTM", [xt, *g.rnn_weights("LSTM", F_, H), "", h0, c0], n_out=3, hidden_size=H)  # [T,1,N,H]
    if keras:
        ysq = g.op("Squeeze", [y, g.i64([1])])  # [T, N, H]
        seq = g.op("Transpose", [ysq], perm=[1, 0, 2])  # [N, T, H]
    else:
        yt = g.op("Transpose", [y], perm=[2, 0, 1, 3])  # [N, T, 1, H]
        n_ = g.op("Gather", [shp, g.i64([0])], axis=0)
        t_ = g.op("Gather", [shp, g.i64([1])], axis=0)
        seq = g.op("Reshape", [yt, g.op("Concat", [n_, t_, g.i64([H])], axis=0)])  # [N, T, H]
    dense = g.op("Add", [g.op("MatMul", [seq, g.rand(H, O)]), g.rand(O, scale=0.1)])
    g.nodes.append(oh.make_node("Identity", [g.op("Tanh", [dense])], ["dense"]))
    m = g.model([vi("input_1", ["unk__7", "unk__8", F_])], [vi("dense", ["unk__9", "unk__10", O])], opset=13)
    onnx.save(m, str(d / "model.onnx"))
    rng = rng_for(name + "/data")
    cases = [(f"n{N}_t{T}", {"input_1": randn(rng, N, T, F_)}) for N, T in [(1, 6), (4, 11), (2, 3)]]
    desc = ("batch-major input_1 [N, T, 5] -> Transpose -> LSTM(hidden 8) whose initial_h is "
            "ConstantOfShape(Concat([1], Cast(Slice(Cast(Shape(x), int32), 0:1), int64), [8])) and initial_c "
            "Expand(zeros [1,1,8], same shape) (tf2onnx's zero state); ")
    if keras:
        desc += "Y -> Squeeze(axes=[1]) -> Transpose back [N, T, 8] (keras2onnx); "
    else:
        desc += ("Y -> Transpose [N, T, 1, 8] -> Reshape to Concat(Gather(Shape(x), 0), Gather(Shape(x), 1), [8]) "
                 "(tf2onnx); ")
    desc += "Dense (MatMul + Add) -> Tanh -> dense [N, T, 3]. Dims named unk__N like tf2onnx."
    return Model(name, "tf2onnx_zero_state", desc, cases)


# --------------------------------------------------------------------------------------
# 4. reverse_by_slice
# --------------------------------------------------------------------------------------


def build_reverse(d_root: Path, kind: str) -> Model:
    name = f"reverse_by_slice_{kind.lower()}"
    d = d_root / name
    fl.clean_dir(d)
    g = G(name)
    F_, H = 4, 5
    extra = {"linear_before_reset": 1} if kind == "GRU" else {}
    nout = {"LSTM": 3, "GRU": 2, "RNN": 2}[kind]

    def rev(t):  # reverse the time axis (1) of a [B, T, ...] tensor
        return g.op("Slice", [t, g.i64([-1]), g.i64([INT64_MIN]), g.i64([1]), g.i64([-1])])

    def run(seq_bt):  # [B, T, F] -> forward RNN -> [B, T, H]
        outs = g.op(kind, [g.op("Transpose", [seq_bt], perm=[1, 0, 2]), *g.rnn_weights(kind, F_, H)],
                    n_out=nout, hidden_size=H, **extra)
        y = g.op("Squeeze", [outs[0], g.i64([1])])  # [T, B, H]
        return g.op("Transpose", [y], perm=[1, 0, 2])

    fwd = run("x")
    bwd = rev(run(rev("x")))
    g.nodes.append(oh.make_node("Concat", [fwd, bwd], ["y"], axis=2))
    m = g.model([vi("x", ["batch", "time", F_])], [vi("y", ["batch", "time", 2 * H])], opset=14)
    onnx.save(m, str(d / "model.onnx"))
    rng = rng_for(name + "/data")
    cases = [(f"b{B}_t{T}", {"x": randn(rng, B, T, F_)}) for B, T in [(1, 7), (3, 4), (2, 12)]]
    return Model(name, "reverse_by_slice",
                 f"A converter's hand-built bidirectional layer: x [batch, time, 4]; backward direction = "
                 f"Slice(starts=[-1], ends=[INT64_MIN], axes=[1], steps=[-1]) over time -> Transpose -> "
                 f"forward {kind}(hidden 5) -> Squeeze -> Transpose -> the same reversing Slice; concatenated "
                 f"with a forward {kind} pass on x: y [batch, time, 10].", cases)


# --------------------------------------------------------------------------------------
# 5. instnorm_if
# --------------------------------------------------------------------------------------


def build_instnorm_if(d: Path) -> list[Model]:
    name = "instnorm_if"
    g = G(name)
    C, K, S, H, O = 8, 64, 32, 6, 4
    n0 = g.op("InstanceNormalization", ["waveform", g.f32([1.3]), g.f32([0.05])], epsilon=1e-5)  # [B, ch, S]
    cond = g.op("Equal", [g.op("Gather", [g.op("Shape", [n0]), g.i64(1)], axis=0), g.i64(1)])
    mono = g.op("If", [cond], base="if_mono",
                then_branch=g.subgraph("squeeze_mono", [vi("mono_then", "norank")],
                                       lambda g: [g.op("Squeeze", [n0, g.i64([1])])]),  # [B, S]
                else_branch=g.subgraph("keep_channels", [vi("mono_else", "norank")],
                                       lambda g: [g.op("Identity", [n0])]))  # [B, ch, S]
    u = g.op("Unsqueeze", [mono, g.i64([1])])  # [B, 1, S]
    conv = g.op("Conv", [u, g.rand(C, 1, K, scale=0.2), g.rand(C, scale=0.1)], kernel_shape=[K], strides=[S])
    pool = g.op("MaxPool", [conv], kernel_shape=[3], strides=[3])
    n1 = g.op("InstanceNormalization", [pool, g.f32(1 + 0.1 * g.rng.standard_normal(C)),
                                        g.f32(0.1 * g.rng.standard_normal(C))], epsilon=1e-5)
    act = g.op("LeakyRelu", [n1], alpha=0.01)  # [B, C, L]
    seq = g.op("Transpose", [act], perm=[2, 0, 1])  # [L, B, C]
    y, _, _ = g.op("LSTM", [seq, *g.rnn_weights("LSTM", C, H, dirs=2)], n_out=3, hidden_size=H,
                   direction="bidirectional")  # [L, 2, B, H]
    yt = g.op("Transpose", [y], perm=[2, 0, 1, 3])  # [B, L, 2, H]
    shp = g.op("Shape", [yt])
    tgt = g.op("Concat", [g.op("Slice", [shp, g.i64([0]), g.i64([2]), g.i64([0])]), g.i64([2 * H])], axis=0)
    feats = g.op("Reshape", [yt, tgt])  # [B, L, 2H]
    logits = g.op("Add", [g.op("MatMul", [feats, g.rand(2 * H, O)]), g.rand(O, scale=0.1)])
    g.nodes.append(oh.make_node("LogSoftmax", [logits], ["scores"], axis=-1))
    m = g.model([vi("waveform", ["batch", "channels", "samples"])], [vi("scores", ["batch", "frames", O])], opset=17)
    onnx.save(m, str(d / "model.onnx"))
    rng = rng_for(name + "/data")
    cases = [(f"b{B}_s{S_}", {"waveform": randn(rng, B, 1, S_) * 0.2}) for B, S_ in [(1, 1600), (2, 3200), (3, 960)]]
    return [Model(name, "instnorm_if",
                  "pyannote-PyanNet-like segmentation: waveform [batch, channels, samples] (channels symbolic, "
                  "1 at run time) -> InstanceNormalization (scale/bias of size 1) -> If(Shape[1] == 1) then "
                  "Squeeze -> [B, S] else Identity (rank 3) -> Unsqueeze -> Conv1d(1->8, k 64, stride 32) -> "
                  "MaxPool 3 -> InstanceNormalization(8) -> LeakyReLU -> bidirectional LSTM(hidden 6) -> "
                  "Reshape [B, L, 12] (target from Shape) -> Linear -> LogSoftmax: scores [B, frames, 4].",
                  cases)]


# --------------------------------------------------------------------------------------
# 6. squeeze_noaxes
# --------------------------------------------------------------------------------------


def build_squeeze_noaxes(d: Path) -> list[Model]:
    name = "squeeze_noaxes"
    g = G(name)
    F_, H = 4, 6
    _, yh, _ = g.op("LSTM", ["x", *g.rnn_weights("LSTM", F_, H)], n_out=3, hidden_size=H)  # [1, B, H]
    logit = g.op("Add", [g.op("MatMul", [yh, g.rand(H, 1)]), g.rand(1, scale=0.1)])  # [1, B, 1]
    sq = g.op("Squeeze", [logit])  # no axes: every size-1 dim goes -> [B] or [] at B == 1
    g.nodes.append(oh.make_node("Sigmoid", [sq], ["prob"]))
    m = g.model([vi("x", ["seq", "batch", F_])], [vi("prob", [None])], opset=13)
    onnx.save(m, str(d / "model.onnx"))
    rng = rng_for(name + "/data")
    cases = [(f"t{T}_b{B}", {"x": randn(rng, T, B, F_)}) for T, B in [(6, 1), (4, 2), (9, 3)]]
    return [Model(name, "squeeze_noaxes",
                  "LSTM classifier x [seq, batch, 4] -> Y_h [1, B, 6] -> MatMul/Add [1, B, 1] -> Squeeze with no "
                  "axes input (opset 13) -> Sigmoid: prob is 0-d at batch 1 and [B] otherwise (declared with "
                  "shape [?] (rank 1, unknown dim) as a PyTorch export of .squeeze() would write it: the 0-d run "
                  "result contradicts the declared rank).", cases)]


# --------------------------------------------------------------------------------------
# 7. packed_unsorted (PyTorch, legacy + dynamo)
# --------------------------------------------------------------------------------------


class PackedUnsorted(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.rnn = nn.LSTM(4, 6, batch_first=True) if kind == "lstm" else nn.GRU(4, 6, batch_first=True)
        self.kind = kind

    def forward(self, x, lengths):
        p = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(p)
        out, _ = pad_packed_sequence(out, batch_first=True)
        h = state[0] if self.kind == "lstm" else state
        return out, h


def torch_export(module: nn.Module, args: tuple, path: Path, exporter: str, input_names, output_names,
                 dynamic_axes=None, dynamic_shapes=None, opset=17) -> None:
    module.eval()
    with fl.quiet():
        if exporter == "legacy":
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                              input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes)
        else:
            torch.onnx.export(module, args, str(path), dynamo=True, dynamic_shapes=dynamic_shapes,
                              input_names=input_names, output_names=output_names)
    model = onnx.load(str(path), load_external_data=False)
    if any(n.metadata_props for n in model.graph.node):
        for n in model.graph.node:
            del n.metadata_props[:]
            n.doc_string = ""
        onnx.save(model, str(path))  # external data references are kept as they are


def export_error_message(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    msg = lines[0] if lines else type(e).__name__
    for i, ln in enumerate(lines):
        if "Exception summary" in ln and i + 1 < len(lines):
            msg += " | " + lines[i + 1]
            break
    return f"{type(e).__name__}: {fl.clean_message(msg)}"


def build_packed(d_root: Path, exporter: str, kind: str) -> Model:
    name = f"packed_unsorted_{exporter}_{kind}"
    d = d_root / name
    fl.clean_dir(d)
    fl.seed_everything(name)
    module = PackedUnsorted(kind).eval()
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    shapes = [(3, 6, [4, 6, 2]), (5, 9, [3, 9, 1, 7, 9])]
    inputs = [(f"b{B}_t{T}_unsorted", torch.randn(B, T, 4, generator=gen), torch.tensor(L, dtype=torch.int64))
              for B, T, L in shapes]
    desc = (f"nn.{'LSTM' if kind == 'lstm' else 'GRU'}(4, 6, batch_first=True) between "
            "pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False) and "
            "pad_packed_sequence(batch_first=True); outputs (padded output [B, T, 6], h_n [1, B, 6]); "
            f"{exporter} exporter" + (" opset 17, dynamic_axes batch/time" if exporter == "legacy" else
                                      ", dynamic_shapes Dim batch/time") +
            "; lengths int64 [B], unsorted, max(lengths) == T (so PyTorch's padded output keeps T steps)")
    _, x0, l0 = inputs[0]
    try:
        if exporter == "legacy":
            torch_export(module, (x0, l0), d / "model.onnx", "legacy", ["x", "lengths"], ["output", "h_n"],
                         dynamic_axes={"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                                       "output": {0: "batch", 1: "time"}, "h_n": {1: "batch"}})
        else:
            B, T = Dim("batch", min=2), Dim("time", min=2)
            torch_export(module, (x0, l0), d / "model.onnx", "dynamo", ["x", "lengths"], ["output", "h_n"],
                         dynamic_shapes=({0: B, 1: T}, {0: B}))
    except Exception as e:  # noqa: BLE001
        shutil.rmtree(d, ignore_errors=True)
        return Model(name, "packed_unsorted", desc, [], export_error=export_error_message(e))
    torch_out = {}
    cases = []
    with torch.no_grad():
        for cname, x, lens in inputs:
            out, h = module(x, lens)
            torch_out[cname] = {"output": fl.to_np(out), "h_n": fl.to_np(h)}
            cases.append((cname, {"x": fl.to_np(x), "lengths": fl.to_np(lens)}))
    return Model(name, "packed_unsorted", desc, cases, torch_outputs=torch_out)


# --------------------------------------------------------------------------------------
# 8. conv_gru_dfn / conv_gru_lookahead (PyTorch, legacy + dynamo)
# --------------------------------------------------------------------------------------


class ConvGRUDFN(nn.Module):
    """DeepFilterNet3-class ERB-gain model: causal Conv2d encoder over (time, freq) with stride 2
    on frequency only, BatchNorm (eval) + ReLU, per-frame flatten -> Linear -> 2-layer GRU ->
    Linear -> decoder -> sigmoid mask per (frame, ERB bin); output = input * mask."""

    def __init__(self, n_freq: int = 32, ch: int = 16, hidden: int = 64, causal: bool = True):
        super().__init__()
        kt = 3
        pad_t = (kt - 1, 0) if causal else ((kt - 1) // 2, (kt - 1) // 2)
        self.pad = nn.ConstantPad2d((0, 0, *pad_t), 0.0)  # (freq_left, freq_right, time_top, time_bottom)
        self.conv0 = nn.Conv2d(1, ch, (kt, 3), stride=(1, 1), padding=(0, 1))
        self.bn0 = nn.BatchNorm2d(ch)
        self.conv1 = nn.Conv2d(ch, ch, (1, 3), stride=(1, 2), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, (1, 3), stride=(1, 2), padding=(0, 1))
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, ch, (1, 3), stride=(1, 2), padding=(0, 1))
        self.bn3 = nn.BatchNorm2d(ch)
        f_out = n_freq // 8
        self.emb_in = nn.Linear(ch * f_out, hidden)
        self.gru = nn.GRU(hidden, hidden, num_layers=2, batch_first=True)
        self.emb_out = nn.Linear(hidden, hidden)
        self.dec = nn.Linear(hidden, n_freq)

    def forward(self, feat):  # [B, 1, T, F]
        e = F.relu(self.bn0(self.conv0(self.pad(feat))))
        e = F.relu(self.bn1(self.conv1(e)))
        e = F.relu(self.bn2(self.conv2(e)))
        e = F.relu(self.bn3(self.conv3(e)))  # [B, C, T, F/8]
        b, c, t, f = e.shape
        x = e.permute(0, 2, 1, 3).reshape(b, t, c * f)
        x = F.relu(self.emb_in(x))
        y, _ = self.gru(x)
        m = torch.sigmoid(self.dec(F.relu(self.emb_out(y))))  # [B, T, F]
        return feat * m.unsqueeze(1)


def build_dfn(d_root: Path, exporter: str, causal: bool, hidden: int) -> Model:
    base = "conv_gru_dfn" if causal else "conv_gru_lookahead"
    name = f"{base}_{exporter}"
    d = d_root / name
    fl.clean_dir(d)
    fl.seed_everything(base)  # same weights for both exporters
    module = ConvGRUDFN(hidden=hidden, causal=causal)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for bn in (module.bn0, module.bn1, module.bn2, module.bn3):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.8, 1.2)
            bn.bias.uniform_(-0.1, 0.1)
    module.eval()
    gen = torch.Generator().manual_seed(zlib.crc32(base.encode()))
    inputs = [(f"b{B}_t{T}", torch.rand(B, 1, T, 32, generator=gen)) for B, T in [(2, 50), (1, 200)]]
    # the first case is the export example: batch 2, so that dynamo does not specialise batch to 1
    desc = (f"DeepFilterNet3-class ERB-gain model: feat [B, 1, T, 32] -> "
            + ("causal time padding ConstantPad2d(time (2, 0)) " if causal else
               "NON-causal (symmetric, 1 frame of lookahead) time padding ConstantPad2d(time (1, 1)) ")
            + "-> Conv2d(1->16, (3, 3)) + BatchNorm + ReLU -> 3 x [Conv2d(16->16, (1, 3), stride (1, 2)) + "
            f"BatchNorm + ReLU] -> per-frame flatten (16 x 4) -> Linear(64, {hidden}) + ReLU -> "
            f"GRU({hidden}, {hidden}, num_layers=2, batch_first) -> Linear + ReLU -> Linear({hidden}, 32) -> "
            "sigmoid mask; output = feat * mask [B, 1, T, 32]. "
            + ("legacy exporter opset 17, dynamic_axes batch/time" if exporter == "legacy" else
               "dynamo exporter, dynamic_shapes Dim batch/time"))
    _, x0 = inputs[0]
    try:
        if exporter == "legacy":
            torch_export(module, (x0,), d / "model.onnx", "legacy", ["feat"], ["enhanced"],
                         dynamic_axes={"feat": {0: "batch", 2: "time"}, "enhanced": {0: "batch", 2: "time"}})
        else:
            torch_export(module, (x0,), d / "model.onnx", "dynamo", ["feat"], ["enhanced"],
                         dynamic_shapes=({0: Dim("batch"), 2: Dim("time", min=2)},))
    except Exception as e:  # noqa: BLE001
        shutil.rmtree(d, ignore_errors=True)
        return Model(name, base, desc, [], export_error=export_error_message(e))
    torch_out, cases = {}, []
    with torch.no_grad():
        for cname, x in inputs:
            torch_out[cname] = {"enhanced": fl.to_np(module(x))}
            cases.append((cname, {"feat": fl.to_np(x)}))
    return Model(name, base, desc, cases, torch_outputs=torch_out,
                 extra={"causal_in_time": causal, "gru_hidden": hidden})


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------


def builders(hidden: int) -> list[tuple[str, Callable[[Path], list[Model]]]]:
    def in_dir(nm, fn):
        def run(root: Path) -> list[Model]:
            d = root / nm
            fl.clean_dir(d)
            return fn(d)
        return run

    items: list[tuple[str, Callable[[Path], list[Model]]]] = [
        ("unnamed_dims", in_dir("unnamed_dims", build_unnamed_dims)),
        ("if_rank", in_dir("if_rank", build_if_rank)),
        ("tf2onnx_zero_state", lambda r: [build_tf2onnx(r, False)]),
        ("keras2onnx_zero_state", lambda r: [build_tf2onnx(r, True)]),
    ]
    for kind in ("LSTM", "GRU", "RNN"):
        items.append((f"reverse_by_slice_{kind.lower()}", lambda r, kind=kind: [build_reverse(r, kind)]))
    items += [
        ("instnorm_if", in_dir("instnorm_if", build_instnorm_if)),
        ("squeeze_noaxes", in_dir("squeeze_noaxes", build_squeeze_noaxes)),
    ]
    for exporter in ("legacy", "dynamo"):
        for kind in ("lstm", "gru"):
            items.append((f"packed_unsorted_{exporter}_{kind}",
                          lambda r, e=exporter, k=kind: [build_packed(r, e, k)]))
    for causal in (True, False):
        for exporter in ("legacy", "dynamo"):
            nm = f"{'conv_gru_dfn' if causal else 'conv_gru_lookahead'}_{exporter}"
            items.append((nm, lambda r, e=exporter, c=causal: [build_dfn(r, e, c, hidden)]))
    return items


def finalize(root: Path, m: Model) -> dict:
    entry: dict[str, Any] = {"name": m.name, "class": m.klass, "description": m.description}
    if m.export_error:
        entry["export_error"] = m.export_error
        entry["cases"] = []
        return entry
    d = root / m.name
    model_path = d / "model.onnx"
    model = onnx.load(str(model_path))
    onnx.checker.check_model(model, full_check=False)
    sess = fl.ort_session(model_path)
    entry["file"] = f"{m.name}/model.onnx"
    if (d / "model.onnx.data").exists():
        entry["external_data"] = f"{m.name}/model.onnx.data"
    entry["opset"] = fl.opset_of(model)
    entry.update(fl.io_decl(onnx.load(str(model_path), load_external_data=False)))
    entry["op_types"] = fl.all_op_types(model)
    entry.update(m.extra)
    cases = []
    for cname, feeds in m.cases:
        outs = fl.ort_run_named(sess, feeds)
        fl.check_against_graph(model, feeds, None)
        rel_in, rel_out = f"{m.name}/{cname}_call0_inputs.npz", f"{m.name}/{cname}_call0_expected.npz"
        fl.save_npz(root / rel_in, feeds)
        fl.save_npz(root / rel_out, outs)
        case = {"name": cname, "calls": [{"inputs": rel_in, "expected": rel_out}], "feed_back": {},
                "atol": m.atol, "rtol": m.rtol,
                "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
                "output_shapes": {k: list(v.shape) for k, v in outs.items()}}
        if m.torch_outputs is not None:
            t = m.torch_outputs[cname]
            rel_t = f"{m.name}/{cname}_call0_torch.npz"
            fl.save_npz(root / rel_t, t)
            case["expected_torch"] = rel_t
            shapes_ok = all(t[k].shape == outs[k].shape for k in t)
            err = fl.max_abs_err([outs[k] for k in t], [t[k] for k in t]) if shapes_ok else None
            agree = shapes_ok and all(np.allclose(outs[k], t[k], atol=m.atol, rtol=m.rtol) for k in t)
            case["onnxruntime_vs_torch"] = {"agree": bool(agree), "max_abs_err": err}
            if not agree:
                case["onnxruntime_vs_torch"]["note"] = (
                    "onnxruntime and PyTorch disagree: " + ("shapes " + str({k: (list(outs[k].shape), list(t[k].shape))
                                                                              for k in t}) if not shapes_ok else
                                                            f"max abs err {err:.3g}"))
        cases.append(case)
    entry["cases"] = cases
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", metavar="PATTERN")
    ap.add_argument("--out", type=Path, default=fl.FIXTURES_DIR / "graphs")
    ap.add_argument("--dfn-hidden", type=int, default=64,
                    help="GRU hidden size of conv_gru_* (default 64; DeepFilterNet3 itself uses 256, "
                         "which makes each model ~3.5 MB)")
    args = ap.parse_args()
    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    old = {}
    if args.only and manifest_path.exists():
        import json
        old = {e["name"]: e for e in json.loads(manifest_path.read_text())["models"]}
    entries: dict[str, dict] = {}
    for nm, build in builders(args.dfn_hidden):
        if not fl.selected(nm, args.only):
            if nm in old:
                entries[nm] = old[nm]
            continue
        for m in build(root):
            e = finalize(root, m)
            entries[m.name] = e
            files = list((root / m.name).glob("*")) if (root / m.name).exists() else []
            size = sum(p.stat().st_size for p in files)
            big = [p.name for p in files if p.stat().st_size > fl.MAX_FIXTURE_BYTES]
            flag = f"  !! files over 300 KiB: {big}" if big else ""
            status = f"EXPORT ERROR {e['export_error'][:150]}" if "export_error" in e else \
                f"{len(e['cases'])} cases"
            dis = [c["name"] for c in e.get("cases", []) if not c.get("onnxruntime_vs_torch", {}).get("agree", True)]
            print(f"{m.name}: {status}, {size / 1024:.0f} KiB{flag}" + (f"; ORT != torch in {dis}" if dis else ""))
    if not args.only:
        keep = set(entries)
        for p in root.iterdir():
            if p.is_dir() and p.name not in keep:
                print(f"removing stale {p}")
                shutil.rmtree(p)
    fl.write_json(manifest_path, {
        "format": "rnn-run graphs fixtures v1",
        "reference": f"onnxruntime {__import__('onnxruntime').__version__}, CPUExecutionProvider, 1 thread",
        "paths": "relative to this manifest's folder",
        "comparison": "|got - expected| <= atol + rtol * |expected| element-wise",
        "classes": {
            "topk_lengths": "covered by packed_unsorted_legacy_lstm / packed_unsorted_legacy_gru: the legacy export "
                            "of enforce_sorted=False sorts the lengths with TopK and reorders the batch with Gather "
                            "(and scatters back with ScatterElements)",
        },
        "models": list(entries.values()),
    })


if __name__ == "__main__":
    main()
