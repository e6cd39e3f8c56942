"""Values of .rules settings: words, let names and lists evaluated, each checked against the key
table (schema/key_sets) at the span that wrote it."""

from __future__ import annotations

from typing import Any, Mapping

from dsl_compress.diagnostics import did_you_mean, located, relocated
from dsl_compress.language.syntax import ListValue, Setting, Value
from dsl_compress.schema.key_sets import (
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
        diags.append(
            located(
                "E204",
                f"'{word}' is not defined",
                value.span,
                did_you_mean(word, lets) or "define it with `let NAME = value` or write a number",
            )
        )
    return word


def check_setting(
    mode: Mode, key: str, value: Any, setting: Setting, allowed: tuple[str, ...]
) -> list:
    """Unknown keys and bad values of one setting, located at it."""
    if key not in allowed:
        hint = instead_in_statements(key, value) or did_you_mean(key, allowed)
        message = f"unknown setting '{key}' for {_statement_name(mode, allowed)}"
        return [located("E202", message, setting.span, hint or f"accepted: {', '.join(allowed)}")]
    rule = statement_rule(mode, key)
    if rule is None:
        return []
    return [relocated(d, setting.value.span) for d in rule.check(key, value, key)]


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
