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
from dsl_compress.engine.quantize import QuantParams
from dsl_compress.engine.stream_data import by_module
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


@dataclass(frozen=True)
class StreamStudent:
    """The compressed student as a streamed run gives it: a reader of each tensor's final value
    (the value finalize() bakes, which the in-memory student computes in its forward) and the
    input/output targets' run-time transforms, by target."""

    read: Read
    transforms: Mapping[Key, TargetTransform]


def io_transforms(
    masks: Mapping[Key, torch.Tensor],
    params: Mapping[Key, QuantParams],
    methods: Mapping[Key, str],
) -> dict[Key, TargetTransform]:
    """The input/output targets' run-time transforms (mask, then fake quantization), in the
    order a ``Compression`` installs them."""
    keys = by_module([*masks, *[k for k in params if k not in masks]])
    return {
        key: TargetTransform(masks.get(key), methods.get(key, "mul"), params.get(key))
        for key in keys
    }


def streamed_distill_report(
    skeleton: torch.nn.Module,
    entries: Sequence[PlanEntry],
    calib: Any,
    student: StreamStudent,
    stream_teacher: StreamTeacher,
) -> DistillReport:
    """The report the in-memory apply gives (:func:`distill_report` over the compressed model),
    bit for bit: the student's input/output transforms are installed before the capture taps,
    as a ``Compression`` installs them. Only the targets' captured outputs outlive a pass.
    """
    teacher, teacher_read = stream_teacher.module, stream_teacher.read
    targets = build_targets(entries, teacher)
    student_read, transforms = student.read, student.transforms

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
