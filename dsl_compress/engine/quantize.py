"""Quantization stage of the engine: min/max observers, and scales and zero points for plan entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch.nn.utils import parametrize

from dsl_compress.diagnostics import Diagnostic, error, fail, raise_errors
from dsl_compress.engine.calibration import first_shapes, run_with_taps
from dsl_compress.engine.options import Progress
from dsl_compress.engine.quant_checks import quant_problems
from dsl_compress.engine.quant_findings import floor_warning, nonfinite_warning
from dsl_compress.engine.quant_math import QuantRange, quant_range, scale_zero_point
from dsl_compress.plan import PlanEntry, Key
from dsl_compress.schema.granularity import BlockKernel
from dsl_compress.vocab import TargetKind

# The dtype of every scale and zero point, whatever the model's dtype: fp16 cannot hold a
# scale below 6e-8 and bf16 keeps 8 significant bits; the fake-quant formula raises fp16
# and bf16 tensors to float32 and its result has the tensor's dtype (quant_math).
SCALE_DTYPE = torch.float32


@dataclass(frozen=True)
class QuantParams:
    """Everything needed to fake-quantize one target, and to report it; ``scale`` and
    ``zero_point`` are :data:`SCALE_DTYPE` (float32) tensors."""

    scale: torch.Tensor
    zero_point: torch.Tensor
    qrange: QuantRange
    quant_scheme: str | None
    kernel: BlockKernel | None

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "zero_point": self.zero_point, **self.metadata()}

    def metadata(self) -> dict[str, Any]:
        """What is reported beside the scale and zero point (:func:`quant_metadata`)."""
        return quant_metadata(self.qrange, self.quant_scheme)


def quant_metadata(qrange: QuantRange, quant_scheme: str | None) -> dict[str, Any]:
    """A quantizer's range, dtype and scheme as reports and quant.safetensors give them: known
    from its settings alone, before any scale is computed."""
    return {
        "qmin": qrange.qmin,
        "qmax": qrange.qmax,
        "quant_dtype": qrange.quant_dtype,
        "quant_scheme": quant_scheme or "symmetric",
    }


def compute_quant_params(
    model: torch.nn.Module,
    entries: Sequence[PlanEntry],
    calib: Iterable[Any] | None,
    progress: Progress | None = None,
    findings: list[Diagnostic] | None = None,
) -> dict[Key, QuantParams]:
    """Scales for every active quantization entry; raises before anything is modified.

    Every error the settings and weight shapes give is raised at once, before calibration.
    ``progress(done, total, 'calibration')`` is called after each calibration batch.
    Warnings about the data are appended to ``findings``: non-finite values, left out of the
    ranges (Q604), and scales at their floor (Q605).
    """
    active = list(entries)
    modules = dict(model.named_modules())
    raise_errors(p.diagnostic for p in quant_problems(modules, active))
    stats = _weight_stats(modules, [e for e in active if e.kind is TargetKind.PARAMETER])
    stats.update(
        _activation_stats(
            model,
            modules,
            [e for e in active if e.kind is not TargetKind.PARAMETER],
            calib,
            progress,
        )
    )
    params = {}
    found = findings if findings is not None else []
    for entry in active:
        params[entry.key], data_findings = quant_params_of(entry, *stats[entry.key])
        found.extend(data_findings)
    return params


def activation_quant_params(
    model: torch.nn.Module,
    entries: Sequence[PlanEntry],
    calib: Iterable[Any] | None,
    progress: Progress | None = None,
    scale_dtypes: Mapping[Key, torch.dtype] | None = None,
) -> tuple[dict[Key, QuantParams], list[Diagnostic]]:
    """The input/output targets' scales from running min/max over the calibration batches, and
    the warnings their data gives: what :func:`compute_quant_params` computes for them; each
    scale rounded to its dtype in ``scale_dtypes`` where one is given (:func:`scale_zero_point`)."""
    modules = dict(model.named_modules())
    stats = _activation_stats(model, modules, entries, calib, progress)
    params, found = {}, []
    for entry in entries:
        rounding = (scale_dtypes or {}).get(entry.key)
        params[entry.key], data_findings = quant_params_of(entry, *stats[entry.key], rounding)
        found.extend(data_findings)
    return params, found


def observed_shapes(
    model: torch.nn.Module, entries: Sequence[PlanEntry], calib: Iterable[Any] | None
) -> dict[Key, tuple[int, ...]]:
    """The shape each input/output target first shows over the calibration batches, for laying
    out its scale before it is observed: Q602 without batches, Q601 for a target none reach,
    as observing them says."""
    if entries and calib is None:
        _activation_stats(model, dict(model.named_modules()), entries, calib, None)  # Q602
    modules = dict(model.named_modules())
    shapes = first_shapes(model, [(modules[e.module], e.target, e.key) for e in entries], calib)
    raise_errors(_unseen([e for e in entries if e.key not in shapes]))
    return shapes


def weight_quant_params(
    entry: PlanEntry, tensor: torch.Tensor, scale_dtype: torch.dtype | None = None
) -> tuple[QuantParams, list[Diagnostic]]:
    """One weight's scale and zero point from its raw values, and the warnings its data gives:
    what :func:`compute_quant_params` computes for it, one tensor at a time (a streamed run);
    with ``scale_dtype`` the scale is rounded to it first (:func:`scale_zero_point`)."""
    lo, hi, count = finite_min_max(tensor, entry.kernel, entry.subject)
    return quant_params_of(entry, lo, hi, _NonFinite(count, tensor.numel()), scale_dtype)


def quant_params_of(
    entry: PlanEntry,
    lo: torch.Tensor,
    hi: torch.Tensor,
    nonfinite: _NonFinite,
    scale_dtype: torch.dtype | None = None,
) -> tuple[QuantParams, list[Diagnostic]]:
    """Scale and zero point (float32) from a target's observed range, with its data warnings."""
    qrange = quant_range(entry.setting.get("quant_dtype"), entry.subject)
    scheme = entry.setting.get("quant_scheme")
    scale, zp = scale_zero_point(lo, hi, qrange, scheme, entry.subject, scale_dtype)
    scale, zp = scale.to(SCALE_DTYPE), zp.to(SCALE_DTYPE)
    params = QuantParams(scale, zp, qrange, scheme, entry.kernel)
    return params, _data_findings(entry, nonfinite, lo, hi, scale)


