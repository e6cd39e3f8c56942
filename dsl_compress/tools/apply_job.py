"""The apply job: run a plan, summarise it per rule, write its output folder (or restore the model)."""

from __future__ import annotations

import importlib.machinery
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from dsl_compress.api import execute_plan
from dsl_compress.diagnostics import CompressionError, Diagnostic, fail
from dsl_compress.engine.calibration import call_model
from dsl_compress.engine.distill_report import DistillReport, distill_report
from dsl_compress.engine.prune import missing_taylor_inputs, taylor_entries
from dsl_compress.engine.compression import Compression
from dsl_compress.io import outputs
from dsl_compress.engine.options import EngineOptions, LossFn, Progress
from dsl_compress.io.outputs import DISTILL_FILE, OUTPUT_FILES
from dsl_compress.plan import Plan, locate_in_rules
from dsl_compress.vocab import Mode
from dsl_compress.tools.summary import SummaryRow, SummaryTotal, summarize

__all__ = ["OUTPUT_FILES", "ApplyResult", "apply_plan_job", "write_outputs"]


@dataclass(frozen=True)
class ApplyResult:
    """A compression, the plan it ran, one summary row per rule and the total; restored when
    ``dry_run``."""

    compression: Compression
    plan: Plan
    rows: tuple[SummaryRow, ...]
    total: SummaryTotal
    dry_run: bool = False
    distill: DistillReport | None = None


def apply_plan_job(
    model: torch.nn.Module,
    plan: Plan,
    *,
    calib: Iterable[Any] | None = None,
    teacher: torch.nn.Module | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    loss_fn: LossFn | None = None,
) -> ApplyResult:
    """Run ``plan`` on ``model``; with ``dry_run`` report what it would reach and restore the model.

    ``progress(done, total, label)`` counts the pruning metrics as they are computed and the
    calibration batches as they run. A plan that distills, given ``calib``, reports the
    distillation loss of the compressed model against ``teacher`` over those batches.
    """
    options = EngineOptions(calib=calib, loss_fn=loss_fn, teacher=teacher, progress=progress)
    compression = execute_plan(model, plan, options)
    try:
        rows, total = summarize(compression)
        rows = tuple(rows)
        report = None
        if compression.distill_targets is not None and calib is not None:
            report = _distill_report(compression, calib, plan)
    finally:
        if dry_run:
            compression.restore()
    return ApplyResult(compression, plan, rows, total, dry_run, report)


def _distill_report(compression: Compression, calib: Iterable[Any], plan: Plan) -> DistillReport:
    """The distillation loss of the compressed model (its masks and scales in place, as the
    compression's forward computes them) against the teacher, batch by batch; an error about
    a target (D703) located at its rule."""
    teacher, targets = compression.distill_targets
    student = compression.model
    try:
        return distill_report(
            student,
            teacher,
            targets,
            calib,
            lambda batch: call_model(teacher, batch),
            lambda batch: call_model(student, batch),
        )
    except CompressionError as exc:
        raise CompressionError(locate_in_rules(exc.diagnostics, plan)) from None


def taylor_input_errors(plan: Plan, calib_given: bool, loss_given: bool) -> list[Diagnostic]:
    """P507 for a plan that ranks by the taylor metric without --calib and --loss."""
    taylor = taylor_entries(plan.of_mode(Mode.PRUNE))
    if not taylor or (calib_given and loss_given):
        return []
    given = {"--calib": calib_given, "--loss": loss_given}
    missing = [option for option, present in given.items() if not present]
    hint = (
        "give --calib FILE|SPEC (the batches) and --loss SPEC (loss_fn(model, batch) "
        "returning a scalar tensor, as package.module:callable or path/file.py:callable)"
    )
    return [missing_taylor_inputs(taylor, missing, hint)]


def write_outputs(
    result: ApplyResult,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    inputs: Iterable[str | Path] = (),
    max_shard_size: int | None = None,
) -> list[Path]:
    """Finalize the job's compression and write its output folder, all or nothing; ``inputs``
    are the files it read, which the folder must not hold; past ``max_shard_size`` bytes a
    safetensors file is sharded (see :func:`dsl_compress.io.outputs.write_outputs`); the
    distillation loss the job reported goes to distill.json."""
    if result.dry_run:
        fail("X803", "a dry run has no weights to write", subject=str(out_dir))
    return outputs.write_outputs(
        result.compression,
        result.plan,
        out_dir,
        overwrite=overwrite,
        progress=progress,
        inputs=inputs,
        max_shard_size=max_shard_size,
        extra_json=None if result.distill is None else {DISTILL_FILE: result.distill.as_json()},
    )


def spec_files(spec: str | None) -> list[Path]:
    """The files a command-line input reads: a file itself, the file of ``path.py:callable``,
    or where the top package of ``package.module:callable`` lives (found, not imported)."""
    if not spec:
        return []
    if Path(spec).exists():
        return [Path(spec)]
    target = spec.rpartition(":")[0]
    if target.endswith(".py") or "/" in target or "\\" in target:
        return [Path(target)]
    if not all(part.isidentifier() for part in target.split(".")):
        return []
    found = importlib.machinery.PathFinder.find_spec(target.split(".")[0], [os.getcwd(), *sys.path])
    if found is None:
        return []
    places = found.submodule_search_locations or ([found.origin] if found.has_location else [])
    return [Path(place) for place in places]
