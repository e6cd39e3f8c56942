"""The streamed apply job: a plan run over a model skeleton and its checkpoint one tensor at a time,
summarised per rule and written to its output folder, never holding the model."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from dsl_compress.diagnostics import CompressionError, Diagnostic, fail, raise_errors
from dsl_compress.engine.distill import build_targets
from dsl_compress.engine.distill_report import DistillReport
from dsl_compress.engine.options import LossFn, Progress
from dsl_compress.engine.stream_distill import StreamTeacher
from dsl_compress.engine.ranks import assign_ranks
from dsl_compress.engine.stream import StreamRun
from dsl_compress.engine.stream_data import StreamResult
from dsl_compress.io.stream_outputs import (
    StreamedOutput,
    TeamShare,
    dry_run_sink,
    merged,
    write_streamed,
)
from dsl_compress.io.weights import weight_reader
from dsl_compress.plan import Plan, locate_in_rules
from dsl_compress.resolve.targets import shared_tensor_errors
from dsl_compress.tools.summary import SummaryRow, SummaryTotal, summarize_counts
from dsl_compress.tools.team import Team
from dsl_compress.vocab import Mode, TargetKind


@dataclass(frozen=True)
class StreamJobResult:
    """A streamed apply: the plan it ran, one summary row per rule and the total, the files
    written (none for a dry run) and the warnings of the checkpoint and the data."""

    plan: Plan
    rows: tuple[SummaryRow, ...]
    total: SummaryTotal
    written: tuple[Path, ...]
    findings: tuple[Diagnostic, ...]
    distill: DistillReport | None = None


@dataclass(frozen=True)
class StreamJob:
    """Where a streamed apply reads and writes (``output`` None: a dry run), and how."""

    weights: str | Path
    output: StreamedOutput | None
    seed: int = 0
    calib: Sequence[Any] | None = None
    # Scales rounded to their weight's dtype (a dry run of a format that stores them so).
    scales_like_weights: bool = False
    loss_fn: LossFn | None = None
    # The distill targets' teacher: None for the model itself, uncompressed; a meta skeleton
    # with its checkpoint, or a module in memory (teacher_weights None).
    teacher: torch.nn.Module | None = None
    teacher_weights: str | Path | None = None


def stream_apply_job(
    skeleton: torch.nn.Module,
    plan: Plan,
    job: StreamJob,
    progress: Progress | None = None,
    team: Team | None = None,
) -> StreamJobResult:
    """Run ``plan`` over ``skeleton`` (a meta model) with each tensor read from the job's
    checkpoint, and write the output folder an in-memory apply writes, bit for bit the same
    tensors; without an output (a dry run) the tensors are computed and dropped.

    The checkpoint's names, shapes and dtypes are checked against the skeleton, and every error
    of the plan's settings and shapes raised (located at its rule), before any tensor is read.

    With ``team`` (every process of a torchrun job calls this) the tensors are split among
    the processes, balanced by bytes, each reading only its own; the output is the one a
    single process writes, bit for bit (:func:`dsl_compress.io.stream_outputs.write_streamed`).
    Rank 0's result covers the whole run.
    """
    keys = [e.key for e in plan.entries if e.kind is TargetKind.PARAMETER]
    _located(plan, lambda: raise_errors(shared_tensor_errors(skeleton, keys)))
    with contextlib.ExitStack() as stack:
        read, cast_warnings = stack.enter_context(weight_reader(skeleton, job.weights))
        rounded = job.scales_like_weights or (
            job.output is not None and job.output.format.scales_like_weights
        )
        run = _located(plan, lambda: StreamRun(skeleton, plan, read, job.seed, rounded))
        reports = _check_distillation(skeleton, plan, job, team)
        teacher = _teacher(job, stack) if reports else None
        _located(plan, lambda: run.calibrate(job.calib, progress, job.loss_fn))
        if teacher is not None:
            run.report_distillation(teacher, job.calib)
        share = None
        if team is not None:
            share = TeamShare(assign_ranks(run.sizes, run.linked, team.world), team)
        if job.output is None:
            written, result = [], _located(plan, lambda: _dry(run, progress, share))
        else:
            write = functools.partial(write_streamed, run, plan, job.output, progress, share)
            written, result = _located(plan, write)
    rows, total = summarize_counts(plan, result.mask_counts, result.quant_dtypes)
    findings = (*cast_warnings, *result.findings)
    report = run.distill_report
    return StreamJobResult(plan, tuple(rows), total, tuple(written), findings, report)


def _check_distillation(skeleton, plan: Plan, job: StreamJob, team: Team | None) -> bool:
    """Whether the run reports the distillation loss: the teacher's links are checked (D701)
    and, under torchrun, the report refused (X805) before any tensor is read."""
    entries = plan.of_mode(Mode.DISTILL)
    if not entries:
        return False
    teacher = skeleton if job.teacher is None else job.teacher
    _located(plan, lambda: build_targets(entries, teacher))
    if job.calib is None:
        return False
    _refuse_team_distillation(plan, team)
    return True


def _teacher(job: StreamJob, stack: contextlib.ExitStack) -> StreamTeacher:
    """The teacher as the run reads it: its checkpoint opened for the rest of the job."""
    if job.teacher is None:
        return StreamTeacher()
    if job.teacher_weights is None:
        return StreamTeacher(job.teacher)
    read, _ = stack.enter_context(weight_reader(job.teacher, job.teacher_weights, "teacher"))
    return StreamTeacher(job.teacher, read)


def _refuse_team_distillation(plan: Plan, team: Team | None) -> None:
    """The streamed distillation loss runs the whole compressed model in one process."""
    if team is None:
        return
    entry = plan.of_mode(Mode.DISTILL)[0]
    fail(
        "X805",
        "the distillation loss with --calib is computed by one process (it runs the whole "
        "compressed model), not under torchrun",
        subject=entry.subject,
        hint="run apply --stream --calib as one process, or leave --calib out under torchrun "
        "(the distill entries are still recorded)",
    )


def _dry(run: StreamRun, progress, share: TeamShare | None) -> StreamResult:
    with dry_run_sink(run, share) as sink:
        result = run.run(sink, progress, share)
        return result if share is None else merged(share.team.gather(result))


def _located(plan: Plan, compute):
    """Engine errors about a tensor located at the rule that configured it, as apply does."""
    try:
        return compute()
    except CompressionError as exc:
        raise CompressionError(locate_in_rules(exc.diagnostics, plan)) from None
