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
from dsl_compress.diagnostics import fail
from dsl_compress.engine.compression import Compression
from dsl_compress.io import outputs
from dsl_compress.engine.options import EngineOptions, Progress
from dsl_compress.io.outputs import OUTPUT_FILES
from dsl_compress.plan import Plan
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


def apply_plan_job(
    model: torch.nn.Module,
    plan: Plan,
    *,
    calib: Iterable[Any] | None = None,
    teacher: torch.nn.Module | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ApplyResult:
    """Run ``plan`` on ``model``; with ``dry_run`` report what it would reach and restore the model.

    ``progress(done, total, label)`` counts the pruning metrics as they are computed and the
    calibration batches as they run.
    """
    options = EngineOptions(calib=calib, teacher=teacher, progress=progress)
    compression = execute_plan(model, plan, options)
    try:
        rows, total = summarize(compression)
        rows = tuple(rows)
    finally:
        if dry_run:
            compression.restore()
    return ApplyResult(compression, plan, rows, total, dry_run)


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
    safetensors file is sharded (see :func:`dsl_compress.io.outputs.write_outputs`)."""
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
