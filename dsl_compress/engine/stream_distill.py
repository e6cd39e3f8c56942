"""The distillation loss over a meta skeleton: per batch a teacher pass, then a student pass,
each module's weights read just before its forward and dropped after it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from dsl_compress.engine.calibration import call_model
from dsl_compress.engine.distill import (
    build_targets,
    install_student_capture,
    install_teacher_capture,
)
from dsl_compress.engine.distill_report import DistillReport, distill_report
from dsl_compress.engine.onload import onloaded
from dsl_compress.engine.taps import install_tap
from dsl_compress.engine.transforms import TargetTransform
from dsl_compress.plan import Key, PlanEntry

Read = Callable[[str], torch.Tensor]


@dataclass(frozen=True)
class StreamTeacher:
    """The model distill targets compare against: a module (a meta skeleton, whose tensors
    ``read`` gives, or one whose weights are in memory) and its reader; None for the student's
    own skeleton with its uncompressed weights."""

    module: torch.nn.Module | None = None
    read: Read | None = None


def streamed_distill_report(
    skeleton: torch.nn.Module,
    entries: Sequence[PlanEntry],
    calib: Any,
    student: tuple[Read, Mapping[Key, TargetTransform]],
    teacher: torch.nn.Module,
    teacher_read: Read | None,
) -> DistillReport:
    """The report the in-memory apply gives (:func:`distill_report` over the compressed model),
    bit for bit: ``student`` is a reader of the compressed weights (the values finalize()
    bakes, which the in-memory student computes in its forward) and the input/output
    transforms (masks and fake quantization, installed before the capture taps, as a
    ``Compression`` installs them). Only the targets' captured outputs outlive a pass.
    """
    targets = build_targets(entries, teacher)
    student_read, transforms = student

    def run_teacher(batch: Any) -> None:
        # A teacher in memory (no reader) runs as it is.
        loaded = contextlib.nullcontext() if teacher_read is None else None
        with _tapped(install_teacher_capture(teacher, targets)):
            with loaded or onloaded(teacher, teacher_read):
                call_model(teacher, batch)

    def run_student(batch: Any) -> None:
        modules = dict(skeleton.named_modules())
        taps = [install_tap(modules[key[0]], key[1], fn) for key, fn in transforms.items()]
        taps += install_student_capture(skeleton, targets)
        with _tapped(taps), onloaded(skeleton, student_read):
            call_model(skeleton, batch)

    return distill_report(skeleton, teacher, targets, calib, run_teacher, run_student)


@contextlib.contextmanager
def _tapped(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
