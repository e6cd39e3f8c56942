"""The Python API verbs: apply, prune, quantize, distill and run_plan, all through one path
to the engine (:func:`execute_plan`)."""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Iterable, Mapping, Sequence

import torch

from dsl_compress.diagnostics import (
    CompressionError,
    Diagnostic,
    emit_warnings,
    fail,
    raise_errors,
)
from dsl_compress.engine.distill import build_targets
from dsl_compress.engine.compression import (
    Compression,
    attached_compression,
    check_not_compressed,
)
from dsl_compress.vocab import DEFAULT_METRIC, Mode, TargetKind, check_metric
from dsl_compress.plan import Plan, locate_in_rules
from dsl_compress.engine.options import EngineOptions, LossFn, Progress
from dsl_compress.engine.plan_checks import meta_tensor_errors, plan_errors
from dsl_compress.engine.prune import compute_masks
from dsl_compress.engine.quantize import compute_quant_params
from dsl_compress.resolve.findings import unmatched_refused
from dsl_compress.resolve.from_config import build_plan
from dsl_compress.resolve.ruleset import RuleSet
from dsl_compress.schema.registry import Registry
from dsl_compress.resolve.targets import shared_tensor_errors

ConfigList = Sequence[Mapping[str, Any]]


def prune(
    model: torch.nn.Module,
    config_list: ConfigList,
    metric: str = DEFAULT_METRIC,
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
    _check_module(model, "model")
    check_metric(metric)
    with _as_it_was(model):
        plan = build_plan(model, config_list, Mode.PRUNE, registry=registry, metric=metric)
    return execute_plan(model, plan, EngineOptions(calib=calib, loss_fn=loss_fn, seed=seed))


def quantize(
    model: torch.nn.Module,
    config_list: ConfigList,
    calib: Iterable[Any] | None = None,
    *,
    fused: bool = False,
    cache_weights: bool = True,
    registry: Registry | None = None,
) -> Compression:
    """Simulated quantization: scales from the weights, and from ``calib`` batches for activations.

    ``fused=True`` uses torch's fused fake-quant kernels where they apply, on devices other than
    the CPU (there they are slower than the exact formula, which then runs); they differ from
    NNI at about one rounding tie per million elements, so the exact formula is the default.
    Scales and zero points are float32 whatever the model's dtype; the model keeps its dtype.

    ``cache_weights`` keeps each fake-quantized weight between forwards run without grad (one
    float copy per quantized weight), recomputed when the weight, scale, zero point or mask
    changes. In-place writes through ``weight.data`` escape torch's version counter and so the
    cache: pass ``cache_weights=False`` for code that edits weights that way.
    """
    _check_module(model, "model")
    with _as_it_was(model):
        plan = build_plan(model, config_list, Mode.QUANTIZE, registry=registry)
    options = EngineOptions(calib=calib, fused=fused, cache_weights=cache_weights)
    return execute_plan(model, plan, options)


def distill(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    config_list: ConfigList,
    *,
    registry: Registry | None = None,
) -> Compression:
    """Capture student and teacher outputs; ``compression.loss()`` gives the distillation loss."""
    _check_module(student, "student")
    _check_module(teacher, "teacher")
    if student is teacher:
        fail("X803", "the student and the teacher are the same model", subject="distill")
    with _as_it_was(student):
        plan = build_plan(student, config_list, Mode.DISTILL, registry=registry)
    return execute_plan(student, plan, EngineOptions(teacher=teacher))


def apply(
    rules: RuleSet | Plan,
    model: torch.nn.Module,
    calib: Iterable[Any] | None = None,
    *,
    teacher: torch.nn.Module | None = None,
    loss_fn: LossFn | None = None,
    seed: int = 0,
    cache_weights: bool = True,
    registry: Registry | None = None,
    allow_unmatched: bool = False,
) -> Compression:
    """Compile a rule set against ``model`` (or take a plan already compiled for it) and run
    the plan through the engine (``cache_weights``: see :func:`quantize`).

    A statement, exclude or except that matches nothing (W301) raises E221, every one at once,
    before the engine runs; ``allow_unmatched=True`` applies the rest and warns W301 instead.
    """
    _check_module(model, "model")
    with _as_it_was(model):
        plan = rules if isinstance(rules, Plan) else rules.compile(model, registry=registry).plan
    if not allow_unmatched:
        raise_errors(unmatched_refused(plan.diagnostics, "allow_unmatched=True"))
    options = EngineOptions(calib, loss_fn, seed, teacher, cache_weights=cache_weights)
    return execute_plan(model, plan, options)


def run_plan(
    model: torch.nn.Module,
    plan: Plan,
    *,
    calib: Iterable[Any] | None = None,
    loss_fn: LossFn | None = None,
    seed: int = 0,
    teacher: torch.nn.Module | None = None,
    fused: bool = False,
    cache_weights: bool = True,
    progress: Progress | None = None,
) -> Compression:
    """Compute everything a plan asks for, then install it; any error leaves the model untouched.

    ``progress(done, total, label)`` is called as each pruning metric is computed and after
    each calibration batch; the other options are :class:`EngineOptions`'s.
    """
    options = EngineOptions(calib, loss_fn, seed, teacher, fused, cache_weights, progress)
    return execute_plan(model, plan, options)


def execute_plan(model: torch.nn.Module, plan: Plan, options: EngineOptions) -> Compression:
    """The one way a plan reaches the engine: ``apply``, ``prune``, ``quantize``, ``distill``,
    ``run_plan`` and the command's apply job all come here. Engine errors about a tensor are
    located at the rule that configured it.

    On a model that carries a compression the plan is added to it (see :class:`Compression`):
    what it asks for is computed against the weights as they were, through every mask, as one
    apply of both plans computes it, and the same compression is returned.
    """
    try:
        return _execute(model, plan, options)
    except CompressionError as exc:
        raise CompressionError(locate_in_rules(exc.diagnostics, plan)) from None


def _execute(model: torch.nn.Module, plan: Plan, options: EngineOptions) -> Compression:
    _check_module(model, "model")
    earlier = attached_compression(model)
    findings: list[Diagnostic] = []
    if earlier is None:
        computed = _computed(model, plan, options, None, findings)
        compression = Compression(model, plan, *computed, options)
        compression.attach()
    else:
        distills = bool(plan.of_mode(Mode.DISTILL))
        raise_errors(earlier.addition_errors(plan, distills))
        with earlier.lifted():
            earlier.add(plan, *_computed(model, plan, options, earlier, findings), options)
        compression = earlier
    compression.findings.extend(findings)
    emit_warnings([*plan.diagnostics, *findings])
    return compression


def _computed(
    model, plan: Plan, options: EngineOptions, earlier: Compression | None, findings: list
) -> tuple:
    """The plan's masks, scales and distillation targets, computed with the model untouched
    (``earlier``: the lifted compression the plan adds to); warnings about the data go to
    ``findings``."""
    calib = _batches(options.calib)
    keys = [e.key for e in plan.entries if e.kind is TargetKind.PARAMETER]
    check_not_compressed(model, keys)
    raise_errors(meta_tensor_errors(model, plan))
    before = [] if earlier is None else [e.key for e in earlier.plan.entries]
    raise_errors(shared_tensor_errors(model, [*before, *keys]))
    raise_errors(plan_errors(model, plan))  # every stage's errors at once, as lint reports them
    distill_entries = plan.of_mode(Mode.DISTILL)
    distill = None
    if distill_entries:  # the teacher's links checked before any calibration runs
        _check_module(options.teacher, "teacher")
        distill = (options.teacher, build_targets(distill_entries, options.teacher))
    masks = compute_masks(
        model,
        plan.of_mode(Mode.PRUNE),
        calib=calib,
        loss_fn=options.loss_fn,
        seed=options.seed,
        progress=options.progress,
    )
    if earlier is not None:  # activations are observed through every mask, as by one apply
        masks_seen = {**earlier.mask_table, **masks}
        mask_plan = Plan(earlier.plan.entries + plan.entries)
    else:
        masks_seen, mask_plan = masks, plan
    quant = _quant_params(
        model, plan.of_mode(Mode.QUANTIZE), mask_plan, masks_seen, calib, options.progress, findings
    )
    return masks, quant, distill


def _quant_params(
    model, entries, mask_plan: Plan, masks, calib, progress: Progress | None, findings: list
) -> dict:
    """Scales; activations are observed through the masks, as NNI calibrates."""
    if not masks or not entries:
        return compute_quant_params(model, entries, calib, progress, findings)
    masked = Compression(model, mask_plan, masks).attach()
    try:
        return compute_quant_params(model, entries, calib, progress, findings)
    finally:
        masked.restore()


def _as_it_was(model: Any) -> ContextManager:
    """Resolve against the model without the transforms of a compression it carries (the
    plan is then added to that compression)."""
    earlier = attached_compression(model) if isinstance(model, torch.nn.Module) else None
    return contextlib.nullcontext() if earlier is None else earlier.lifted()


def _check_module(value: Any, role: str) -> None:
    if not isinstance(value, torch.nn.Module):
        fail(
            "X803",
            f"the {role} must be a torch.nn.Module, got {type(value).__name__}",
            subject=role,
        )


def _batches(calib: Any) -> list | tuple | None:
    """Calibration batches as a list (read once), or a clear error for a non-iterable."""
    if calib is None or isinstance(calib, (list, tuple)):
        return calib
    if isinstance(calib, (torch.Tensor, str, bytes)) or not hasattr(calib, "__iter__"):
        fail(
            "X803",
            f"calib must be an iterable of batches, got {type(calib).__name__}",
            subject="calib",
            hint="pass a list of batches, e.g. calib=[x] for one batch x",
        )
    return list(calib)
