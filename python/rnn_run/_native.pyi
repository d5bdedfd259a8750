"""Type stubs of rnn-run's extension module (re-exported by `rnn_run`)."""

import os
from typing import Any, Mapping, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

ArrayLike = npt.ArrayLike
Inputs = Union[Mapping[str, ArrayLike], Sequence[ArrayLike], np.ndarray]
"""A dict of arrays by input name, a list of arrays in input order, or one array."""

class RnnRunError(Exception):
    """Base class of every error rnn-run raises."""

class LoadError(RnnRunError):
    """The model cannot be loaded."""

class InputError(RnnRunError):
    """The inputs do not fit the model (name, count, element type, rank, dimension)."""

class RunError(RnnRunError):
    """The model failed while running."""

class StreamRefused(RnnRunError):
    """The model cannot be run as a stream or a pool of streams (the node is named)."""

class IoInfo:
    """A graph input or output."""

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str:
        """numpy's name of the element type, e.g. ``"float32"``."""
    @property
    def shape(self) -> list[Union[int, str]]:
        """Fixed sizes as ints, symbolic ones by name, e.g. ``["seq", "batch", 5]``."""

class Model:
    """An ONNX model loaded by rnn-run."""

    def __init__(
        self,
        model: Union[str, os.PathLike[str], bytes],
        threads: int = 1,
        recurrent_weights: str = "full",
        engine: str = "native",
        plan_cache: int = 0,
        data_dir: Union[str, os.PathLike[str], None] = None,
    ) -> None: ...
    @property
    def inputs(self) -> list[IoInfo]: ...
    @property
    def outputs(self) -> list[IoInfo]: ...
    @property
    def source(self) -> str: ...
    @property
    def opset(self) -> int: ...
    def run(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Runs the model once (the GIL released); outputs by name, in the model's order."""
    def stream(
        self,
        start: Union[Mapping[str, ArrayLike], Sequence[ArrayLike], None] = None,
        time_axes: Union[Sequence[Union[int, None]], None] = None,
    ) -> Stream:
        """A stream over the model: pushes of chunks of time steps, states carried."""
    def pool(
        self,
        max_batch: int = 64,
        max_wait: float = 0.002,
        feedback: Union[Mapping[str, str], Sequence[tuple[str, str]], None] = None,
        batch_axes: Union[Sequence[Union[int, None]], None] = None,
        shared: Union[Mapping[str, ArrayLike], Sequence[ArrayLike], None] = None,
        time_axes: Union[Sequence[Union[int, None]], None] = None,
    ) -> Pool:
        """A pool of streams whose pending frames run as one batched step."""

class Stream:
    """A model fed a sequence chunk by chunk."""

    def push(self, chunk: Inputs) -> dict[str, np.ndarray]: ...
    def reset(self) -> None: ...
    @property
    def pushes(self) -> int: ...
    @property
    def time_inputs(self) -> list[IoInfo]: ...
    @property
    def start_inputs(self) -> list[str]: ...
    @property
    def output_time_axes(self) -> dict[str, Union[int, None]]: ...

class PoolStream:
    """A stream of a pool (hashable handle)."""

class Frame:
    """One frame's result."""

    @property
    def outputs(self) -> dict[str, np.ndarray]: ...
    @property
    def queued(self) -> float:
        """Seconds the frame waited before its step started."""
    @property
    def batch(self) -> int:
        """How many streams shared its step."""

class Pending:
    """A frame pushed and not yet waited for."""

    def wait(self) -> Frame: ...
    def done(self) -> bool: ...

class Pool:
    """Streams of one model whose pending frames run batched."""

    def open(self, start: Union[Mapping[str, ArrayLike], Sequence[ArrayLike], None] = None) -> PoolStream: ...
    def push(self, stream: PoolStream, frame: Inputs) -> Pending: ...
    def close(self, stream: PoolStream) -> None: ...
    @property
    def frame_inputs(self) -> list[IoInfo]: ...
    @property
    def stats(self) -> dict[str, int]:
        """``frames`` run, ``steps`` run, ``open`` streams."""

def inspect(path: Union[str, os.PathLike[str]], engine: str = "native") -> dict[str, Any]:
    """What ``rnn-run inspect --json`` prints, as Python objects."""
