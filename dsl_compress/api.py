"""The Python API verbs: prune, quantize, distill and run_plan, all through the one engine."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import torch

from dsl_compress.diagnostics import emit_warnings, fail
from dsl_compress.distiller import build_targets
from dsl_compress.engine import Compression, check_not_compressed
from dsl_compress.granularity import TargetKind
from dsl_compress.modes import Mode
from dsl_compress.plan import Plan
from dsl_compress.pruner import LossFn, check_metric, compute_masks
from dsl_compress.quantizer import compute_quant_params
from dsl_compress.resolve import build_plan
from dsl_compress.settings import Registry

ConfigList = Sequence[Mapping[str, Any]]


def prune(
    model: torch.nn.Module,
    config_list: ConfigList,
    metric: str = "l1",
    *,
    calib: Iterable[Any] | None = None,
    loss_fn: LossFn | None = None,
    seed: int = 0,
    registry: Registry | None = None,
) -> Compression:
    """Mask the configured targets of ``model`` by ``metric`` (level, l1, l2, fpgm, random, taylor).

    ``calib`` batches are needed for the taylor metric (with ``loss_fn(model, batch)``) and
    to learn input/output shapes for aligned activation masks with a granularity.
    """
    check_metric(metric)
    plan = build_plan(model, config_list, Mode.PRUNE, registry=registry, metric=metric)
    return run_plan(model, plan, calib=calib, loss_fn=loss_fn, seed=seed)


def quantize(
    model: torch.nn.Module,
    config_list: ConfigList,
    calib: Iterable[Any] | None = None,
    *,
    fused: bool = False,
    registry: Registry | None = None,
) -> Compression:
    """Simulated quantization: scales from the weights, and from ``calib`` batches for activations.

    ``fused=True`` uses torch's fused fake-quant kernels where they apply; they differ from NNI
    at about one rounding tie per million elements, so the exact formula is the default.
    """
    plan = build_plan(model, config_list, Mode.QUANTIZE, registry=registry)
    return run_plan(model, plan, calib=calib, fused=fused)


def distill(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    config_list: ConfigList,
    *,
    registry: Registry | None = None,
) -> Compression:
    """Capture student and teacher outputs; ``compression.loss()`` gives the distillation loss."""
    if student is teacher:
        fail("X803", "the student and the teacher are the same model", subject="distill")
    plan = build_plan(student, config_list, Mode.DISTILL, registry=registry)
    return run_plan(student, plan, teacher=teacher)


def run_plan(
    model: torch.nn.Module,
    plan: Plan,
    *,
    calib: Iterable[Any] | None = None,
    loss_fn: LossFn | None = None,
    seed: int = 0,
    teacher: torch.nn.Module | None = None,
    fused: bool = False,
) -> Compression:
    """Compute everything a plan asks for, then install it; any error leaves the model untouched."""
    check_not_compressed(model, [e.key for e in plan.entries if e.kind is TargetKind.PARAMETER])
    if calib is not None and not isinstance(calib, (list, tuple)):
        calib = list(calib)
    masks = compute_masks(model, plan.of_mode(Mode.PRUNE), calib=calib, loss_fn=loss_fn, seed=seed)
    quant = compute_quant_params(model, plan.of_mode(Mode.QUANTIZE), calib)
    distill_entries = plan.of_mode(Mode.DISTILL)
    if distill_entries and teacher is None:
        fail("X803", "distillation entries need a teacher model", subject="run_plan")
    distill = (teacher, build_targets(distill_entries, teacher)) if distill_entries else None
    compression = Compression(model, plan, masks, quant, distill, fused).attach()
    emit_warnings(plan.diagnostics)
    return compression
