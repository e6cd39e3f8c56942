"""Quick fixes: each structured fix a diagnostic carries (``Diagnostic.fixes``, as `lint --fix`
applies them) offered as a code action that edits the document."""

from __future__ import annotations

from typing import Any, Sequence

from lsprotocol import types

from dsl_compress.diagnostics import Fix
from dsl_compress.lsp.positions import to_range

# Where a published diagnostic carries its fixes for the client to hand back: LSP's `data`.
FIXES = "fixes"


def fixes_data(fixes: Sequence[Fix], lines: Sequence[str], file: str | None) -> dict | None:
    """A diagnostic's fixes in its own file as JSON-ready edits (None without any)."""
    edits = [
        {"title": fix.title, "newText": fix.replacement, "range": _range_json(lines, fix)}
        for fix in fixes
        if (fix.span.file or None) == (file or None)
    ]
    return {FIXES: edits} if edits else None


def _range_json(lines: Sequence[str], fix: Fix) -> dict:
    found = to_range(lines, fix.span)
    return {
        "start": {"line": found.start.line, "character": found.start.character},
        "end": {"line": found.end.line, "character": found.end.character},
    }


def quick_fixes(uri: str, diagnostics: Sequence[types.Diagnostic]) -> list[types.CodeAction]:
    """One preferred quick fix per fix of each diagnostic the client asks about."""
    actions = []
    for diagnostic in diagnostics:
        for edit in _edits(diagnostic.data):
            text_edit = types.TextEdit(range=_range(edit["range"]), new_text=edit["newText"])
            actions.append(
                types.CodeAction(
                    title=edit["title"],
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic],
                    edit=types.WorkspaceEdit(changes={uri: [text_edit]}),
                    is_preferred=True,
                )
            )
    return actions


def _edits(data: Any) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get(FIXES), list):
        return []
    return [edit for edit in data[FIXES] if _well_formed(edit)]


def _well_formed(edit: Any) -> bool:
    return isinstance(edit, dict) and {"title", "newText", "range"} <= set(edit)


def _range(found: dict) -> types.Range:
    start, end = found["start"], found["end"]
    return types.Range(
        types.Position(start["line"], start["character"]),
        types.Position(end["line"], end["character"]),
    )
