"""Hover: on a selector, the tensors it matches (with a manifest); on a setting key, its
meaning, allowed values and default for the statement's kind; on a diagnostic code in a
comment, or on a diagnostic's range, the `explain CODE` text."""

from __future__ import annotations

from typing import Sequence

from lsprotocol import types

from dsl_compress.codes import CODES
from dsl_compress.language.format import render_selector
from dsl_compress.language.syntax import Register, Statement
from dsl_compress.lsp.outline import Outline, mode_of, selectors_of, settings_of
from dsl_compress.lsp.positions import contains, from_position
from dsl_compress.lsp.selection import selected_tensors
from dsl_compress.lsp.words import code_at
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.schema.keys import KEYS, KeyRow, Level
from dsl_compress.tools.code_docs import explain_code
from dsl_compress.vocab import Mode

# How many tensor names a selector's hover lists before "and N more".
SHOWN_TENSORS = 8


def hover_text(
    outline: Outline,
    lines: Sequence[str],
    position: types.Position,
    index: ModelIndex | None,
    published: Sequence[types.Diagnostic] = (),
) -> str | None:
    """The hover's markdown at ``position``, or None where there is nothing to say."""
    line, column = from_position(lines, position)
    parts = [_code_doc(code_at(lines, line, column))]
    stmt = outline.statement_at(line, column)
    if stmt is not None:
        parts.append(_key_doc(stmt, line, column))
        parts.append(_selector_doc(stmt, line, column, index))
    parts.extend(_code_doc(d.code) for d in published if _covers(d.range, position))
    shown = list(dict.fromkeys(p for p in parts if p))
    return "\n\n---\n\n".join(shown) or None


def _code_doc(code: object) -> str | None:
    if not isinstance(code, str) or code not in CODES:
        return None
    return f"```text\n{explain_code(code)}\n```"


def _covers(found: types.Range, position: types.Position) -> bool:
    here = (position.line, position.character)
    return (
        (found.start.line, found.start.character) <= here <= (found.end.line, found.end.character)
    )


def _key_doc(stmt: Statement, line: int, column: int) -> str | None:
    setting = next((s for s in settings_of(stmt) if contains(s.key_span, line, column)), None)
    mode = mode_of(stmt)
    if setting is None or mode is None:
        return None
    row = key_row(setting.key, mode)
    if row is None:
        return None
    allowed = row.rule.expected if row.rule is not None else "any value"
    where = "a register target" if isinstance(stmt, Register) else f"a {mode.value} statement"
    return (
        f"**{row.name}** ({where}): {row.meaning}\n\n"
        f"allowed: {allowed}\n\ndefault: {row.default}"
    )


def key_row(key: str, mode: Mode) -> KeyRow | None:
    """The key table's row for a key a .rules statement of ``mode`` writes."""
    levels = (Level.SETTING, Level.LANGUAGE)
    return next((r for r in KEYS if r.name == key and r.mode is mode and r.level in levels), None)


def _selector_doc(stmt: Statement, line: int, column: int, index: ModelIndex | None) -> str | None:
    found = next(((s, m) for s, m in selectors_of(stmt) if contains(s.span, line, column)), None)
    if found is None:
        return None
    selector, mode = found
    text = render_selector(selector)
    if index is None:
        return f"`{text}`: what it matches is shown with a manifest (dsl-compress.toml)"
    tensors = selected_tensors(selector, mode, index)
    shown = ", ".join(f"`{name}`" for name in tensors[:SHOWN_TENSORS])
    more = f" and {len(tensors) - SHOWN_TENSORS} more" if len(tensors) > SHOWN_TENSORS else ""
    count = f"{len(tensors)} tensor{'s' if len(tensors) != 1 else ''}"
    return f"`{text}` matches {count}" + (f": {shown}{more}" if tensors else "")