def _data_findings(entry: PlanEntry, nonfinite: _NonFinite, lo, hi, scale) -> list[Diagnostic]:
    name = f"{entry.module}.{entry.target}"
    found = []
    if nonfinite.count:
        observed = entry.kind is not TargetKind.PARAMETER
        found.append(
            nonfinite_warning(name, entry.subject, nonfinite.count, nonfinite.total, observed)
        )
    floor = floor_warning(name, entry.subject, lo, hi, scale)
    return found if floor is None else [*found, floor]


def _weight_stats(modules, entries: Sequence[PlanEntry]) -> dict[Key, tuple]:
    stats = {}
    for e in entries:
        tensor = _raw(modules[e.module], e.target)
        lo, hi, count = finite_min_max(tensor, e.kernel, e.subject)
        stats[e.key] = (lo, hi, _NonFinite(count, tensor.numel()))
    return stats


def _raw(module: torch.nn.Module, name: str) -> torch.Tensor:
    """The stored tensor, before any mask installed for calibration (NNI: the raw weight)."""
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name].original
    return getattr(module, name)


def _activation_stats(
    model, modules, entries: Sequence[PlanEntry], calib, progress: Progress | None
) -> dict[Key, tuple]:
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
    run_with_taps(model, taps, calib, progress)
    raise_errors(_unseen([e for e in entries if not observers[e.key].observed]))
    return {
        key: (obs.min_val, obs.max_val, _NonFinite(obs.nonfinite, obs.seen))
        for key, obs in observers.items()
    }


def _unseen(entries: Sequence[PlanEntry]) -> list[Diagnostic]:
    """Q601 for each input/output target no calibration batch reached."""
    return [
        error(
            "Q601",
            f"'{e.module}.{e.target}' saw no tensor during calibration",
            subject=e.subject,
            hint="check the target name (_input_<i>, _output_<i>) and that the batches reach the module",
        )
        for e in entries
    ]


def _observing(observer: MinMaxObserver):
    def observe(tensor: torch.Tensor) -> None:
        observer.observe(tensor)

    return observe


