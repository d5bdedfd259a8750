"""Shared paths for the tests of the installed `rnn_run` wheel (run from outside the source
tree, so that `import rnn_run` is the installed package: see python/test.sh)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(os.environ.get("RNN_RUN_REPO", Path(__file__).resolve().parents[2]))
FIXTURES = REPO / "fixtures"


def load_case(path: Path):
    """A fixture folder's inputs and expected outputs (input_<i>.npy, expected_<i>.npy)."""
    inputs = [np.load(path / f"input_{i}.npy") for i in range(len(list(path.glob("input_*.npy"))))]
    expected = [np.load(path / f"expected_{i}.npy") for i in range(len(list(path.glob("expected_*.npy"))))]
    meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").exists() else {}
    return inputs, expected, meta


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def lstm_path() -> str:
    return str(FIXTURES / "tutorial" / "lstm_legacy" / "model.onnx")
