"""What a streamed run exchanges with its writers: the tensors it will hand on, known before it
reads any (planned tensors, a layout), the sink it hands them to, a distributed run's share, and
what it computed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

import torch

from dsl_compress.diagnostics import Diagnostic
from dsl_compress.engine.quantize import QuantParams
from dsl_compress.plan import Key


@dataclass(frozen=True)
class PlannedTensor:
    """A tensor a run will hand on, known before any data is read: its name, shape and dtype
    (so its bytes are known, and a writer can lay out its file up front)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(size) for size in self.shape))  # a list too

    @classmethod
    def of(cls, name: str, tensor: torch.Tensor) -> PlannedTensor:
        return cls(name, tuple(tensor.shape), tensor.dtype)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class StreamLayout:
    """Every tensor a streamed run will hand on, by output: the finalized model, the masks, and
    the scales and zero points (with the per-tensor quantization metadata)."""

    model: tuple[PlannedTensor, ...]
    masks: tuple[PlannedTensor, ...]
    quant: tuple[PlannedTensor, ...]
    quant_metadata: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def owned(self, owns: Callable[[str], bool]) -> StreamLayout:
        """What one process of a distributed run hands on: the tensors of the names it owns
        (scales by their tensor's name); the quantization metadata stays whole."""
        quant = tuple(t for t in self.quant if owns(t.name.rpartition(".")[0]))
        return StreamLayout(
            tuple(t for t in self.model if owns(t.name)),
            tuple(t for t in self.masks if owns(t.name)),
            quant,
            self.quant_metadata,
        )


class Share(Protocol):
    """One process's part of a distributed run: the tensors it owns, and a sum over every
    process of a tensor (in place; exact for the integer histograms it is used for)."""

    def owns(self, name: str) -> bool: ...

    def reduce(self, tensor: torch.Tensor) -> None: ...


class StreamSink(Protocol):
    """Where a streamed run hands each tensor as soon as it is final."""

    def model(
        self, name: str, tensor: torch.Tensor, codes: Callable[[], torch.Tensor] | None = None
    ) -> None:
        """A tensor's final value; for a quantized one, ``codes()`` gives its integer codes
        (int16, in its quant_dtype's range) that dequantize to it, for a sink that stores
        them."""
        ...

    def mask(self, name: str, mask: torch.Tensor) -> None: ...

    def quant(self, name: str, params: QuantParams) -> None: ...

    def read_mask(self, name: str) -> torch.Tensor:
        """A mask handed on earlier (by this or, after a barrier, another process)."""
        ...


@dataclass(frozen=True)
class StreamResult:
    """What a streamed run computed, for its summary: zeros and elements of each mask, the
    quantization dtype of each quantized tensor, and the warnings the data gave."""

    mask_counts: Mapping[Key, tuple[int, int]]
    quant_dtypes: Mapping[Key, str]
    findings: tuple[Diagnostic, ...]
