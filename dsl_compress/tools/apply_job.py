"""The apply job: run a plan, report it per rule, and write its output folder atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from safetensors.torch import save_file

from dsl_compress.api import run_plan
from dsl_compress.diagnostics import (
    CompressionError,
    CompressionWarning,
    Diagnostic,
    Severity,
    Span,
    did_you_mean,
    error,
    fail,
)
from dsl_compress.engine.compression import Compression
from dsl_compress.vocab import Mode
from dsl_compress.plan import Plan, locate_in_rules
from dsl_compress.engine.prune import check_metric
from dsl_compress.tools.summary import SummaryRow, compression_rows
from dsl_compress.resolve.from_config import build_plan
from dsl_compress.schema.registry import Registry

Progress = Callable[[int, int, str], None]
OUTPUT_FILES = (
    "model.safetensors",
    "masks.safetensors",
    "quant.safetensors",
    "plan.json",
    "config_list.json",
)


@dataclass(frozen=True)
class ApplyResult:
    """A compression, the plan it ran and one summary row per rule; restored when ``dry_run``."""

    compression: Compression
    plan: Plan
    rows: tuple[SummaryRow, ...]
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

    Engine errors about a tensor are located at the rule that configured it.
    ``progress(done, total, label)`` counts the pruning metrics as they are computed.
    """
    try:
        compression = run_plan(model, plan, calib=calib, teacher=teacher, progress=progress)
    except CompressionError as exc:
        raise CompressionError(locate_in_rules(exc.diagnostics, plan)) from None
    try:
        rows = tuple(compression_rows(compression))
    finally:
        if dry_run:
            compression.restore()
    return ApplyResult(compression, plan, rows, dry_run)


def plan_from_config_list(
    model: torch.nn.Module,
    config_list_json: str | Path | list | dict,
    mode: Mode | str | None = None,
    metric: str | None = None,
    *,
    registry: Registry | None = None,
) -> Plan:
    """A plan from an NNI config_list: a JSON file path, or its parsed content.

    A list needs ``mode``; a ``{"prune": [...], "quantize": [...], "distill": [...]}`` object
    (what write_outputs puts in config_list.json) gives every mode, or only ``mode`` when given.
    ``metric`` is the pruning metric (NNI gives it to the pruner, not the config_list).
    """
    data = config_list_json
    if isinstance(data, (str, Path)):
        data = read_json(Path(data))
    lists = _lists_by_mode(data, _mode(mode))
    if metric is not None and Mode.PRUNE in lists:
        check_metric(metric)
    entries, diags, errors = [], [], []
    for each, config_list in lists.items():
        try:
            plan = build_plan(model, config_list, each, registry=registry, metric=metric)
        except CompressionError as exc:
            errors.extend(exc.diagnostics)
            continue
        entries.extend(plan.entries)
        diags.extend(plan.diagnostics)
    if errors:
        raise CompressionError(errors)
    return Plan(tuple(entries), tuple(diags))


def _mode(mode: Mode | str | None) -> Mode | None:
    if mode is None or isinstance(mode, Mode):
        return mode
    names = [m.value for m in Mode]
    if mode not in names:
        hint = did_you_mean(str(mode), names) or f"use one of {', '.join(names)}"
        fail("X803", f"unknown mode {mode!r}", subject="mode", hint=hint)
    return Mode(mode)


def _lists_by_mode(data: Any, mode: Mode | None) -> dict[Mode, Any]:
    names = {m.value for m in Mode}
    if isinstance(data, dict) and data and set(data) <= names:
        return {Mode(k): v for k, v in data.items() if mode is None or Mode(k) is mode}
    if mode is None:
        fail(
            "X803",
            "an NNI config_list needs a mode",
            subject="mode",
            hint="give the mode: prune, quantize or distill",
        )
    return {mode: data}


