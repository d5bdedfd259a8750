#!/usr/bin/env python3
"""Generate the hostile and unusual graphs of issue 19 (fixtures/robustness/graph_*.onnx).

Each is small. Those onnxruntime runs get their input and onnxruntime's output beside them
(`<name>.npz`: `in_<input>` and `out_<output>` arrays); those it refuses must be refused by
rnn-run too, naming what is wrong (tests/graphs.rs, `hostile_fixtures`).

  graph_reversing_slice_after_lstm   LSTM (forward) -> Squeeze -> Slice(-1, -INT64_MAX, step -1)
  graph_reversing_slice_to_t_plus_1  the same with ends = -(T+1)
  graph_reshape_2p32                 Reshape to [2^32+3, -1]          (refused)
  graph_reshape_2p40                 Reshape to [2^40, -1]            (refused)
  graph_constant_of_shape_2p32       ConstantOfShape([2^32+3, 2, 5])  (refused)
  graph_tile_2p32                    Tile repeats [2^32+1, 1, 1]      (refused)
  graph_expand_2p32                  Expand to [2^32+1, 3, 2, 5]      (refused)
  graph_reshape_shape_plus_2p32      Reshape to Shape(x) + [2^32, 0]  (refused)
  graph_reshape_sum_2p32             Reshape to a + a + [5, -1], a = [2^31-1, 0] (refused)
  graph_constant_of_shape_shape_plus_2p32  ConstantOfShape(Shape(x) + [2^32, 0]) (refused)
  graph_expand_shape_plus_2p32       Expand to Shape(x) + [2^32, 0, 0] (refused)
  graph_tile_shape_plus_2p32         Tile repeats Shape(x) / Shape(x) + [2^32, 0, 0] (refused)
  graph_reshape_scalar_input         Reshape to [k, -1], k a scalar input (refused when
                                     k = 2^32 + 3: graph_reshape_scalar_input.npz holds x, k)
  graph_constant_of_shape_input      ConstantOfShape(k), k an int64 [3] input (refused at run)
  graph_expand_input                 Expand(x, k), k an int64 [4] input (refused at run)
  graph_tile_input                   Tile(x, k), k an int64 [3] input (refused at run)
  graph_two_writers                  two nodes write 'y'              (refused)
  graph_attribute_twice              LSTM with hidden_size 6 then 7   (refused)
  graph_opset_999                    default-domain opset 999         (refused)
  graph_pad_crop_time                Pad with pads [-1, 0, 0, -2, 0, 0] before an LSTM
  graph_slice_int32_min              Slice(-1, INT32_MIN, step -1) over a symbolic time axis
  graph_initializer_default          an initializer also listed as an input (x + b)
  graph_slice_negative_step_clamped  Slice starts [-T-5, 3], ends [-2^31+3, 0], steps [-1, -2]
                                     over a symbolic T (the spec clamps the start to 0: [x[0]])

Usage: python scripts/gen_hostile_graphs.py [--out DIR]   (onnx, numpy, onnxruntime as pinned in
scripts/requirements.txt)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
I64_MAX = 2**63 - 1
I32_MIN = -(2**31)


def i64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def f32(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def model(nodes, inputs, outputs, inits=(), opset=18, ir=8):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="rnn-run tests")
    m.ir_version = ir
    return m


def fin(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def fout(name):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def lstm_weights(rng, h, i):
    return [
        f32("W", rng.uniform(-1, 1, (1, 4 * h, i))),
        f32("R", rng.uniform(-1, 1, (1, 4 * h, h))),
        f32("B", rng.uniform(-0.5, 0.5, (1, 8 * h))),
    ]


def reversing_slice(rng, end):
    t, b, i, h = 5, 2, 4, 3
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y"], name="lstm", hidden_size=h),
        helper.make_node("Squeeze", ["Y", "axes1"], ["Ysq"], name="squeeze"),
        helper.make_node("Slice", ["Ysq", "s", "e", "a", "st"], ["y"], name="flip"),
    ]
    inits = lstm_weights(rng, h, i) + [i64("axes1", [1]), i64("s", [-1]), i64("e", [end]), i64("a", [0]), i64("st", [-1])]
    m = model(nodes, [fin("x", [t, b, i])], [fout("y")], inits)
    return m, {"x": rng.uniform(-2, 2, (t, b, i)).astype(np.float32)}


def x_model(nodes, inits, opset=18):
    return model(nodes, [fin("x", [3, 10])], [fout("y")], inits, opset=opset)


def generate(rng):
    x = {"x": rng.uniform(-1, 1, (3, 10)).astype(np.float32)}
    yield "graph_reversing_slice_after_lstm", *reversing_slice(rng, -I64_MAX)
    yield "graph_reversing_slice_to_t_plus_1", *reversing_slice(rng, -6)
    yield "graph_reshape_2p32", x_model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape_big")], [i64("shape", [2**32 + 3, -1])]), None
    yield "graph_reshape_2p40", x_model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape_big")], [i64("shape", [2**40, -1])]), None
    fill = helper.make_node("ConstantOfShape", ["shape"], ["y"], name="fill", value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))
    yield "graph_constant_of_shape_2p32", x_model([fill], [i64("shape", [2**32 + 3, 2, 5])]), None
    x3 = lambda nodes, inits: model(nodes, [fin("x", [3, 2, 5])], [fout("y")], inits)
    yield "graph_tile_2p32", x3([helper.make_node("Tile", ["x", "repeats"], ["y"], name="tile_big")], [i64("repeats", [2**32 + 1, 1, 1])]), None
    yield "graph_expand_2p32", x3([helper.make_node("Expand", ["x", "shape"], ["y"], name="expand_big")], [i64("shape", [2**32 + 1, 3, 2, 5])]), None
    # Shape values computed from several values: each one fits in 32 bits or is added to one
    # computed from the input's shape, so no constant alone is out of range of the shape.
    shape_plus = [helper.make_node("Shape", ["x"], ["s"], name="shape"), helper.make_node("Add", ["s", "k"], ["s2"], name="add")]
    yield "graph_reshape_shape_plus_2p32", x_model(shape_plus + [helper.make_node("Reshape", ["x", "s2"], ["y"], name="reshape_big")], [i64("k", [2**32, 0])]), None
    sums = [helper.make_node("Add", ["a", "a"], ["b"], name="twice"), helper.make_node("Add", ["b", "c"], ["s2"], name="plus")]
    yield "graph_reshape_sum_2p32", x_model(sums + [helper.make_node("Reshape", ["x", "s2"], ["y"], name="reshape_big")], [i64("a", [2**31 - 1, 0]), i64("c", [5, -1])]), None
    fill = helper.make_node("ConstantOfShape", ["s2"], ["y"], name="fill", value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))
    yield "graph_constant_of_shape_shape_plus_2p32", x_model(shape_plus + [fill], [i64("k", [2**32, 0])]), None
    yield "graph_expand_shape_plus_2p32", x3(shape_plus + [helper.make_node("Expand", ["x", "s2"], ["y"], name="expand_big")], [i64("k", [2**32, 0, 0])]), None
    ones = [helper.make_node("Shape", ["x"], ["s"], name="shape"), helper.make_node("Div", ["s", "s"], ["one"], name="ones"), helper.make_node("Add", ["one", "k"], ["r"], name="add")]
    yield "graph_tile_shape_plus_2p32", x3(ones + [helper.make_node("Tile", ["x", "r"], ["y"], name="tile_big")], [i64("k", [2**32, 0, 0])]), None
    nodes = [
        helper.make_node("Unsqueeze", ["k", "zero"], ["k1"], name="unsqueeze"),
        helper.make_node("Concat", ["k1", "minus_one"], ["s2"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "s2"], ["y"], name="reshape_big"),
    ]
    m = model(nodes, [fin("x", [3, 10]), helper.make_tensor_value_info("k", TensorProto.INT64, [])], [fout("y")], [i64("zero", [0]), i64("minus_one", [-1])])
    yield "graph_reshape_scalar_input", m, "inputs only"
    k = lambda n: helper.make_tensor_value_info("k", TensorProto.INT64, [n])
    fill = helper.make_node("ConstantOfShape", ["k"], ["y"], name="fill", value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))
    yield "graph_constant_of_shape_input", model([fill], [k(3)], [fout("y")]), None
    yield "graph_expand_input", model([helper.make_node("Expand", ["x", "k"], ["y"], name="expand")], [fin("x", [3, 2, 5]), k(4)], [fout("y")]), None
    yield "graph_tile_input", model([helper.make_node("Tile", ["x", "k"], ["y"], name="tile")], [fin("x", [3, 2, 5]), k(3)], [fout("y")]), None
    two = [helper.make_node("Relu", ["x"], ["y"], name="first"), helper.make_node("Neg", ["x"], ["y"], name="second")]
    yield "graph_two_writers", x_model(two, []), None
    lstm = helper.make_node("LSTM", ["x3", "W", "R", "B"], ["Y"], name="lstm", hidden_size=6)
    lstm.attribute.append(helper.make_attribute("hidden_size", 7))
    m = model([lstm], [fin("x3", [2, 1, 4])], [fout("Y")], lstm_weights(rng, 6, 4))
    yield "graph_attribute_twice", m, None
    yield "graph_opset_999", x_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [], opset=999), None
    # A crop of the time axis feeding an LSTM.
    nodes = [
        helper.make_node("Pad", ["x_in", "pads"], ["x"], name="crop"),
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], name="lstm", hidden_size=3),
    ]
    m = model(nodes, [fin("x_in", [7, 1, 4])], [fout("y")], lstm_weights(rng, 3, 4) + [i64("pads", [-1, 0, 0, -2, 0, 0])])
    yield "graph_pad_crop_time", m, {"x_in": rng.uniform(-2, 2, (7, 1, 4)).astype(np.float32)}
    nodes = [
        helper.make_node("Slice", ["x_in", "s", "e", "a", "st"], ["x"], name="flip"),
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], name="lstm", hidden_size=3),
    ]
    inits = lstm_weights(rng, 3, 4) + [i64("s", [-1]), i64("e", [I32_MIN]), i64("a", [0]), i64("st", [-1])]
    m = model(nodes, [fin("x_in", ["seq", 1, 4])], [fout("y")], inits)
    yield "graph_slice_int32_min", m, {"x_in": rng.uniform(-2, 2, (6, 1, 4)).astype(np.float32)}
    nodes = [helper.make_node("Slice", ["x_in", "s", "e", "a", "st"], ["y"], name="flip")]
    inits = [i64("s", [-11, 3]), i64("e", [-(2**31) + 3, 0]), i64("a", [0, 1]), i64("st", [-1, -2])]
    m = model(nodes, [fin("x_in", ["T", 4])], [fout("y")], inits)
    yield "graph_slice_negative_step_clamped", m, {"x_in": rng.uniform(-2, 2, (6, 4)).astype(np.float32)}
    m = model([helper.make_node("Add", ["x", "b"], ["y"], name="add")], [fin("x", [3, 10]), fin("b", [10])], [fout("y")], [f32("b", np.ones(10))])
    yield "graph_initializer_default", m, {"x": x["x"], "b": np.full(10, 5.0, np.float32)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "fixtures" / "robustness")
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    import onnxruntime as ort

    rng = np.random.default_rng(19)
    for name, m, feeds in generate(rng):
        (out / f"{name}.onnx").write_bytes(m.SerializeToString())
        if feeds is None:
            print(f"{name}: refused by rnn-run (no reference)")
            continue
        if feeds == "inputs only":
            # onnxruntime refuses it too; the inputs for which rnn-run must refuse it.
            np.savez(out / f"{name}.npz", in_x=np.random.default_rng(32).uniform(-1, 1, (3, 10)).astype(np.float32), in_k=np.array(2**32 + 3, dtype=np.int64))
            print(f"{name}: refused by rnn-run at run time (inputs only)")
            continue
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        outs = sess.run(None, feeds)
        arrays = {f"in_{k}": v for k, v in feeds.items()}
        arrays.update({f"out_{o.name}": v for o, v in zip(sess.get_outputs(), outs)})
        np.savez(out / f"{name}.npz", **arrays)
        print(f"{name}: onnxruntime {[a.shape for a in outs]}")


if __name__ == "__main__":
    main()
