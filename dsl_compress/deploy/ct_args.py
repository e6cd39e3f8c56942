"""compressed-tensors' quantization args and schemes, as a plan's settings translate into them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# The formats this exporter writes: int weights packed into int32 words when only the weights
# are quantized, int8 weights beside static int activations otherwise.
PACK_QUANTIZED = "pack-quantized"
INT_QUANTIZED = "int-quantized"
MIXED_PRECISION = "mixed-precision"


@dataclass(frozen=True)
class QuantArgs:
    """One tensor's compressed-tensors quantization: signed ints of ``num_bits`` with a scale per
    tensor, output channel, group of ``group_size`` inputs or ``block_structure`` block."""

    num_bits: int
    symmetric: bool
    strategy: str
    group_size: int | None = None
    block_structure: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        """The args as config.json's ``quantization_config`` holds them (static, int)."""
        found: dict[str, Any] = {
            "num_bits": self.num_bits,
            "type": "int",
            "symmetric": self.symmetric,
            "strategy": self.strategy,
            "dynamic": False,
        }
        if self.group_size is not None:
            found["group_size"] = self.group_size
        if self.block_structure is not None:
            found["block_structure"] = list(self.block_structure)
        return found

    def scale_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The scale's shape for a weight of ``shape`` ([out, in]), as compressed-tensors
        lays it out; an activation's (strategy tensor) is (1,)."""
        if self.strategy == "tensor":
            return (1,)
        rows, cols = shape
        if self.strategy == "channel":
            return (rows, 1)
        if self.strategy == "group":
            return (rows, math.ceil(cols / int(self.group_size or 1)))
        block_rows, block_cols = self.block_structure or (1, 1)
        return (math.ceil(rows / block_rows), math.ceil(cols / block_cols))

    @property
    def packs_zero_point(self) -> bool:
        """Whether pack-quantized packs the zero point (asymmetric per-channel or per-group)."""
        return not self.symmetric and self.strategy in ("channel", "group")


@dataclass(frozen=True)
class ModuleScheme:
    """What one Linear or Embedding module is quantized with: its weight's args and, when its
    first input is quantized too (statically, per tensor), that input's."""

    weights: QuantArgs
    input_activations: QuantArgs | None = None

    @property
    def format(self) -> str:
        """int weights beside float activations are packed; beside int ones, stored as int8."""
        return PACK_QUANTIZED if self.input_activations is None else INT_QUANTIZED

    def to_json(self) -> dict[str, Any]:
        """The scheme as one of ``config_groups``' values holds it (without its targets)."""
        inputs = self.input_activations
        return {
            "weights": self.weights.to_json(),
            "input_activations": None if inputs is None else inputs.to_json(),
            "output_activations": None,
            "format": self.format,
        }


@dataclass(frozen=True)
class Strategy:
    """How a weight's scales are laid out: per tensor, output channel, group of ``group_size``
    inputs, or ``block_structure`` block."""

    strategy: str
    group_size: int | None = None
    block_structure: tuple[int, int] | None = None

    def args(self, num_bits: int, symmetric: bool) -> QuantArgs:
        return QuantArgs(num_bits, symmetric, self.strategy, self.group_size, self.block_structure)


PER_TENSOR = Strategy("tensor")


def weight_strategy(block: tuple[int, int], shape: tuple[int, ...]) -> Strategy:
    """The strategy of a 2-D weight of ``shape`` whose scales cover blocks of ``block``
    ([rows, cols], -1 a whole dim)."""
    rows, cols = shape
    block_rows = rows if block[0] == -1 else block[0]
    block_cols = cols if block[1] == -1 else block[1]
    if (block_rows, block_cols) == (rows, cols):
        return PER_TENSOR
    if block_rows == 1 and block_cols == cols:
        return Strategy("channel")
    if block_rows == 1:
        return Strategy("group", group_size=block_cols)
    return Strategy("block", block_structure=(block_rows, block_cols))
