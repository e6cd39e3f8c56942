"""Distillation stage of the engine: capture student and teacher outputs and compute the loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from dsl_compress.diagnostics import did_you_mean, error, fail, raise_errors
from dsl_compress.engine.taps import install_tap
from dsl_compress.plan import PlanEntry

# NNI's kl loss: temperature 2, scaled by T^2, batchmean.
KL_TEMPERATURE = 2.0


@dataclass
class DistillTarget:
    """One student output, its teacher links, and the latest tensors seen for each."""

    entry: PlanEntry
    links: tuple[str, ...]
    weight: float
    method: str
    student: torch.Tensor | None = None
    teacher: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.entry.module}.{self.entry.target}"


def resolve_links(entry: PlanEntry) -> tuple[str, ...]:
    """NNI: link None means 'auto', the student's own module name; a str is one link."""
    link = entry.setting.get("link")
    if link is None or link == "auto":
        return (entry.module,)
    if isinstance(link, str):
        return (link,)
    return tuple(link)


def build_targets(entries: Sequence[PlanEntry], teacher: torch.nn.Module) -> list[DistillTarget]:
    """Distillation targets with links checked against the teacher; raises before any hook."""
    teacher_names = dict(teacher.named_modules())
    targets, diags = [], []
    for entry in entries:
        links = resolve_links(entry)
        for link in links:
            if link not in teacher_names:
                diags.append(
                    error(
                        "D701",
                        f"distillation link '{link}' of '{entry.module}.{entry.target}' "
                        "is not a module of the teacher",
                        subject=entry.subject,
                        hint=did_you_mean(link, teacher_names),
                    )
                )
        weight = entry.setting.get("lambda")
        method = entry.setting.get("apply_method") or "mse"
        targets.append(
            DistillTarget(entry, links, 1.0 if weight is None else float(weight), method)
        )
    raise_errors(diags)
    return targets


def install_capture(student: torch.nn.Module, teacher: torch.nn.Module, targets) -> list:
    """Hooks keeping the latest student output (with grad) and teacher output (detached)."""
    return [*install_student_capture(student, targets), *install_teacher_capture(teacher, targets)]


def install_student_capture(student: torch.nn.Module, targets) -> list:
    """Hooks keeping each target's latest student output."""
    modules = dict(student.named_modules())
    return [install_tap(modules[t.entry.module], t.entry.target, _keep_student(t)) for t in targets]


def install_teacher_capture(teacher: torch.nn.Module, targets) -> list:
    """Hooks keeping each target's latest teacher output at each of its links (detached)."""
    modules = dict(teacher.named_modules())
    return [
        install_tap(modules[link], t.entry.target, _keep_teacher(t, link))
        for t in targets
        for link in t.links
    ]


def _keep_student(target: DistillTarget):
    def keep(tensor: torch.Tensor) -> None:
        target.student = tensor

    return keep


def _keep_teacher(target: DistillTarget, link: str):
    def keep(tensor: torch.Tensor) -> None:
        target.teacher[link] = tensor.detach()

    return keep


def distill_loss(targets: Sequence[DistillTarget]) -> torch.Tensor:
    """Sum over targets of lambda * (the smallest loss over its links); clears captured tensors."""
    losses = target_losses(targets)
    clear_captured(targets)
    if not losses:
        fail("D702", "the compression has no distillation targets", subject="loss()")
    return weighted_total(targets, losses)


def target_losses(targets: Sequence[DistillTarget]) -> list[torch.Tensor]:
    """Each target's loss: the smallest over its links of the loss between the captured
    student and teacher outputs (D702 where one was not captured)."""
    for target in targets:
        missing = [link for link in target.links if link not in target.teacher]
        if target.student is None or missing:
            fail(
                "D702",
                f"no {'student' if target.student is None else 'teacher'} output captured "
                f"for '{target.name}'",
                subject=target.name,
                hint="run teacher(batch) and student(batch) before compression.loss()",
            )
    return [torch.stack([_pair_loss(t, link) for link in t.links]).min() for t in targets]


def weighted_total(targets: Sequence[DistillTarget], losses: Sequence[torch.Tensor]):
    """Sum over targets of lambda * loss, in target order."""
    total = None
    for target, loss in zip(targets, losses):
        term = target.weight * loss
        total = term if total is None else total + term
    return total


def clear_captured(targets: Sequence[DistillTarget]) -> None:
    for target in targets:
        target.student = None
        target.teacher.clear()


def _pair_loss(target: DistillTarget, link: str) -> torch.Tensor:
    student, teacher = target.student, target.teacher[link]
    if student.shape != teacher.shape:
        fail(
            "D703",
            f"student '{target.name}' has shape {list(student.shape)} but teacher '{link}' "
            f"has {list(teacher.shape)}",
            subject=target.name,
            hint="link modules whose outputs have the same shape",
        )
    if student.numel() == 0:
        # Nothing to compare: 0 rather than the NaN a mean over no elements gives.
        return student.sum()
    if target.method == "kl":
        t = KL_TEMPERATURE
        log_p = F.log_softmax(student / t, dim=-1)
        q = F.softmax(teacher / t, dim=-1)
        return F.kl_div(log_p, q, reduction="batchmean") * (t * t)
    return F.mse_loss(student, teacher)
