"""Selectors as .rules spells them for the names other tools select by: an exact module name, a
class name, and a regular expression matched the way the source tool matches it."""

from __future__ import annotations

import re

_SEGMENT = re.compile(r"[A-Za-z0-9_]+$")
_RESERVED = {"with", "from", "in", "except"}


def regex_selector(pattern: str, target: str | None = None) -> str:
    """``re"..."`` (matched against the whole module name), its quotes escaped; with a target."""
    text = 're"' + pattern.replace('"', '\\"') + '"'
    return f"{text}.{target}" if target else text


def prefix_regex(pattern: str) -> str:
    """A pattern that ``re.match`` tries at the start of a name, as one matched against the
    whole name: ``p`` already reaches the end when it ends in ``.*`` or ``$``, else ``(?:p).*``."""
    if "|" not in pattern and (pattern.endswith(".*") or _ends_with_dollar(pattern)):
        return pattern
    return f"(?:{pattern}).*"


def _ends_with_dollar(pattern: str) -> bool:
    return pattern.endswith("$") and not pattern.endswith("\\$")


def name_selector(name: str, target: str | None = None) -> str:
    """An exact module name (a regex of the escaped name where a segment is not a plain word)."""
    segments = name.split(".")
    if all(_SEGMENT.match(s) and s not in _RESERVED for s in segments):
        return f"{name}.{target}" if target else name
    return regex_selector(re.escape(name), target)


def type_selector(type_name: str, target: str | None = None) -> str:
    """A module type: its exact class name."""
    return f"{type_name}.{target}" if target else type_name
