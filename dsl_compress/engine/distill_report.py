"""The distillation loss of a compressed student against its teacher over calibration batches:
what `apply` reports for a plan's distill statements (it cannot train)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from dsl_compress.diagnostics import fail
from dsl_compress.engine.calibration import guarded_batch, run_batches
from dsl_compress.engine.distill import (
    DistillTarget,
    clear_captured,
    target_losses,
    weighted_total,
)

# One batch through a model whose capture taps are installed.
RunBatch = Callable[[Any], None]

_TEACHER_HINT = (
    "the teacher runs on the student's calibration batches: its forward must accept them"
)


@dataclass(frozen=True)
class DistillFigure:
    """One distill target: the student tensor, its teacher links, lambda, the loss method and
    its loss (the smallest over its links) averaged over the batches."""

    name: str
    links: tuple[str, ...]
    weight: float
    method: str
    loss: float


@dataclass(frozen=True)
class DistillReport:
    """Every target's figure and the total, the mean over batches of the sum of lambda * loss
    (what ``Compression.loss()`` gives for one batch)."""

    batches: int
    targets: tuple[DistillFigure, ...]
    total: float

    def as_json(self) -> dict[str, Any]:
        """The report as distill.json holds it."""
        targets = [
            {
                "name": f.name,
                "links": list(f.links),
                "lambda": f.weight,
                "method": f.method,
                "loss": f.loss,
            }
            for f in self.targets
        ]
        return {"batches": self.batches, "total": self.total, "targets": targets}


def distill_report(
    model: torch.nn.Module,
    teacher: torch.nn.Module,
    targets: Sequence[DistillTarget],
    calib: Iterable[Any],
    run_teacher: RunBatch,
    run_student: RunBatch,
) -> DistillReport:
    """Each batch through the teacher, then the student (both without gradients, in eval mode;
    the modules' training flags are restored after), and the targets' losses
    between their captured outputs. Each figure is the mean of per-batch values, each first
    made a Python float, so any two runs that capture the same tensors report the same bits."""
    losses: list[list[float]] = [[] for _ in targets]
    totals: list[float] = []

    def step(batch: Any) -> None:
        try:
            guarded_batch(run_teacher, batch, len(totals), "the teacher", _TEACHER_HINT)
            run_student(batch)
            found = target_losses(targets)
            totals.append(float(weighted_total(targets, found)))
        finally:
            clear_captured(targets)
        for kept, loss in zip(losses, found):
            kept.append(float(loss))

    teacher_flags = {m: m.training for m in teacher.modules()}
    teacher.eval()
    try:
        with torch.no_grad():
            count = run_batches(model, calib, step)
    finally:
        for module, flag in teacher_flags.items():
            module.training = flag
    if count == 0:
        fail("D702", "the distillation loss got no calibration batches", subject="--calib")
    figures = tuple(
        DistillFigure(t.name, t.links, t.weight, t.method, _mean(kept))
        for t, kept in zip(targets, losses)
    )
    return DistillReport(count, figures, _mean(totals))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
