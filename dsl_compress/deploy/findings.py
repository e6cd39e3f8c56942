"""Deployment findings as diagnostics: located at the rule (or the key's setting) that caused
them, and told once per rule however many modules it reaches."""

from __future__ import annotations

from dataclasses import dataclass

from dsl_compress.diagnostics import Diagnostic, Severity, span_of_origin
from dsl_compress.plan import PlanEntry


@dataclass(frozen=True)
class Finding:
    """One module's problem: its code, the plan entry, the key to point at (None: the rule),
    what is wrong (not naming the module: the diagnostic does), how to fix it, and what it is
    about when that is not the entry's module (a fused layer)."""

    code: str
    entry: PlanEntry
    key: str | None
    message: str
    hint: str | None = None
    about: str | None = None

    @property
    def origin(self) -> str:
        """Where the key was set, when that is a place in a rules file; else the rule's."""
        origin = self.entry.key_origins.get(self.key, "") if self.key else ""
        return origin if span_of_origin(origin) is not None else self.entry.origin


def merged(found: list[Finding], severity: Severity = Severity.ERROR) -> list[Diagnostic]:
    """One diagnostic per code, place and problem: naming the first module it concerns and
    how many more the same rule gives it."""
    by_place: dict[tuple, list[Finding]] = {}
    for finding in found:
        key = (finding.code, finding.origin, finding.message, finding.hint)
        by_place.setdefault(key, []).append(finding)
    return [_told(items, severity) for items in by_place.values()]


def _told(items: list[Finding], severity: Severity) -> Diagnostic:
    """At a rules file's place: the module named in the message; elsewhere (a config_list's
    entry) in the subject, by which the caller places it at its config."""
    first = items[0]
    more = len({item.about or item.entry.module for item in items}) - 1
    message = first.message + (f" (and {more} more like it from this rule)" if more else "")
    span = span_of_origin(first.origin)
    if span is None:
        return Diagnostic(
            first.code, severity, message, subject=first.entry.subject, hint=first.hint
        )
    message = f"'{first.about or first.entry.module}': {message}"
    return Diagnostic(first.code, severity, message, span=span, hint=first.hint)
