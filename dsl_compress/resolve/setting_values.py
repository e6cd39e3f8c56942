"""Values of .rules settings: words, let names and lists evaluated, each checked against the key
table (schema/key_sets) at the span that wrote it."""

from __future__ import annotations

import re
from typing import Any, Collection, Mapping

from dsl_compress.diagnostics import (
    Diagnostic,
    Fix,
    did_you_mean,
    located,
    relocated,
    replacing,
    sole_match,
)
from dsl_compress.language.syntax import ListValue, Literal, Setting, Value
from dsl_compress.schema.key_sets import (
    KNOWN_KEYS,
    ALIGN_STATEMENT_KEYS,
    instead_in_statements,
    nni_key,
    statement_rule,
)
from dsl_compress.schema.mask_structure import (
    is_element_wise,
    parse_mask_structure,
    structure_conflicts,
)
from dsl_compress.vocab import Mode

WORDS = {"none": None, "true": True, "false": False}


def evaluate(value: Value, lets: Mapping[str, Any], numeric: bool, diags: list) -> Any:
    """The Python value of a setting: words stay strings unless they are lets, none/true/false."""
    if isinstance(value, ListValue):
        return [evaluate(item, lets, numeric, diags) for item in value.items]
    if not value.is_word:
        return value.value
    word = str(value.value)
    if word in lets:
        return lets[word]
    if word in WORDS:
        return WORDS[word]
    if numeric:
        name = sole_match(word, lets)
        fixes = (replacing(value.span, word, name),) if name is not None else ()
        diags.append(
            located(
                "E204",
                f"'{word}' is not defined",
                value.span,
                did_you_mean(word, lets) or "define it with `let NAME = value` or write a number",
                fixes,
            )
        )
    return word


def check_setting(
    mode: Mode,
    key: str,
    value: Any,
    setting: Setting,
    allowed: tuple[str, ...],
    lets: Mapping[str, Any] | None = None,
    written: Collection[str] = (),
) -> list:
    """Unknown keys and bad values of one setting, located at it (``lets``: the names in scope,
    which a fix must not write as a bare word; ``written``: the statement's keys, which a fix
    must not write a second time). A key of another mode or statement is misplaced, not
    misspelt: it gets a hint, no fix."""
    if key not in allowed:
        instead = instead_in_statements(key, value)
        hint = instead or did_you_mean(key, allowed) or f"accepted: {', '.join(allowed)}"
        name = None if instead or key in KNOWN_KEYS else sole_match(key, allowed)
        name = None if name in written else name
        fixes = (replacing(setting.key_span, key, name),) if name is not None else ()
        message = f"unknown setting '{key}' for {_statement_name(mode, allowed)}"
        return [located("E202", message, setting.span, hint, fixes)]
    rule = statement_rule(mode, key)
    if rule is None:
        return []
    found = rule.check(key, value, key)
    return [
        relocated(d, setting.value.span, fixes=value_fixes(d, setting.value, value, lets or {}))
        for d in found
    ]


_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def value_fixes(
    diag: Diagnostic, written: Value, value: Any, lets: Mapping[str, Any]
) -> tuple[Fix, ...]:
    """The fix a key table check names (``diag.replacement``) at the literal that wrote
    ``value``; none where the value came through a let (the let, not this use, holds the typo)."""
    new = diag.replacement
    if new is None or not isinstance(written, Literal) or written.value != value:
        return ()
    if not isinstance(value, str) or (written.is_word and value in lets):
        return ()
    if not written.is_word:  # a quoted string stays quoted
        return (replacing(written.span, f'"{value}"', f'"{new}"'),)
    if new in WORDS or new in lets or not _BARE_WORD.fullmatch(new):
        return ()  # a bare word would read as a let or a constant, not as this name
    return (replacing(written.span, value, new),)


def _statement_name(mode: Mode, allowed: tuple[str, ...]) -> str:
    return "align" if allowed == ALIGN_STATEMENT_KEYS else mode.value


def structure_conflicts_in(values: Mapping[str, Any]) -> list:
    """E222 at each key of one statement that its own mask_structure cannot combine with
    (``values``: key -> its SettingValue); keys met across statements are the plan's checks'."""
    structure = parse_mask_structure(getattr(values.get("mask_structure"), "value", None))
    if structure is None:
        return []
    by_nni = {nni_key(key): item for key, item in values.items()}
    setting = {key: item.value for key, item in by_nni.items()}
    element_wise = is_element_wise(setting.get("granularity"))
    return [
        located("E222", c.message, by_nni[c.key].span, c.hint)
        for c in structure_conflicts(structure, setting, element_wise)
    ]
