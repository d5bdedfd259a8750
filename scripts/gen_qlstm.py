#!/usr/bin/env python3
"""Generate fixtures/qlstm/: single-node com.microsoft DynamicQuantizeLSTM models with
onnxruntime references.

  fixtures/qlstm/<model>/model.onnx
  fixtures/qlstm/<model>/<case>_call0_{inputs,expected}.npz
  fixtures/qlstm/manifest.json           (the layout of fixtures/graphs/manifest.json)

Each model is one DynamicQuantizeLSTM node (onnxruntime's contrib operator: W is
[num_directions, input_size, 4*hidden] int8 or uint8, R [num_directions, hidden, 4*hidden], with
scales and zero points per tensor or per column) whose weights are initializers; X, and where
the model has them sequence_lens, initial_h and initial_c, are graph inputs. The models cover
forward / reverse / bidirectional, per-tensor and per-column scales, int8 (zero point 0, and a
negative per-tensor one) and uint8 weights (zero points != 128), with and without B, initial
states and peepholes, sequence_lens (an entry of length 0 included), a node without Y (whose
Y_h onnxruntime computes differently), clip + input_forget + non-default activations, batch 1
and 3 (and 5). References: onnxruntime (CPUExecutionProvider, 1 intra-op thread: with more,
onnxruntime's own results change for batch >= 2, see src/qlstm/mod.rs).

Each case also records `float_lstm_max_abs_diff`: how far onnxruntime's float ONNX LSTM with
the dequantized weights is from the quantized node, i.e. how much the dynamic quantization
itself moves the outputs (what an implementation that dequantizes would miss).

Usage: python scripts/gen_qlstm.py [--only PATTERN ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as onh

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixturelib as fl  # noqa: E402

ATOL, RTOL = 1e-5, 1e-4
OPSET = 17


@dataclass
class Spec:
    name: str
    description: str
    direction: str = "forward"
    wtype: str = "int8"  # int8 | uint8
    per_column: bool = False
    input_size: int = 5
    hidden: int = 4
    bias: bool = True
    peepholes: bool = False
    states: bool = False
    lens: bool = False
    want_y: bool = True
    zero_point: int | None = None  # per-tensor zero point for both W and R (default: 0 / random)
    attrs: dict[str, Any] = field(default_factory=dict)
    # (case name, seq_length, batch, sequence_lens or None)
    cases: list[tuple[str, int, int, list[int] | None]] = field(default_factory=list)


SPECS = [
    Spec("fwd_i8_tensor", "forward, int8 weights, per-tensor scales, B, no initial states",
         cases=[("t5_b1", 5, 1, None), ("t7_b3", 7, 3, None)]),
    Spec("fwd_u8_column", "forward, uint8 weights (zero point 131, per column), per-column scales, "
         "initial_h/initial_c", wtype="uint8", per_column=True, states=True,
         cases=[("t6_b1", 6, 1, None), ("t4_b3", 4, 3, None)]),
    Spec("rev_u8_tensor", "reverse, uint8 weights, per-tensor scales and zero points, no B",
         direction="reverse", wtype="uint8", bias=False,
         cases=[("t5_b1", 5, 1, None), ("t8_b3", 8, 3, None)]),
    Spec("rev_i8_column_states", "reverse, int8 weights, per-column scales, initial states, peepholes",
         direction="reverse", per_column=True, states=True, peepholes=True,
         cases=[("t6_b1", 6, 1, None), ("t5_b3", 5, 3, None)]),
    Spec("bidir_i8_tensor", "bidirectional, int8 weights, per-tensor scales (one per direction)",
         direction="bidirectional",
         cases=[("t5_b1", 5, 1, None), ("t6_b3", 6, 3, None)]),
    Spec("bidir_u8_column_states", "bidirectional, uint8 per-column (zero point 125), initial states, "
         "peepholes, hidden 16, input 12", direction="bidirectional", wtype="uint8", per_column=True,
         states=True, peepholes=True, input_size=12, hidden=16,
         cases=[("t9_b1", 9, 1, None), ("t7_b3", 7, 3, None), ("t4_b5", 4, 5, None)]),
    Spec("bidir_u8_lens", "bidirectional, uint8 per-tensor, sequence_lens (one entry of length 0, "
         "none of the full length in one case), initial states", direction="bidirectional",
         wtype="uint8", states=True, lens=True,
         cases=[("t6_b3_lens", 6, 3, [6, 3, 0]), ("t7_b3_short", 7, 3, [2, 5, 4])]),
    Spec("fwd_u8_lens_no_y", "forward, uint8 per-tensor, sequence_lens, outputs Y_h and Y_c only "
         "(no Y: onnxruntime then feeds finished entries' last state, not zeros, into the next "
         "step's quantization range)", wtype="uint8", lens=True, want_y=False,
         cases=[("t6_b3_lens", 6, 3, [6, 2, 4]), ("t5_b1", 5, 1, [5])]),
    Spec("fwd_i8_negative_zp", "forward, int8 weights with per-tensor zero point -3 for W and R",
         zero_point=-3, cases=[("t5_b3", 5, 3, None)]),
    Spec("fwd_u8_clip_forget_acts", "forward, uint8 per-column, clip 0.8, input_forget, activations "
         "HardSigmoid(alpha 0.25, beta 0.45) / Tanh / Relu", wtype="uint8", per_column=True,
         attrs={"clip": 0.8, "input_forget": 1, "activations": ["HardSigmoid", "Tanh", "Relu"],
                "activation_alpha": [0.25], "activation_beta": [0.45]},
         cases=[("t6_b3", 6, 3, None)]),
    Spec("bidir_i8_column_h32", "bidirectional, int8 per-column, hidden 32, input 24, B, initial "
         "states", direction="bidirectional", per_column=True, states=True, input_size=24, hidden=32,
         cases=[("t12_b1", 12, 1, None), ("t10_b3", 10, 3, None)]),
]


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()) & 0x7FFFFFFF)


def quantized_weights(rng, spec: Spec, k: int, dirs: int):
    """Weights [dirs, k, 4H], scales and zero points ([dirs] or [dirs, 4H]); scaled so that the
    dequantized weights have a std of about 1/sqrt(k)."""
    g = 4 * spec.hidden
    qshape = (dirs, g) if spec.per_column else (dirs,)
    if spec.wtype == "int8":
        w = rng.integers(-127, 128, (dirs, k, g)).astype(np.int8)
        zp = np.zeros(qshape, np.int8)
        if spec.zero_point is not None:
            zp = np.full(qshape, spec.zero_point, np.int8)
    else:
        w = rng.integers(0, 256, (dirs, k, g)).astype(np.uint8)
        if spec.per_column:  # onnxruntime wants one value for all columns
            zp = np.full(qshape, int(rng.integers(118, 138)), np.uint8)
        else:
            zp = rng.integers(118, 138, qshape).astype(np.uint8)
    scale = (rng.uniform(0.6, 1.4, qshape) / (73.0 * np.sqrt(k))).astype(np.float32)
    return w, scale, zp


def dequantized(w, scale, zp, per_column: bool) -> np.ndarray:
    w = w.astype(np.float32) - (zp[..., None, :] if per_column else zp[:, None, None]).astype(np.float32)
    return (w * (scale[:, None, :] if per_column else scale[:, None, None])).astype(np.float32)


def attr_list(spec: Spec) -> dict[str, Any]:
    return {"direction": spec.direction, "hidden_size": spec.hidden, **spec.attrs}


def build(spec: Spec, d: Path) -> tuple[onnx.ModelProto, onnx.ModelProto, dict]:
    """The quantized model, the float LSTM with the dequantized weights, and the weights."""
    rng = rng_for(spec.name)
    dirs = 2 if spec.direction == "bidirectional" else 1
    h, i = spec.hidden, spec.input_size
    w, ws, wz = quantized_weights(rng, spec, i, dirs)
    r, rs, rz = quantized_weights(rng, spec, h, dirs)
    b = (rng.standard_normal((dirs, 8 * h)) * 0.2).astype(np.float32) if spec.bias else None
    p = (rng.standard_normal((dirs, 3 * h)) * 0.3).astype(np.float32) if spec.peepholes else None
    inits = [onh.from_array(w, "W"), onh.from_array(r, "R"), onh.from_array(ws, "W_scale"),
             onh.from_array(wz, "W_zero_point"), onh.from_array(rs, "R_scale"), onh.from_array(rz, "R_zero_point")]
    if b is not None:
        inits.append(onh.from_array(b, "B"))
    if p is not None:
        inits.append(onh.from_array(p, "P"))
    ins = ["X", "W", "R", "B" if b is not None else "", "sequence_lens" if spec.lens else "",
           "initial_h" if spec.states else "", "initial_c" if spec.states else "",
           "P" if p is not None else "", "W_scale", "W_zero_point", "R_scale", "R_zero_point"]
    outs = ["Y" if spec.want_y else "", "Y_h", "Y_c"]
    node = oh.make_node("DynamicQuantizeLSTM", ins, outs, name="qlstm", domain="com.microsoft",
                        **attr_list(spec))
    g_in = [oh.make_tensor_value_info("X", TP.FLOAT, ["seq", "batch", i])]
    if spec.lens:
        g_in.append(oh.make_tensor_value_info("sequence_lens", TP.INT32, ["batch"]))
    if spec.states:
        g_in += [oh.make_tensor_value_info(n, TP.FLOAT, [dirs, "batch", h]) for n in ("initial_h", "initial_c")]
    g_out = []
    if spec.want_y:
        g_out.append(oh.make_tensor_value_info("Y", TP.FLOAT, ["seq", dirs, "batch", h]))
    g_out += [oh.make_tensor_value_info(n, TP.FLOAT, [dirs, "batch", h]) for n in ("Y_h", "Y_c")]
    graph = oh.make_graph([node], spec.name, g_in, g_out, inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", OPSET), oh.make_opsetid("com.microsoft", 1)],
                          producer_name="rnn-run scripts/gen_qlstm.py")
    model.ir_version = 8

    # The same LSTM in float: ONNX layout [dirs, 4H, k], dequantized.
    wf = np.ascontiguousarray(dequantized(w, ws, wz, spec.per_column).transpose(0, 2, 1))
    rf = np.ascontiguousarray(dequantized(r, rs, rz, spec.per_column).transpose(0, 2, 1))
    f_inits = [onh.from_array(wf, "W"), onh.from_array(rf, "R")] + [t for t in inits if t.name in ("B", "P")]
    f_node = oh.make_node("LSTM", ins[:8], outs, name="lstm", **attr_list(spec))
    f_graph = oh.make_graph([f_node], spec.name + "_float", g_in, g_out, f_inits)
    f_model = oh.make_model(f_graph, opset_imports=[oh.make_opsetid("", OPSET)])
    f_model.ir_version = 8
    return model, f_model, {"dirs": dirs}


def feeds_for(spec: Spec, rng, t: int, batch: int, lens, dirs: int) -> dict[str, np.ndarray]:
    feeds = {"X": rng.standard_normal((t, batch, spec.input_size)).astype(np.float32)}
    if spec.lens:
        feeds["sequence_lens"] = np.array(lens, np.int32)
    if spec.states:
        feeds["initial_h"] = (rng.standard_normal((dirs, batch, spec.hidden)) * 0.5).astype(np.float32)
        feeds["initial_c"] = (rng.standard_normal((dirs, batch, spec.hidden)) * 0.5).astype(np.float32)
    return feeds


def finalize(root: Path, spec: Spec) -> dict:
    d = root / spec.name
    fl.clean_dir(d)
    model, f_model, info = build(spec, d)
    model_path = d / "model.onnx"
    onnx.save(model, str(model_path))
    onnx.checker.check_model(onnx.load(str(model_path)), full_check=False)
    sess = fl.ort_session(model_path)
    f_path = Path("/tmp") / f"gen_qlstm_{spec.name}_float.onnx"
    onnx.save(f_model, str(f_path))
    f_sess = fl.ort_session(f_path)
    entry: dict[str, Any] = {"name": spec.name, "description": spec.description,
                             "file": f"{spec.name}/model.onnx", "opset": OPSET,
                             "domains": {"": OPSET, "com.microsoft": 1}}
    entry.update(fl.io_decl(model))
    entry["op_types"] = fl.all_op_types(model)
    entry["node"] = {"attributes": attr_list(spec), "weights": spec.wtype,
                     "scales": "per column" if spec.per_column else "per tensor",
                     "input_size": spec.input_size, "hidden_size": spec.hidden,
                     "B": spec.bias, "P": spec.peepholes, "initial_states": spec.states,
                     "sequence_lens": spec.lens, "Y": spec.want_y}
    rng = rng_for(spec.name + "/inputs")
    cases = []
    for cname, t, batch, lens in spec.cases:
        feeds = feeds_for(spec, rng, t, batch, lens, info["dirs"])
        outs = fl.ort_run_named(sess, feeds)
        f_outs = fl.ort_run_named(f_sess, feeds)
        fl.check_against_graph(model, feeds, None)
        rel_in, rel_out = f"{spec.name}/{cname}_call0_inputs.npz", f"{spec.name}/{cname}_call0_expected.npz"
        fl.save_npz(root / rel_in, feeds)
        fl.save_npz(root / rel_out, outs)
        cases.append({"name": cname, "calls": [{"inputs": rel_in, "expected": rel_out}], "feed_back": {},
                      "atol": ATOL, "rtol": RTOL,
                      "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
                      "output_shapes": {k: list(v.shape) for k, v in outs.items()},
                      "float_lstm_max_abs_diff": fl.max_abs_err([f_outs[k] for k in outs], list(outs.values()))})
    f_path.unlink()
    entry["cases"] = cases
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", metavar="PATTERN")
    ap.add_argument("--out", type=Path, default=fl.FIXTURES_DIR / "qlstm")
    args = ap.parse_args()
    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    old = {}
    if args.only and manifest_path.exists():
        old = {e["name"]: e for e in json.loads(manifest_path.read_text())["models"]}
    entries: dict[str, dict] = {}
    for spec in SPECS:
        if not fl.selected(spec.name, args.only):
            if spec.name in old:
                entries[spec.name] = old[spec.name]
            continue
        e = finalize(root, spec)
        entries[spec.name] = e
        size = sum(p.stat().st_size for p in (root / spec.name).glob("*"))
        diffs = ", ".join(f"{c['name']} {c['float_lstm_max_abs_diff']:.2g}" for c in e["cases"])
        print(f"{spec.name}: {len(e['cases'])} cases, {size / 1024:.0f} KiB; float LSTM vs quantized: {diffs}")
    if not args.only:
        keep = set(entries)
        for p in root.iterdir():
            if p.is_dir() and p.name not in keep:
                print(f"removing stale {p}")
                shutil.rmtree(p)
    ort_version = __import__("onnxruntime").__version__
    fl.write_json(manifest_path, {
        "format": "rnn-run qlstm fixtures v1",
        "reference": f"onnxruntime {ort_version}, CPUExecutionProvider, 1 thread",
        "paths": "relative to this manifest's folder",
        "comparison": "|got - expected| <= atol + rtol * |expected| element-wise",
        "models": list(entries.values()),
    })


if __name__ == "__main__":
    main()
