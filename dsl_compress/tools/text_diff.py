"""Unified diffs of a file's text as the command prints them (`fmt --diff`, `lint --diff`): each
line ending in a line break, a last line without one marked so that `patch` applies it."""

from __future__ import annotations

import difflib

# How a unified diff marks a last line without its line break.
NO_NEWLINE = "\n\\ No newline at end of file\n"


def text_diff(before: str, after: str, name: str, label: str) -> str:
    """The diff from ``before`` to ``after`` of the file ``name``, the new side headed
    ``name (label)``."""
    lines = difflib.unified_diff(
        before.splitlines(True), after.splitlines(True), name, f"{name} ({label})"
    )
    return "".join(line if line.endswith("\n") else line + NO_NEWLINE for line in lines)
