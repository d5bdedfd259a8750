#!/usr/bin/env python3
"""The public benchmark set: synthetic models in the shapes and export styles of third-party
models rnn-run was slow on (issue 23), written to a folder with one input set each.

    pip install numpy onnx onnxruntime
    python scripts/gen_bench_models.py                  # into target/bench-models
    python scripts/bench_vs_onnxruntime.py --models-only --bench-set target/bench-models

Every model is built with onnx.helper from seeded random weights (nothing downloaded):

- madmom_beats: a madmom-style beat tracker. 2-D input [600, 266]; three bidirectional layers
  as six single-direction LSTMs, hidden 25, with peepholes; each backward pass runs forward on a
  `Slice(step=-1)` reversal of its input and reverses its output back; a Dense + sigmoid head.
- crnn_concat_weights: a PP-OCR-style CRNN. Depthwise/pointwise convolutions with hard-swish
  down to a [T=40, batch 2, 96] sequence, then 2 bidirectional LSTMs hidden 64 whose W, R and B
  are `Concat`/`Unsqueeze` outputs of per-gate constants (as paddle2onnx writes them), a
  Gemm-like head.
- captcha_conv_bigru: a captcha CRNN: a conv stack, then 2 bidirectional GRUs hidden 128.
- qlstm_h768_b3: three LSTM layers hidden 768, batch 3, 80 steps, quantized by onnxruntime's
  `quantize_dynamic` (DynamicQuantizeLSTM, int8 weights).
- qlstm_h512_b1_states: three LSTM layers hidden 512, batch 1, 20 steps, initial states given as
  inputs, quantized the same way.

manifest.json lists each model with its input file (an .npz keyed by input name).

`--qlstm-sweep` writes instead a grid of quantized LSTM stacks (hidden sizes on and off the
8/16-lane multiples, batch 1 to 16, 1 to 3 layers, 50 steps) to check that the integer path holds
its speed at shapes other than the two above:

    python scripts/gen_bench_models.py --qlstm-sweep --out target/bench-qlstm
    python scripts/bench_vs_onnxruntime.py --models-only --bench-set target/bench-qlstm
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OPSET = 17


class Graph:
    """Nodes and initializers of one graph, with fresh names."""

    def __init__(self, seed):
        self.nodes, self.inits, self.n = [], [], 0
        self.rng = np.random.default_rng(seed)

    def name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, value, prefix="c"):
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def rand(self, shape, scale, prefix="w"):
        return self.const(self.rng.uniform(-scale, scale, shape).astype(np.float32), prefix)

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def model(self, name, inputs, outputs):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = 8
        return m


def reverse_time(g, x):
    """`Slice(step=-1)` over axis 0, as exporters write a reversal."""
    big = np.iinfo(np.int64).max
    return g.op("Slice", [x, g.const(np.array([-1], np.int64)), g.const(np.array([-big], np.int64)),
                          g.const(np.array([0], np.int64)), g.const(np.array([-1], np.int64))])


def madmom_beats(seed=1, steps=600, features=266, hidden=25):
    g = Graph(seed)
    x = "x"  # [T, features]
    k = 1 / np.sqrt(hidden)
    for layer in range(3):
        width = features if layer == 0 else 2 * hidden
        outs = []
        for backward in (False, True):
            seq = reverse_time(g, x) if backward else x
            seq3 = g.op("Unsqueeze", [seq, g.const(np.array([1], np.int64))])  # [T, 1, width]
            w = g.rand((1, 4 * hidden, width), k)
            r = g.rand((1, 4 * hidden, hidden), k)
            b = g.rand((1, 8 * hidden), k)
            p = g.rand((1, 3 * hidden), k)
            y, _, _ = g.op("LSTM", [seq3, w, r, b, "", "", "", p], 3, hidden_size=hidden)
            y = g.op("Squeeze", [y, g.const(np.array([1, 2], np.int64))])  # [T, hidden]
            outs.append(reverse_time(g, y) if backward else y)
        x = g.op("Concat", outs, axis=1)
    logits = g.op("Add", [g.op("MatMul", [x, g.rand((2 * hidden, 1), k)]), g.rand((1,), k)])
    out = g.op("Sigmoid", [logits])
    g.nodes[-1].output[0] = "beats"
    m = g.model("madmom_beats", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, features])],
                [helper.make_tensor_value_info("beats", TensorProto.FLOAT, None)])
    feed = {"x": np.random.default_rng(seed + 100).standard_normal((steps, features)).astype(np.float32)}
    return m, feed


def hard_swish(g, x):
    return g.op("HardSwish", [x])


def conv(g, x, cin, cout, k, stride=(1, 1), group=1, act=True):
    w = g.rand((cout, cin // group, k, k), 1 / np.sqrt(cin // group * k * k))
    b = g.rand((cout,), 0.1)
    y = g.op("Conv", [x, w, b], kernel_shape=[k, k], strides=list(stride), pads=[k // 2] * 4,
             group=group)
    return hard_swish(g, y) if act else y


def concat_weights_lstm(g, seq, width, hidden, direction):
    """An LSTM whose W, R and B are Concat outputs of per-gate constants (paddle2onnx style)."""
    k = 1 / np.sqrt(hidden)
    dirs = 2 if direction == "bidirectional" else 1
    gate = lambda cols: g.op("Concat", [g.rand((dirs, hidden, cols), k) for _ in range(4)], axis=1)
    w, r = gate(width), gate(hidden)
    b = g.op("Concat", [g.rand((dirs, hidden), k) for _ in range(8)], axis=1)
    y, _, _ = g.op("LSTM", [seq, w, r, b], 3, hidden_size=hidden, direction=direction)
    return y  # [T, dirs, batch, hidden]


def bidir_to_features(g, y, hidden):
    """[T, 2, batch, hidden] -> [T, batch, 2·hidden]."""
    y = g.op("Transpose", [y], perm=[0, 2, 1, 3])
    return g.op("Reshape", [y, g.const(np.array([0, 0, 2 * hidden], np.int64))])


def crnn_concat_weights(seed=2, batch=2, height=32, width=160, hidden=64):
    g = Graph(seed)
    x = conv(g, "image", 3, 16, 3, stride=(2, 2))
    chans = 16
    for cout, stride in [(24, (2, 1)), (40, (2, 2)), (64, (2, 1)), (96, (2, 1))]:
        x = conv(g, x, chans, chans, 3, stride=stride, group=chans)  # depthwise
        x = conv(g, x, chans, cout, 1)  # pointwise
        chans = cout
    # [batch, 96, 1, 40] -> [40, batch, 96]
    x = g.op("Squeeze", [x, g.const(np.array([2], np.int64))])
    seq = g.op("Transpose", [x], perm=[2, 0, 1])
    width_in = chans
    for _ in range(2):
        y = concat_weights_lstm(g, seq, width_in, hidden, "bidirectional")
        seq = bidir_to_features(g, y, hidden)
        width_in = 2 * hidden
    out = g.op("Softmax", [g.op("Add", [g.op("MatMul", [seq, g.rand((2 * hidden, 97), 0.1)]),
                                       g.rand((97,), 0.1)])], axis=-1)
    g.nodes[-1].output[0] = "probs"
    m = g.model("crnn_concat_weights",
                [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, height, width])],
                [helper.make_tensor_value_info("probs", TensorProto.FLOAT, None)])
    feed = {"image": np.random.default_rng(seed + 100).standard_normal((batch, 3, height, width)).astype(np.float32)}
    return m, feed


def captcha_conv_bigru(seed=3, batch=1, height=64, width=200, hidden=128):
    g = Graph(seed)
    x, chans = "image", 1
    for cout in (32, 64, 96):
        x = g.op("Relu", [conv(g, x, chans, cout, 3, act=False)])
        x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        chans = cout
    # [batch, 96, 8, 25] -> [25, batch, 96·8]
    x = g.op("Transpose", [x], perm=[3, 0, 1, 2])
    seq = g.op("Reshape", [x, g.const(np.array([0, 0, -1], np.int64))])
    width_in = chans * (height // 8)
    k = 1 / np.sqrt(hidden)
    for _ in range(2):
        y, _ = g.op("GRU", [seq, g.rand((2, 3 * hidden, width_in), k), g.rand((2, 3 * hidden, hidden), k),
                            g.rand((2, 6 * hidden), k)], 2, hidden_size=hidden,
                    direction="bidirectional", linear_before_reset=1)
        seq = bidir_to_features(g, y, hidden)
        width_in = 2 * hidden
    g.op("MatMul", [seq, g.rand((2 * hidden, 37), 0.1)])
    g.nodes[-1].output[0] = "logits"
    m = g.model("captcha_conv_bigru",
                [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 1, height, width])],
                [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)])
    feed = {"image": np.random.default_rng(seed + 100).standard_normal((batch, 1, height, width)).astype(np.float32)}
    return m, feed


def stacked_lstm(seed, hidden, batch, steps, layers, states):
    """`layers` LSTMs, hidden `hidden`, input size `hidden`; with `states`, each layer's
    initial H and C are graph inputs."""
    g = Graph(seed)
    k = 1 / np.sqrt(hidden)
    x = "x"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, batch, hidden])]
    rng = np.random.default_rng(seed + 100)
    feed = {"x": rng.standard_normal((steps, batch, hidden)).astype(np.float32)}
    for layer in range(layers):
        ins = [x, g.rand((1, 4 * hidden, hidden), k), g.rand((1, 4 * hidden, hidden), k),
               g.rand((1, 8 * hidden), k)]
        if states:
            for s in ("h", "c"):
                name = f"{s}0_{layer}"
                inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, batch, hidden]))
                feed[name] = (0.5 * rng.standard_normal((1, batch, hidden))).astype(np.float32)
            ins += ["", "h0_%d" % layer, "c0_%d" % layer]
        y, _, _ = g.op("LSTM", ins, 3, hidden_size=hidden)
        x = g.op("Squeeze", [y, g.const(np.array([1], np.int64))])
    g.nodes[-1].output[0] = "y"
    m = g.model(f"lstm_h{hidden}", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return m, feed


# (hidden, batch, layers): hidden sizes on and off the 8- and 16-lane multiples, batch 1 to 16,
# 1 to 3 layers.
QLSTM_SWEEP = [
    (20, 1, 1), (64, 1, 2), (100, 1, 1), (100, 16, 3), (130, 5, 2), (250, 1, 3),
    (250, 7, 2), (300, 4, 3), (384, 2, 1), (512, 16, 1), (700, 1, 2), (1000, 8, 1),
]


def quantized(model, out_path, tmp_path):
    """onnxruntime's quantize_dynamic, as users run it (LSTM -> DynamicQuantizeLSTM)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx.save(model, str(tmp_path))
    quantize_dynamic(str(tmp_path), str(out_path), weight_type=QuantType.QInt8)
    tmp_path.unlink()
    ops = {n.op_type for n in onnx.load(str(out_path)).graph.node}
    assert "DynamicQuantizeLSTM" in ops, f"quantize_dynamic left {ops}"


