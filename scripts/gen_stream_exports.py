#!/usr/bin/env python3
"""Export small models whose per-step ops must stream, with both PyTorch exporters.

Each model maps x [batch, time, 8] to a GRU's output; what sits before or after the GRU works
on one time step at a time, so chunked runs must equal the whole run:

  interp          F.interpolate(x, scale_factor=2, mode="linear") over the feature axis (time
                  is the channel axis): legacy Resize; dynamo GatherND + arithmetic
  interp_nearest  F.interpolate(x, size=16) (nearest): Resize with a size from the shape
  pool            F.max_pool1d(x, 2) over the features, time as the channel axis (MaxPool)
  pool2d          the same as F.max_pool2d(x.unsqueeze(1), (1, 2)).squeeze(1)
  idx_feat        x[:, :, idx] (a feature subset): legacy Gather, dynamo GatherND
  idx_batch       y[torch.arange(b), :, 1:3] after the GRU: dynamo GatherND over the batch axis

And models that cannot stream, each refused naming its node (legacy exports, dynamic axes):
  refuse_max_over_time    max_pool1d over time (kernel 2, stride 1): one step shorter
  refuse_cat_time         torch.cat([y, y], dim=1) after the GRU
  refuse_roll             torch.roll(y, 1, dims=1) after the GRU
  refuse_fold_into_batch  x.reshape(b * t, 1, f) into a GRU, unfolded into a second GRU
  refuse_square_fixed_dynamo  dynamo, fixed length: x [1, 8, 8], time equal to features
  refuse_conv_time_channels   legacy, fixed length: Conv1d over the features of x [1, 6, 8]
                              with time as its 6 channels (it mixes steps)

Written to fixtures/stream_exports/NAME_{legacy,dynamo}.onnx with dynamic batch and time axes,
the input x.npy (2 x 11 x 8) and PyTorch's output NAME.npy.

Usage: python scripts/gen_stream_exports.py [--out DIR]   (versions in scripts/requirements.txt)
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent


class Interp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(16, 5, batch_first=True)

    def forward(self, x):
        return self.gru(F.interpolate(x, scale_factor=2.0, mode="linear"))[0]


class InterpNearest(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(16, 5, batch_first=True)

    def forward(self, x):
        return self.gru(F.interpolate(x, size=16, mode="nearest"))[0]


class Pool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 5, batch_first=True)

    def forward(self, x):
        return self.gru(F.max_pool1d(x, 2))[0]


class Pool2d(nn.Module):
    """The same pooling as Pool written so that time is not a channel: max_pool2d over
    x.unsqueeze(1) with kernel (1, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 5, batch_first=True)

    def forward(self, x):
        return self.gru(F.max_pool2d(x.unsqueeze(1), (1, 2)).squeeze(1))[0]


class IdxFeat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 5, batch_first=True)
        self.register_buffer("idx", torch.tensor([0, 2, 5]))

    def forward(self, x):
        return self.gru(x[:, :, self.idx])[0]


class IdxBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 5, batch_first=True)

    def forward(self, x):
        y = self.gru(x)[0]
        return y[torch.arange(y.shape[0]), :, 1:3]


class MaxOverTime(nn.Module):
    """max_pool1d over time (kernel 2, stride 1, no padding: one step shorter)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 5, batch_first=True)

    def forward(self, x):
        return self.gru(F.max_pool1d(x.transpose(1, 2), 2, stride=1).transpose(1, 2))[0]


class CatTime(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 5, batch_first=True)

    def forward(self, x):
        y = self.gru(x)[0]
        return torch.cat([y, y], dim=1)


class Roll(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 5, batch_first=True)

    def forward(self, x):
        return torch.roll(self.gru(x)[0], 1, dims=1)


class FoldIntoBatch(nn.Module):
    """Time folded into the batch (x.reshape(b * t, 1, f)) for a first GRU, then unfolded."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 5, batch_first=True)
        self.gru2 = nn.GRU(5, 5, batch_first=True)

    def forward(self, x):
        b, t, f = x.shape
        y = self.gru(x.reshape(b * t, 1, f))[0].reshape(b, t, 5)
        return self.gru2(y)[0]


class Square(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 8, batch_first=True)

    def forward(self, x):
        return self.gru(x)[0]


class ConvTimeChannels(nn.Module):
    """Conv1d over the features with time as its channels (fixed length 6): mixes steps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(6, 6, 3, padding=1)
        self.gru = nn.GRU(8, 5, batch_first=True)

    def forward(self, x):
        return self.gru(self.conv(x))[0]


# Refused, each naming its node: (model, exporters). refuse_square is a fixed-length dynamo
# export of x [1, 8, 8] (time equals features): its Reshape target holds the length twice.
REFUSED = {
    "refuse_max_over_time": (MaxOverTime, ["legacy"]),
    "refuse_cat_time": (CatTime, ["legacy"]),
    "refuse_roll": (Roll, ["legacy"]),
    "refuse_fold_into_batch": (FoldIntoBatch, ["legacy"]),
}


MODELS = {
    "interp": Interp,
    "interp_nearest": InterpNearest,
    "pool": Pool,
    "pool2d": Pool2d,
    "idx_feat": IdxFeat,
    "idx_batch": IdxBatch,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "fixtures", help="fixtures root (default: fixtures/)")
    out = ap.parse_args().out / "stream_exports"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    x = torch.randn(2, 11, 8)
    np.save(out / "x.npy", x.numpy())
    for name, cls in MODELS.items():
        model = cls().eval()
        with torch.no_grad():
            np.save(out / f"{name}.npy", model(x).numpy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (x,), out / f"{name}_legacy.onnx", dynamo=False, input_names=["x"],
                output_names=["y"], dynamic_axes={"x": {0: "B", 1: "T"}, "y": {0: "B", 1: "T"}},
            )
            batch, time = torch.export.Dim("B"), torch.export.Dim("T", min=2)
            torch.onnx.export(
                model, (x,), out / f"{name}_dynamo.onnx", dynamo=True, input_names=["x"],
                output_names=["y"], dynamic_shapes={"x": {0: batch, 1: time}}, external_data=False,
            )
    for name, (cls, exporters) in REFUSED.items():
        model = cls().eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (x,), out / f"{name}.onnx", dynamo=False, input_names=["x"],
                output_names=["y"], dynamic_axes={"x": {0: "B", 1: "T"}},
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Square().eval(), (torch.randn(1, 8, 8),), out / "refuse_square_fixed_dynamo.onnx",
            dynamo=True, input_names=["x"], output_names=["y"], external_data=False,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ConvTimeChannels().eval(), (torch.randn(1, 6, 8),),
            out / "refuse_conv_time_channels.onnx", dynamo=False, input_names=["x"],
            output_names=["y"],
        )
    for p in sorted(out.iterdir()):
        print(f"{p.relative_to(out.parent)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
