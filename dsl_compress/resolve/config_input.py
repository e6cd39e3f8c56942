"""NNI config_list input as the command and the API take it: a JSON file or its content, one
list for a given mode or an object with a list per mode, resolved into one plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dsl_compress.diagnostics import (
    CompressionError,
    Diagnostic,
    Severity,
    Span,
    did_you_mean,
    fail,
)
from dsl_compress.plan import Plan
from dsl_compress.resolve.from_config import build_plan
from dsl_compress.schema.registry import Registry
from dsl_compress.vocab import Mode, check_metric


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
