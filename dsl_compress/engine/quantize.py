"""Quantization stage of the engine: scales and zero points for plan entries, from weights and calibration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from torch.nn.utils import parametrize

from dsl_compress.diagnostics import error, fail, raise_errors
from dsl_compress.schema.granularity import BlockKernel
from dsl_compress.vocab import TargetKind
from dsl_compress.engine.observers import MinMaxObserver, weight_min_max
from dsl_compress.plan import PlanEntry, Key
from dsl_compress.engine.quant_math import QuantRange, quant_range, scale_zero_point
from dsl_compress.engine.taps import run_with_taps


@dataclass(frozen=True)
class QuantParams:
    """Everything needed to fake-quantize one target, and to report it."""

    scale: torch.Tensor
    zero_point: torch.Tensor
    qrange: QuantRange
    quant_scheme: str | None
    kernel: BlockKernel | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "zero_point": self.zero_point,
            "qmin": self.qrange.qmin,
            "qmax": self.qrange.qmax,
            "quant_dtype": self.qrange.quant_dtype,
            "quant_scheme": self.quant_scheme or "symmetric",
        }


def compute_quant_params(
    model: torch.nn.Module, entries: Sequence[PlanEntry], calib: Iterable[Any] | None
) -> dict[Key, QuantParams]:
    """Scales for every active quantization entry; raises before anything is modified."""
    active = list(entries)
    ranges = {e.key: quant_range(e.setting.get("quant_dtype"), e.subject) for e in active}
    modules = dict(model.named_modules())
    stats = _weight_stats(modules, [e for e in active if e.kind is TargetKind.PARAMETER])
    stats.update(
        _activation_stats(
            model, modules, [e for e in active if e.kind is not TargetKind.PARAMETER], calib
        )
    )
    params = {}
    for entry in active:
        lo, hi = stats[entry.key]
        scheme = entry.setting.get("quant_scheme")
        scale, zp = scale_zero_point(lo, hi, ranges[entry.key], scheme, entry.subject)
        params[entry.key] = QuantParams(scale, zp, ranges[entry.key], scheme, entry.kernel)
    return params


def _weight_stats(modules, entries: Sequence[PlanEntry]) -> dict[Key, tuple]:
    return {
        e.key: weight_min_max(_raw(modules[e.module], e.target), e.kernel, e.subject)
        for e in entries
    }


def _raw(module: torch.nn.Module, name: str) -> torch.Tensor:
    """The stored tensor, before any mask installed for calibration (NNI: the raw weight)."""
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name].original
    return getattr(module, name)


def _activation_stats(model, modules, entries: Sequence[PlanEntry], calib) -> dict[Key, tuple]:
    """Running min/max of each input/output target over the calibration batches."""
    if not entries:
        return {}
    if calib is None:
        fail(
            "Q602",
            f"{len(entries)} input/output target(s) need calibration batches, e.g. {entries[0].subject}",
            subject=entries[0].subject,
            hint="give calibration batches: calib=[batch, ...] in Python, --calib on the command "
            "line (a batch is a tensor, a tuple of inputs or a dict)",
        )
    observers = {e.key: MinMaxObserver(e.kernel, e.subject) for e in entries}
    taps = [(modules[e.module], e.target, _observing(observers[e.key])) for e in entries]
    run_with_taps(model, taps, calib)
    missing = [e for e in entries if not observers[e.key].observed]
    raise_errors(
        error(
            "Q601",
            f"'{e.module}.{e.target}' saw no tensor during calibration",
            subject=e.subject,
            hint="check the target name (_input_<i>, _output_<i>) and that the batches reach the module",
        )
        for e in missing
    )
    return {key: (obs.min_val, obs.max_val) for key, obs in observers.items()}


def _observing(observer: MinMaxObserver):
    def observe(tensor: torch.Tensor) -> None:
        observer.observe(tensor)

    return observe
