#!/usr/bin/env python3
"""Generate the files a PyTorch user hands rnn-run by mistake, for the messages that say what they are.

  fixtures/robustness/torch_conv_gru_module.pt   torch.save(model) of a Conv1d -> GRU -> Linear
                                                 module (class __main__.Denoiser): a whole pickled
                                                 module, not a state dict
  fixtures/robustness/lstm_proj_l2_dynamo.onnx   torch.onnx.export(nn.LSTM(4, 6, proj_size=3,
                                                 num_layers=2), dynamo=True): an invalid export
                                                 (a Concat of initializers of ranks 2 and 1;
                                                 onnxruntime refuses it)

Usage: python scripts/gen_torch_misuse.py [--out DIR]   (versions in scripts/requirements.txt)
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent


class Denoiser(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 2)
        self.gru = nn.GRU(6, 5, batch_first=True)
        self.out = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        y, _ = self.gru(y)
        return self.out(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "fixtures", help="fixtures root (default: fixtures/)")
    robustness = ap.parse_args().out / "robustness"
    robustness.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    torch.save(Denoiser().eval(), robustness / "torch_conv_gru_module.pt")

    lstm = nn.LSTM(4, 6, proj_size=3, num_layers=2).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            lstm, (torch.randn(5, 1, 4),), robustness / "lstm_proj_l2_dynamo.onnx", dynamo=True, external_data=False
        )

    for name in ["torch_conv_gru_module.pt", "lstm_proj_l2_dynamo.onnx"]:
        print(f"robustness/{name}: {(robustness / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
