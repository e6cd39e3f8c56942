"""Parsed syntax moved to other lines: an edited file's unchanged statements, re-used where an
inserted or deleted line moved them, get the spans a parse at their new place gives."""

from __future__ import annotations

import dataclasses
from typing import Any

from dsl_compress.diagnostics import Span

# Each type met: its dataclass fields, or None for a value kept as it is (str, int, an enum).
_FIELDS: dict[type, tuple[str, ...] | None] = {}


def moved(node: Any, lines: int) -> Any:
    """``node`` (frozen dataclasses, tuples and lists of them, spans) with every span's lines
    moved by ``lines``; values without a span are shared, not copied."""
    kind = type(node)
    if kind is Span:
        return Span(
            node.file, node.line + lines, node.column, node.end_line + lines, node.end_column
        )
    if kind is tuple or kind is list:
        return kind([moved(item, lines) for item in node])
    names = _FIELDS[kind] if kind in _FIELDS else _fields(kind)
    if names is None or lines == 0:
        return node
    # A frozen dataclass copied field by field (copy.copy's reduce protocol was most of the
    # cost of moving a thousand statements); it is ours until returned.
    new = object.__new__(kind)
    for name in names:
        object.__setattr__(new, name, moved(getattr(node, name), lines))
    return new


def _fields(kind: type) -> tuple[str, ...] | None:
    found = None
    if dataclasses.is_dataclass(kind):
        found = tuple(f.name for f in dataclasses.fields(kind))
    _FIELDS[kind] = found
    return found
