"""Deployment findings as diagnostics: located at the rule (or the key's setting) that caused
them, and told once per rule however many modules it reaches."""

from __future__ import annotations

from dataclasses import dataclass

from dsl_compress.diagnostics import Diagnostic, Severity, span_of_origin
from dsl_compress.plan import PlanEntry


@dataclass(frozen=True)
class Finding:
    """One module's problem: its code, the plan entry, the key to point at (None: the rule),
    what is wrong and how to fix it."""

    code: str
    entry: PlanEntry
    key: str | None
    message: str
    hint: str | None = None

    @property
    def origin(self) -> str:
        """Where the key was set, when that is a place in a rules file; else the rule's."""
        origin = self.entry.key_origins.get(self.key, "") if self.key else ""
        return origin if span_of_origin(origin) is not None else self.entry.origin


def merged(found: list[Finding], severity: Severity = Severity.ERROR) -> list[Diagnostic]:
    """One diagnostic per code, place and fix: the first module's message and how many more
    modules the same rule gives the same problem."""
    by_place: dict[tuple[str, str, str | None], list[Finding]] = {}
    for finding in found:
        by_place.setdefault((finding.code, finding.origin, finding.hint), []).append(finding)
    return [_told(items, severity) for items in by_place.values()]


def _told(items: list[Finding], severity: Severity) -> Diagnostic:
    first = items[0]
    message = first.message
    if len(items) > 1:
        message += f" (and {len(items) - 1} more module(s) given it by this rule)"
    span = span_of_origin(first.origin)
    if span is None:
        message += f" (set by {first.origin})"
    subject = None if span is not None else first.entry.subject
    return Diagnostic(first.code, severity, message, span=span, subject=subject, hint=first.hint)
