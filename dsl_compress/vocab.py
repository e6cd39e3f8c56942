"""The closed vocabularies every stage keys by: compression modes, target kinds, pruning metrics,
quantization dtypes and schemes (torch-free, so rules are checked without loading torch)."""

from __future__ import annotations

import enum
from typing import Any

from dsl_compress.diagnostics import did_you_mean, fail


class Mode(str, enum.Enum):
    """A compression mode, named as the DSL and the CLI spell it."""

    PRUNE = "prune"
    QUANTIZE = "quantize"
    DISTILL = "distill"


# Target names that are not module attributes: a forward's inputs and outputs.
INPUT_PREFIX = "_input_"
OUTPUT_PREFIX = "_output_"


def expand_bare_target(name: str) -> str:
    """NNI's bare prefixes name the first input/output: _input_ is _input_0; other names stay."""
    return name + "0" if name in (INPUT_PREFIX, OUTPUT_PREFIX) else name


class TargetKind(str, enum.Enum):
    """Whether a target is a module attribute or a forward input/output."""

    PARAMETER = "parameter"
    INPUT = "input"
    OUTPUT = "output"

    @classmethod
    def of(cls, target_name: str) -> "TargetKind":
        if target_name.startswith(INPUT_PREFIX):
            return cls.INPUT
        if target_name.startswith(OUTPUT_PREFIX):
            return cls.OUTPUT
        return cls.PARAMETER


# The pruning metrics (dsl_compress.engine.metrics computes them), named as `metric=` spells them.
METRIC_NAMES = ("level", "l1", "l2", "fpgm", "random", "taylor")
DEFAULT_METRIC = "l1"


def check_metric(metric: Any) -> None:
    """P510 unless ``metric`` is one of METRIC_NAMES."""
    if not isinstance(metric, str) or metric not in METRIC_NAMES:
        fail(
            "P510",
            f"unknown pruning metric {metric!r}",
            subject="metric",
            hint=did_you_mean(str(metric), METRIC_NAMES) or f"use one of {', '.join(METRIC_NAMES)}",
        )


# Quantization as NNI 3.0 spells it (dsl_compress.engine.quant_math computes it).
QUANT_SCHEMES = ("symmetric", "affine")
QUANT_BITS = range(2, 9)
QUANT_DTYPES = tuple(f"{sign}{bits}" for sign in ("int", "uint") for bits in QUANT_BITS)


# Where an apply's output goes: dsl-compress's own folder, or a compressed-tensors model folder;
# and the serving stacks a compressed-tensors plan can be checked against.
OUTPUT_FORMATS = ("dsl-compress", "compressed-tensors")
DEPLOY_TARGETS = ("vllm",)
