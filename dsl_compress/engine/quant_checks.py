"""Quantization's checks of settings and weight shapes, never of values: the engine's first step
before calibration and one of lint's checks, torch-free so that lint on a manifest loads none."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from dsl_compress.diagnostics import CompressionError
from dsl_compress.engine.mask_checks import Problem
from dsl_compress.engine.quant_dtypes import quant_range
from dsl_compress.plan import PlanEntry
from dsl_compress.stand_in import StandInModule
from dsl_compress.vocab import TargetKind

if TYPE_CHECKING:
    import torch


def quant_problems(
    modules: Mapping[str, torch.nn.Module | StandInModule], entries: Sequence[PlanEntry]
) -> list[Problem]:
    """Errors of quantization settings and weight shapes, found without reading a value:
    the engine's first step and one of lint's checks."""
    found: list[Problem] = []
    for entry in entries:
        found.extend(
            _problems_of(entry, "quant_dtype", quant_range, entry.setting.get("quant_dtype"))
        )
        if entry.kind is TargetKind.PARAMETER and entry.kernel is not None:
            shape = stored_shape(modules[entry.module], entry.target)
            found.extend(_problems_of(entry, "granularity", entry.kernel.block_shape, shape))
    return found


def stored_shape(module: torch.nn.Module | StandInModule, name: str) -> tuple[int, ...]:
    """The stored tensor's shape, before any mask installed for calibration (NNI: the raw
    weight); only a torch module carries parametrizations, so torch is asked only then."""
    if not isinstance(module, StandInModule) and "parametrizations" in module._modules:
        from torch.nn.utils import parametrize

        if parametrize.is_parametrized(module, name):
            return tuple(module.parametrizations[name].original.shape)
    return tuple(getattr(module, name).shape)


def _problems_of(
    entry: PlanEntry, key: str, check: Callable[..., Any], value: Any
) -> list[Problem]:
    try:
        check(value, entry.subject)
    except CompressionError as exc:
        return [Problem(entry.key, key, d) for d in exc.diagnostics]
    return []
