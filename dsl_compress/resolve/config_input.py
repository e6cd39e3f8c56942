"""NNI config_list input as the command and the API take it: a JSON file or its content, one
list for a given mode or an object with a list per mode, checked and resolved into one plan,
every problem located at the file:line:col of the config it is about."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from dsl_compress.diagnostics import (
    CompressionError,
    Diagnostic,
    Span,
    did_you_mean,
    fail,
)
from dsl_compress.plan import Plan
from dsl_compress.schema.config_list import validate_config_list
from dsl_compress.schema.config_text import LocatedJson, parse_located_json, subject_span
from dsl_compress.schema.registry import Registry
from dsl_compress.vocab import Mode, check_metric

if TYPE_CHECKING:
    import torch

# How a caller gives the mode, in the words of its front door.
MODE_ARGUMENT_HINT = "pass mode='prune', 'quantize' or 'distill'"


@dataclass(frozen=True)
class ConfigInput:
    """NNI config_lists by mode and, when read from text, the span of each value by subject."""

    lists: Mapping[Mode, Any]
    spans: Mapping[Mode, Mapping[str, Span]] = field(default_factory=dict, repr=False)

    def validate(self) -> list[Diagnostic]:
        """Every problem of the config_lists that needs no model (C1xx), located."""
        return [
            diag
            for mode, config_list in self.lists.items()
            for diag in self.located(mode, validate_config_list(config_list, mode))
        ]

    def plan(
        self,
        model: torch.nn.Module,
        metric: str | None = None,
        registry: Registry | None = None,
    ) -> Plan:
        """One plan for every mode; raises CompressionError with every mode's errors, located."""
        from dsl_compress.resolve.from_config import build_plan

        if metric is not None and Mode.PRUNE in self.lists:
            check_metric(metric)
        entries, diags, errors = [], [], []
        for mode, config_list in self.lists.items():
            try:
                plan = build_plan(model, config_list, mode, registry=registry, metric=metric)
            except CompressionError as exc:
                errors.extend(self.located(mode, exc.diagnostics))
                continue
            entries.extend(plan.entries)
            diags.extend(self.located(mode, plan.diagnostics))
        if errors:
            raise CompressionError(errors)
        return Plan(tuple(entries), tuple(diags))

    def located(self, mode: Mode, diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
        """Diagnostics about a config of ``mode``'s list, placed at that config in the file."""
        spans = self.spans.get(mode, {})
        out = []
        for diag in diagnostics:
            span = subject_span(spans, diag.subject) if diag.span is None else None
            if span is not None:
                message = f"{diag.subject}: {diag.message}"
                diag = Diagnostic(diag.code, diag.severity, message, span=span, hint=diag.hint)
            out.append(diag)
        return out

    def located_by_origin(self, plan: Plan, diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
        """Diagnostics about a planned tensor, placed at the config its entry came from."""
        entries = {entry.subject: entry for entry in plan.entries}
        out = []
        for diag in diagnostics:
            entry = entries.get(diag.subject or "")
            spans = self.spans.get(entry.mode, {}) if entry is not None else {}
            span = subject_span(spans, entry.origin) if diag.span is None and entry else None
            if span is not None:
                message = f"{diag.subject}: {diag.message}"
                diag = Diagnostic(diag.code, diag.severity, message, span=span, hint=diag.hint)
            out.append(diag)
        return out


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
    return read_config_input(config_list_json, mode).plan(model, metric, registry)


def read_config_input(
    source: str | Path | list | dict,
    mode: Mode | str | None = None,
    *,
    mode_hint: str = MODE_ARGUMENT_HINT,
) -> ConfigInput:
    """A config_list file (or content) split by mode; ``mode_hint`` says how to give a missing
    mode in the caller's words (the command names its ``--mode`` option)."""
    if not isinstance(source, (str, Path)):
        roots = _roots_by_mode(source, _mode(mode), mode_hint, "mode")
        return ConfigInput({each: _at(source, root) for each, root in roots.items()})
    located = read_json(Path(source))
    roots = _roots_by_mode(located.data, _mode(mode), mode_hint, str(source))
    lists = {each: _at(located.data, root) for each, root in roots.items()}
    return ConfigInput(lists, {each: located.subject_spans(root) for each, root in roots.items()})


def _mode(mode: Mode | str | None) -> Mode | None:
    if mode is None or isinstance(mode, Mode):
        return mode
    names = [m.value for m in Mode]
    if mode not in names:
        hint = did_you_mean(str(mode), names) or f"use one of {', '.join(names)}"
        fail("X803", f"unknown mode {mode!r}", subject="mode", hint=hint)
    return Mode(mode)


def _roots_by_mode(data: Any, mode: Mode | None, mode_hint: str, subject: str) -> dict[Mode, tuple]:
    """Where each mode's list is: the key of an object by mode, or the whole list."""
    names = {m.value for m in Mode}
    if isinstance(data, dict) and data and set(data) <= names:
        return {Mode(k): (k,) for k in data if mode is None or Mode(k) is mode}
    if mode is None:
        fail(
            "X803",
            "an NNI config_list needs a mode (a list of configs does not say which kind it is)",
            subject=subject,
            hint=mode_hint,
        )
    return {mode: ()}


def _at(data: Any, root: tuple) -> Any:
    for key in root:
        data = data[key]
    return data


def read_json(path: Path) -> LocatedJson:
    """A JSON file's content with the span of each value; a missing file or invalid JSON is one
    diagnostic naming where."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        fail("E205", f"cannot read config_list file '{path}': {reason}", subject=str(path))
    return parse_located_json(text, str(path))
