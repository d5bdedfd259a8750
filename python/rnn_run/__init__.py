"""rnn-run for Python: run ONNX models exported from PyTorch, numpy in and numpy out.

Recurrent nodes (RNN, LSTM, GRU) run on rnn-run's native, spec-exact cells; tract runs the rest
of the graph.

    >>> import numpy as np, rnn_run
    >>> model = rnn_run.Model("fixtures/tutorial/lstm_legacy/model.onnx")
    >>> [(i.name, i.shape) for i in model.inputs]          # doctest: +SKIP
    [('input', ['seq', 'batch', 5]), ('h0', [2, 'batch', 6]), ('c0', [2, 'batch', 6])]
    >>> out = model.run({"input": np.ones((4, 3, 5), np.float32),
    ...                  "h0": np.zeros((2, 3, 6), np.float32),
    ...                  "c0": np.zeros((2, 3, 6), np.float32)})   # doctest: +SKIP

`Model.stream()` runs a model a chunk of time steps at a time, `Model.pool()` batches the frames
of many streams, `inspect()` describes a model as ``rnn-run inspect --json`` does, and
`check_export()` (needs PyTorch) exports a PyTorch module with both exporters and checks each
export against PyTorch. The wheel also installs the ``rnn-run`` command-line program.
"""

from __future__ import annotations

from typing import Any

from ._native import (
    Frame,
    InputError,
    IoInfo,
    LoadError,
    Model,
    Pending,
    Pool,
    PoolStream,
    RnnRunError,
    RunError,
    Stream,
    StreamRefused,
    __version__,
    inspect,
)

__all__ = [
    "Model",
    "IoInfo",
    "Stream",
    "Pool",
    "PoolStream",
    "Pending",
    "Frame",
    "inspect",
    "check_export",
    "RnnRunError",
    "LoadError",
    "InputError",
    "RunError",
    "StreamRefused",
    "__version__",
]


def check_export(module: Any, example_inputs: Any, **options: Any):
    """Exports a PyTorch module with both ONNX exporters and checks each export with rnn-run
    against PyTorch; returns an `ExportCheck` (see `rnn_run.check.check_export`, which this
    calls, for the options). Needs torch (the CPU build is enough:
    ``pip install torch --index-url https://download.pytorch.org/whl/cpu``)."""
    from .check import check_export as run

    return run(module, example_inputs, **options)