# ----- statistics: per-block min/max of weights, running min/max of activations -----


def weight_min_max(
    tensor: torch.Tensor, kernel: BlockKernel | None = None, subject: str = "weight"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max of ``tensor`` per block, in float32 and without gradient.

    Kernel None gives 0-d (per-tensor) stats; otherwise the stats have the kernel's keepdim
    block shape, e.g. ``[O, 1]`` for a Linear weight with out_channel. The reductions run
    in the tensor's own dtype and only their results are cast, which gives the same values
    as casting first because rounding to float32 is monotone. A tensor with no elements
    (``Linear(8, 0)``) has min and max 0 in every (empty) block: its scale is the floor and
    there is nothing to round.
    """
    with torch.no_grad():
        data = tensor.detach()
        if data.numel() == 0:
            shape = () if kernel is None else kernel.block_shape(data.shape, subject)
            zeros = torch.zeros(shape, dtype=torch.float32, device=data.device)
            return zeros, zeros.clone()
        if kernel is None:
            lo, hi = torch.aminmax(data)
        else:
            lo = kernel.shrink(data, _amin, subject)
            hi = kernel.shrink(data, _amax, subject)
        return lo.to(torch.float32), hi.to(torch.float32)


def finite_min_max(
    tensor: torch.Tensor, kernel: BlockKernel | None = None, subject: str = "weight"
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """:func:`weight_min_max` over the finite elements, and how many are NaN or infinite.

    Non-finite elements are read as 0, which changes no scale: the range is widened to 0
    anyway. Only a tensor whose stats come out non-finite is scanned a second time.
    """
    lo, hi = weight_min_max(tensor, kernel, subject)
    if bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all()):
        return lo, hi, 0
    with torch.no_grad():
        data = tensor.detach()
        finite = torch.isfinite(data)
        count = data.numel() - int(finite.sum())
        lo, hi = weight_min_max(torch.where(finite, data, 0), kernel, subject)
    return lo, hi, count


@dataclass(frozen=True)
class _NonFinite:
    """How many of the values behind a scale were NaN or infinite, of how many."""

    count: int
    total: int


def _amin(tensor: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return torch.amin(tensor, dim=dims) if dims else tensor.clone()


def _amax(tensor: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return torch.amax(tensor, dim=dims) if dims else tensor.clone()


class MinMaxObserver:
    """Running min and max over every observed tensor (NNI PTQ's tracker, not an EMA).

    With a kernel the stats have the kernel's block shape for the observed tensor; for an
    activation ``[B, C, H, W]`` with per_channel (dim 1, NNI's meaning) that is
    ``[1, C, 1, 1]``, and for ``[B, T, C]`` it is ``[1, T, 1]``. The stats are float32
    tensors owned by the observer, updated in place; observed tensors are not kept.
    """

    def __init__(self, kernel: BlockKernel | None = None, subject: str = "tensor") -> None:
        self.kernel = kernel
        self.subject = subject
        self.min_val: torch.Tensor | None = None
        self.max_val: torch.Tensor | None = None
        # Values observed, and how many of them were NaN or infinite (left out of the stats).
        self.seen = 0
        self.nonfinite = 0

    @property
    def observed(self) -> bool:
        return self.min_val is not None

    def observe(self, x: torch.Tensor) -> None:
        """Fold one tensor's per-block min/max (of its finite values) into the running stats."""
        lo, hi, nonfinite = finite_min_max(x, self.kernel, self.subject)
        self.seen += x.numel()
        self.nonfinite += nonfinite
        if self.min_val is None or self.max_val is None:
            self.min_val, self.max_val = lo, hi
            return
        self._check_shape(lo.shape, self.min_val.shape, x)
        with torch.no_grad():
            torch.minimum(self.min_val, lo.to(self.min_val.device), out=self.min_val)
            torch.maximum(self.max_val, hi.to(self.max_val.device), out=self.max_val)

    def _check_shape(self, new: torch.Size, running: torch.Size, x: torch.Tensor) -> None:
        if new != running:
            fail(
                "P501",
                f"a tensor of shape {list(x.shape)} gives block stats of shape "
                f"{list(new)}, but earlier tensors gave {list(running)}",
                subject=self.subject,
                hint="a granularity that blocks the batch dim needs one batch size throughout",
            )