def check(path, feed):
    """The model runs on onnxruntime and gives finite outputs."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for o in sess.run(None, feed):
        assert np.isfinite(o).all(), f"{path}: non-finite outputs"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-models"))
    ap.add_argument("--only", nargs="*", default=[], help="names to generate (default: all)")
    ap.add_argument("--qlstm-sweep", action="store_true",
                    help="write the grid of quantized LSTM stacks instead of the set")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    makers = {
        "madmom_beats": lambda: madmom_beats(),
        "crnn_concat_weights": lambda: crnn_concat_weights(),
        "captcha_conv_bigru": lambda: captcha_conv_bigru(),
        "qlstm_h768_b3": lambda: stacked_lstm(4, 768, 3, 80, 3, states=False),
        "qlstm_h512_b1_states": lambda: stacked_lstm(5, 512, 1, 20, 3, states=True),
    }
    if args.qlstm_sweep:
        makers = {
            f"qlstm_h{h}_b{b}_l{l}": (lambda h=h, b=b, l=l, k=k: stacked_lstm(10 + k, h, b, 50, l, states=False))
            for k, (h, b, l) in enumerate(QLSTM_SWEEP)
        }
    manifest = []
    for name, make in makers.items():
        if args.only and name not in args.only:
            continue
        model, feed = make()
        path = out / f"{name}.onnx"
        if name.startswith("qlstm"):
            quantized(model, path, out / f"{name}.float.onnx")
        else:
            onnx.save(model, str(path))
        np.savez(out / f"{name}.npz", **feed)
        check(path, feed)
        manifest.append({"name": name, "model": path.name, "inputs": f"{name}.npz"})
        print(f"wrote {path}")
    old = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else []
    names = {m["name"] for m in manifest}
    manifest = [m for m in old if m["name"] not in names] + manifest
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
