#!/usr/bin/env python3
"""Generate the small files that test what rnn-run reads besides ONNX models.

  fixtures/npz/tutorial_lstm_inputs.npz              np.savez of fixtures/tutorial/lstm_legacy's
                                                     inputs, keyed by graph input name
  fixtures/npz/tutorial_lstm_inputs_compressed.npz   the same with np.savez_compressed
  fixtures/npz/tutorial_lstm_expected_compressed.npz its expected outputs, np.savez_compressed,
                                                     keyed by graph output name
  fixtures/robustness/torch_lstm_state_dict.pt       torch.save(nn.LSTM(2, 3).state_dict())
                                                     (a ZIP archive holding archive/data.pkl)
  fixtures/robustness/torch_lstm_module.pt           torch.save(nn.LSTM(2, 3)): a whole module
  fixtures/robustness/torch_lstm_legacy.pt           torch.save(nn.LSTM(2, 3).state_dict(),
                                                     _use_new_zipfile_serialization=False): the
                                                     legacy format, a pickle stream

Usage: python scripts/gen_file_fixtures.py [--out DIR]   (versions in scripts/requirements.txt)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "fixtures", help="fixtures root (default: fixtures/)")
    out = ap.parse_args().out

    tutorial = ROOT / "fixtures" / "tutorial" / "lstm_legacy"
    meta = json.loads((tutorial / "meta.json").read_text())
    inputs = {name: np.load(tutorial / f"input_{i}.npy") for i, name in enumerate(meta["inputs"])}
    expected = {name: np.load(tutorial / f"expected_{i}.npy") for i, name in enumerate(meta["outputs"])}
    npz = out / "npz"
    npz.mkdir(parents=True, exist_ok=True)
    np.savez(npz / "tutorial_lstm_inputs.npz", **inputs)
    np.savez_compressed(npz / "tutorial_lstm_inputs_compressed.npz", **inputs)
    np.savez_compressed(npz / "tutorial_lstm_expected_compressed.npz", **expected)

    robustness = out / "robustness"
    robustness.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 3)
    torch.save(lstm.state_dict(), robustness / "torch_lstm_state_dict.pt")
    torch.save(lstm, robustness / "torch_lstm_module.pt")
    torch.save(lstm.state_dict(), robustness / "torch_lstm_legacy.pt", _use_new_zipfile_serialization=False)

    for p in sorted([*npz.glob("*.npz"), *robustness.glob("torch_*.pt")]):
        print(f"{p.relative_to(out)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