def read_json(path: Path) -> Any:
    """A JSON file's content; a missing file or invalid JSON is one diagnostic naming where."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        fail("E205", f"cannot read config_list file '{path}': {reason}", subject=str(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        span = Span(str(path), exc.lineno, exc.colno, exc.lineno, exc.colno + 1)
        message = f"'{path}' is not JSON: {exc.msg}"
        raise CompressionError([Diagnostic("C101", Severity.ERROR, message, span=span)]) from None


def write_outputs(
    result: ApplyResult,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> list[Path]:
    """Finalize the compression and write OUTPUT_FILES into ``out_dir``, all or nothing.

    Files are written to a fresh folder beside ``out_dir`` and moved into place once all
    are written; an existing ``out_dir`` that is not empty is refused (L105) unless
    ``overwrite``, and then replaced as a whole. On any failure nothing is left at
    ``out_dir`` (an existing one stays as it was) and the temporary folder is removed.
    """
    out = Path(out_dir)
    if result.dry_run:
        fail("X803", "a dry run has no weights to write", subject=str(out))
    # Absolute but not resolved: '.' gets a real parent, a symlinked folder stays a link.
    target = Path(os.path.abspath(out))
    check_destination(target, overwrite)
    staging = _make_staging(target)
    try:
        written = _write_files(result, staging, progress)
        _move_into_place(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise _output_error(out, exc) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / path.name for path in written]


def check_destination(out: Path, overwrite: bool) -> None:
    """Refuse an output path that cannot be (re)placed, before any work is done."""
    whole = out.resolve()
    if not out.name or whole == Path.cwd() or whole in Path.cwd().parents:
        fail(
            "L105",
            f"output folder '{out}' holds the working folder; it cannot be replaced",
            subject=str(out),
            hint="write to a new folder",
        )
    if out.exists() and not out.is_dir():
        fail("L105", f"output path '{out}' exists and is not a folder", subject=str(out))
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        fail(
            "L105",
            f"output folder '{out}' exists and is not empty",
            subject=str(out),
            hint="choose a new folder or allow overwriting it; nothing was written",
        )


def _make_staging(out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the results are not
        return staging
    except OSError as exc:
        raise _output_error(out, exc) from None


def _output_error(out: Path, exc: OSError) -> CompressionError:
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    message = f"cannot write '{out}': {reason}{where}"
    return CompressionError([error("L105", message, subject=str(out))])


def _move_into_place(staging: Path, out: Path) -> None:
    """Swap the staging folder in; an existing folder is set aside and put back on failure."""
    if not out.exists():
        os.rename(staging, out)
        return
    old = staging.with_name(staging.name + ".old")
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)
        raise
    if old.is_symlink():
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)


def _write_files(result: ApplyResult, folder: Path, progress: Progress | None) -> list[Path]:
    """Copy masks and scales out, finalize, then write each file (progress counts steps)."""
    compression, total = result.compression, len(OUTPUT_FILES) + 1
    masks, quant = flat_masks(compression.masks()), compression.quant_params()
    with warnings.catch_warnings():
        # finalize() warns that run-time masks and scales are dropped: they are in the files.
        warnings.filterwarnings("ignore", r".*\[X804\]", CompressionWarning)
        model = compression.finalize()
    _tick(progress, 1, total, "finalized")
    writers = {
        "model.safetensors": lambda p: save_file(plain_state(model), p, {"format": "pt"}),
        "masks.safetensors": lambda p: save_file(masks, p),
        "quant.safetensors": lambda p: _save_quant(quant, p),
        "plan.json": lambda p: _write_json(result.plan.to_dicts(), p),
        "config_list.json": lambda p: _write_json(config_lists(result.plan), p),
    }
    written = []
    for done, (name, write) in enumerate(writers.items(), start=2):
        path = folder / name
        write(str(path))
        written.append(path)
        _tick(progress, done, total, name)
    return written


def _save_quant(quant: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str) -> None:
    tensors, metadata = quant_tensors(quant)
    save_file(tensors, path, metadata or None)  # an empty metadata dict writes a bad header


def flat_masks(masks: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """{'module.target': bool mask}, contiguous, as masks.safetensors holds them."""
    return {
        tensor_name(module, target): mask.detach().to(torch.bool).cpu().contiguous()
        for module, targets in masks.items()
        for target, mask in targets.items()
    }


def quant_tensors(quant: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> tuple[dict, dict]:
    """quant.safetensors content: '<name>.scale' and '<name>.zero_point' tensors, and metadata
    mapping each '<name>' to its quant_dtype, quant_scheme, qmin and qmax as JSON."""
    tensors: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    for module, targets in quant.items():
        for target, params in targets.items():
            name = tensor_name(module, target)
            for field in ("scale", "zero_point"):
                tensors[f"{name}.{field}"] = params[field].detach().cpu().contiguous()
            info = {k: v for k, v in params.items() if not isinstance(v, torch.Tensor)}
            metadata[name] = json.dumps(info, sort_keys=True)
    return tensors, metadata


def plain_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as safetensors needs it: contiguous, no two keys sharing memory.

    A tensor shared under several keys (tied weights) is copied for every key after the
    first, so the file still loads into a fresh model with ``strict=True``.
    """
    seen: set[int] = set()
    state = {}
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen:
            tensor = tensor.clone()
        seen.add(pointer)
        state[key] = tensor
    return state


def config_lists(plan: Plan) -> dict[str, list[dict]]:
    """config_list.json: NNI config_lists keyed by mode."""
    return {mode.value: plan.to_config_list(mode) for mode in Mode}


def tensor_name(module: str, target: str) -> str:
    """'module.target' (just 'target' for the root module), the key of every output file."""
    return f"{module}.{target}" if module else target


def _write_json(data: Any, path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


def _tick(progress: Progress | None, done: int, total: int, label: str) -> None:
    if progress is not None:
        progress(done, total, label)
