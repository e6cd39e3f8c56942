"""What a streamed run exchanges with its writers: the tensors it will hand on, known before it
reads any (planned tensors, a layout), the sink it hands them to, a distributed run's share, and
what it computed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

import torch

from dsl_compress.diagnostics import Diagnostic, fail
from dsl_compress.engine.quant_math import quant_range
from dsl_compress.engine.quantize import SCALE_DTYPE, QuantParams, quant_metadata
from dsl_compress.plan import Key, PlanEntry, tensor_name


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


def by_module(keys: Sequence[Key]) -> list[Key]:
    """``keys`` grouped by module, modules in order of first appearance (a nested dict's order,
    as the in-memory outputs and transforms hold them)."""
    modules: dict[str, list[Key]] = {}
    for key in keys:
        modules.setdefault(key[0], []).append(key)
    return [key for group in modules.values() for key in group]


def planned_scales(name: str, shape: tuple[int, ...]) -> list[PlannedTensor]:
    """A quantized target's scale and zero point, as quant.safetensors holds them."""
    return [PlannedTensor(f"{name}.{part}", shape, SCALE_DTYPE) for part in ("scale", "zero_point")]


def scale_shape(entry: PlanEntry, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of a weight's scale: the granularity's block shape, () per tensor."""
    kernel = entry.kernel
    return () if kernel is None else tuple(kernel.block_shape(shape, entry.subject))


def planned_quant_metadata(entry: PlanEntry) -> dict[str, object]:
    """What quant.safetensors records of a quantized tensor beside its scale, from the plan."""
    qrange = quant_range(entry.setting.get("quant_dtype"), entry.subject)
    return quant_metadata(qrange, entry.setting.get("quant_scheme"))


def mask_back(sink: StreamSink, name: str) -> torch.Tensor:
    """A mask the sink was handed, read back; a failed read is the output's error (L105), not
    the calibration batch's that was running."""
    try:
        return sink.read_mask(name)
    except OSError as exc:
        fail(
            "L105",
            f"cannot read back the mask of {name}: {exc.strerror or exc}",
            subject=str(exc.filename or name),
        )
        raise AssertionError("unreachable")


def hand_mask(sink: StreamSink, counts: dict, key: Key, mask: torch.Tensor) -> None:
    """Hand a final mask on, counting its zeros for the summary."""
    counts[key] = (int(mask.numel() - mask.count_nonzero()), mask.numel())
    sink.mask(tensor_name(*key), mask)


def tied_names(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[str, ...]]:
    """Each name of a tensor held under several names (tied weights), with all its names."""
    names: dict[int, list[str]] = {}
    for name, tensor in state.items():
        names.setdefault(id(tensor), []).append(name)
    return {n: tuple(group) for group in names.values() if len(group) > 1 for n in group}
