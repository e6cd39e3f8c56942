"""Pruning stage of the engine: from plan entries and a model to bool masks, touching nothing."""

from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from dsl_compress.diagnostics import CompressionError, Diagnostic, error, fail, raise_errors
from dsl_compress.engine.calibration import first_shapes, run_batches
from dsl_compress.engine.mask_checks import diagnostics, mask_problems
from dsl_compress.engine.mask_request import MaskRequest, is_active, ranked
from dsl_compress.engine.masks import masks_of_checked
from dsl_compress.engine.metrics import compute_metric
from dsl_compress.engine.options import LossFn, Progress
from dsl_compress.plan import PlanEntry, Key
from dsl_compress.vocab import DEFAULT_METRIC, TargetKind, check_metric


def compute_masks(
    model: torch.nn.Module,
    entries: Sequence[PlanEntry],
    *,
    calib: Iterable[Any] | None = None,
    loss_fn: LossFn | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[Key, torch.Tensor]:
    """Bool masks (True = kept) for every pruning entry; raises before anything is modified.

    Every error the settings and shapes give (unknown metrics, and the mask stage's checks)
    is raised at once, before the taylor metric's calibration runs.
    """
    modules = dict(model.named_modules())
    shapes = _activation_shapes(model, modules, entries, calib)
    requests = mask_requests(modules, entries, shapes)
    raise_errors([*_metric_errors(entries), *diagnostics(mask_problems(requests))])
    scores = _taylor_scores(model, modules, entries, calib, loss_fn)
    requests = mask_requests(modules, entries, shapes, scores, seed)
    return masks_of_checked(_counted(requests, progress) if progress else requests)


def mask_requests(
    modules: Mapping[str, torch.nn.Module],
    entries: Sequence[PlanEntry],
    activation_shapes: Mapping[Key, tuple[int, ...]],
    scores: Mapping[Key, torch.Tensor] | None = None,
    seed: int = 0,
) -> list[MaskRequest]:
    """What the mask stage knows of each entry; metrics are computed only when used. The plan's
    checks (``plan_checks``, which lint runs too) build theirs torch-free with
    ``mask_request.checked_request``, equal in everything :func:`mask_problems` reads."""
    requests = []
    for entry in entries:
        tensor, shape = None, activation_shapes.get(entry.key)
        if entry.kind is TargetKind.PARAMETER:
            tensor = getattr(modules[entry.module], entry.target)
            shape = tuple(tensor.shape)
        requests.append(request_of(entry, shape, tensor, scores or {}, seed))
    return requests


def _metric_errors(entries: Sequence[PlanEntry]) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for entry in entries:
        try:
            check_metric(entry.metric or DEFAULT_METRIC)
        except CompressionError as exc:
            found.extend(exc.diagnostics)
    return found


def _counted(requests: list[MaskRequest], progress: Progress) -> list[MaskRequest]:
    """Requests whose metric reports progress(done, total, 'module.target') when computed."""
    active = [r for r in requests if callable(r.metric)]
    done = iter(range(1, len(active) + 1))

    def ticking(request: MaskRequest):
        def metric() -> torch.Tensor:
            value = request.metric()
            progress(next(done), len(active), request.name)
            return value

        return dataclasses.replace(request, metric=metric)

    return [ticking(r) if callable(r.metric) else r for r in requests]


def request_of(
    entry: PlanEntry,
    shape: tuple[int, ...] | None,
    tensor: torch.Tensor | Callable[[], torch.Tensor] | None,
    scores: Mapping[Key, torch.Tensor],
    seed: int,
) -> MaskRequest:
    """The mask request of one entry of ``shape`` (an input/output target's: as observed, or
    None); ``tensor`` is the parameter, or a callable reading it (a streamed run). The
    metric is computed on each use, from the tensor as it is then."""
    metric = None
    if ranked(entry):
        # The score is looked up when the metric is computed: a streamed run drops each
        # score from ``scores`` once its mask is made.
        metric = functools.partial(_metric_of, entry, tensor, scores, seed)
    return MaskRequest(
        module=entry.module,
        target=entry.target,
        kind=entry.kind,
        setting=entry.setting,
        shape=shape,
        metric=metric,
    )


def _metric_of(entry: PlanEntry, tensor, scores: Mapping[Key, torch.Tensor], seed: int):
    """The entry's metric; ``random`` draws from a generator of its own, seeded by ``seed``
    and the tensor's name, so a target's values do not depend on which others are masked,
    in which order, or in which process."""
    data = tensor() if callable(tensor) else tensor.detach()
    name = f"{entry.module}.{entry.target}"
    generator = torch.Generator().manual_seed(seed ^ zlib.crc32(name.encode()))
    return compute_metric(
        entry.metric or DEFAULT_METRIC,
        data,
        entry.kernel,
        subject=entry.subject,
        score=scores.get(entry.key),
        generator=generator,
    )


def _activation_shapes(model, modules, entries, calib) -> dict[Key, tuple[int, ...]]:
    """Shapes of input/output targets, observed on the first calibration batch when given."""
    wanted = [e for e in entries if e.kind is not TargetKind.PARAMETER]
    if not wanted or calib is None:
        return {}
    first = next(iter(calib), None)
    targets = [(modules[e.module], e.target, e.key) for e in wanted]
    return first_shapes(model, targets, [] if first is None else [first])


def taylor_entries(entries: Sequence[PlanEntry]) -> list[PlanEntry]:
    """The entries whose masks the taylor metric ranks."""
    return [e for e in entries if e.metric == "taylor" and is_active(e)]


def require_taylor_inputs(
    taylor: Sequence[PlanEntry], calib: Any, loss_fn: Any, hint: str | None = None
) -> None:
    """P507 at the first taylor entry unless there are calibration batches and a loss."""
    if calib is None or loss_fn is None:
        raise CompressionError([missing_taylor_inputs(taylor, (), hint)])


def missing_taylor_inputs(
    taylor: Sequence[PlanEntry], missing: Sequence[str], hint: str | None = None
) -> Diagnostic:
    """P507 at the first taylor entry for its missing calibration batches or loss (``missing``
    names them as the caller takes them, e.g. command-line options)."""
    verb = "is" if len(missing) == 1 else "are"
    absent = f", and {' and '.join(missing)} {verb} missing" if missing else ""
    return error(
        "P507",
        f"the taylor metric needs calibration batches and a loss function{absent}",
        subject=taylor[0].subject,
        hint=hint,
    )


def _taylor_scores(model, modules, entries, calib, loss_fn) -> dict[Key, torch.Tensor]:
    """Mean of (w * dL/dw)^2 over the calibration batches, without touching any .grad."""
    taylor = taylor_entries(entries)
    if not taylor:
        return {}
    require_taylor_inputs(
        taylor,
        calib,
        loss_fn,
        hint="call prune(model, config_list, metric='taylor', calib=batches, "
        "loss_fn=lambda model, batch: loss)",
    )
    params = [getattr(modules[e.module], e.target) for e in taylor]
    check_trainable(taylor, params)
    totals = [torch.zeros_like(p, dtype=torch.float32) for p in params]

    def step(batch: Any) -> None:
        loss = checked_loss(loss_fn(model, batch))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for total, param, grad in zip(totals, params, grads):
            if grad is not None:
                add_taylor_term(total, param.detach(), grad)

    steps = run_batches(model, calib, step)
    return taylor_means(taylor, totals, steps)


def check_trainable(taylor: Sequence[PlanEntry], params: Sequence[torch.Tensor]) -> None:
    """P507 for a taylor target whose parameter takes no gradient."""
    for entry, param in zip(taylor, params):
        if not param.requires_grad:
            fail(
                "P507",
                f"the taylor metric needs gradients, but '{entry.module}.{entry.target}' "
                "has requires_grad=False",
                subject=entry.subject,
                hint="use another metric for frozen parameters, or unfreeze them",
            )


def checked_loss(loss: Any, subject: str = "loss_fn") -> torch.Tensor:
    """``loss``, if it is a scalar tensor computed from the model; P507 at ``subject`` otherwise."""
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not loss.requires_grad:
        fail(
            "P507",
            "loss_fn(model, batch) must return a scalar tensor computed from the model",
            subject=subject,
            hint="reduce the loss, e.g. loss.mean(), and do not detach it",
        )
    return loss


def add_taylor_term(total: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor) -> None:
    """One batch's (w * dL/dw)^2, in fp32, added to ``total``."""
    total.add_((weight.float() * grad.float()) ** 2)


def require_batches(taylor: Sequence[PlanEntry], steps: int) -> None:
    """P507 when the taylor pass ran over no calibration batch."""
    if steps == 0:
        fail("P507", "the taylor metric got no calibration batches", subject=taylor[0].subject)


def taylor_means(taylor: Sequence[PlanEntry], totals, steps: int) -> dict[Key, torch.Tensor]:
    """Each target's score: its total over ``steps`` batches (P507 for none)."""
    require_batches(taylor, steps)
    return {e.key: total / steps for e, total in zip(taylor, totals)}
