"""The key sets the config_list validator, the language and the engine read, all derived from
the key table (schema/keys.py): adding a row there is all a new key needs."""

from __future__ import annotations

from typing import Any

from dsl_compress.schema.checks import KeyRule
from dsl_compress.schema.keys import KEYS, Level, Statement
from dsl_compress.vocab import Mode


def _names(level: Level, mode: Mode | None = None) -> tuple[str, ...]:
    return tuple(row.name for row in KEYS if row.level is level and row.mode is mode)


def _rules(level: Level, mode: Mode) -> dict[str, KeyRule]:
    return {row.name: row.rule for row in KEYS if row.level is level and row.mode is mode}


# ---- what a config_list takes --------------------------------------------------------------------

SELECTOR_KEYS = _names(Level.SELECT)
EXCLUDE_KEYS = _names(Level.EXCLUDE)
SELECTION_KEYS = SELECTOR_KEYS + EXCLUDE_KEYS
"""The keys that choose modules; a config needs at least one of SELECTOR_KEYS."""

TARGET_KEYS = _names(Level.TARGET)

NAME_RULES: dict[str, KeyRule] = {
    row.name: row.rule
    for row in KEYS
    if row.level in (Level.SELECT, Level.EXCLUDE, Level.TARGET) and row.rule is not None
}
"""The checks of the keys that name modules and targets, in the order they are checked."""

SETTING_RULES: dict[Mode, dict[str, KeyRule]] = {m: _rules(Level.SETTING, m) for m in Mode}
"""Per mode, the setting keys a config takes at top level (shorthand) and per target."""

CONFIG_RULES: dict[Mode, dict[str, KeyRule]] = {m: _rules(Level.CONFIG, m) for m in Mode}
"""Per mode, the keys a config takes at top level only (never inside target_settings)."""

REQUIRED_KEYS: dict[Mode, dict[str, str]] = {
    m: {row.name: row.required for row in KEYS if row.mode is m and row.required} for m in Mode
}
"""Per mode, the keys a config must have at top level, each with the hint shown when absent."""

LEGACY_KEYS: dict[str, str] = {row.name: row.instead for row in KEYS if row.level is Level.LEGACY}
"""NNI 2.x keys that NNI 3.0 rejects, each with its NNI 3.0 replacement."""

EXCLUSIVE_KEYS: dict[Mode, tuple[tuple[str, str], ...]] = {
    Mode.PRUNE: (("sparse_ratio", "sparse_threshold"),),
    Mode.QUANTIZE: (),
    Mode.DISTILL: (),
}
"""Per mode, the pairs of keys one setting dict may not both hold."""

MASK_KEYS = tuple(row.name for row in KEYS if row.masks)
# Every key of the table, whatever its mode or level (a misplaced key is no misspelling).
KNOWN_KEYS = frozenset(row.name for row in KEYS)
"""The setting keys whose value (other than None) makes a target's mask; align aside."""


_WITH_TEMPLATE_KEY = {row.name: row.with_template_key for row in KEYS if row.with_template_key}


def template_takes(template_setting: Any, key: str) -> bool:
    """Whether a template's setting for one target takes ``key``: it holds the key, or the key
    is ours (not NNI's) and rides with one it holds (mask_structure goes where sparse_ratio does).
    """
    companion = _WITH_TEMPLATE_KEY.get(key)
    return key in template_setting or (companion is not None and companion in template_setting)


def setting_keys(mode: Mode | str) -> frozenset[str]:
    """The setting keys of ``mode``: the shorthand keys, also valid per target."""
    return frozenset(SETTING_RULES[Mode(mode)])


def modes_taking(key: Any) -> tuple[Mode, ...]:
    """The modes whose configs accept ``key``, in Mode order."""
    return tuple(m for m in Mode if key in SETTING_RULES[m] or key in CONFIG_RULES[m])


# ---- what a .rules statement takes ---------------------------------------------------------------

NUMERIC_KEYS = frozenset(row.name for row in KEYS if row.numeric)
"""Keys whose value is a number: a bare word there must be a let name."""


def _taking(statement: Statement, mode: Mode, level: Level) -> tuple[str, ...]:
    rows = (row for row in KEYS if row.mode is mode and row.level is level)
    return tuple(row.name for row in rows if statement in row.statements)


def _keys_taken(statement: Statement, mode: Mode) -> tuple[str, ...]:
    nni = _taking(statement, mode, Level.SETTING)
    own = _taking(statement, mode, Level.LANGUAGE)
    # An align statement is about its dims, so its hint lists dims first.
    return own + nni if statement is Statement.ALIGN else nni + own


_STATEMENT_KEYS = {(s, m): _keys_taken(s, m) for s in Statement for m in Mode}


def statement_keys(mode: Mode, statement: Statement = Statement.COMPRESS) -> tuple[str, ...]:
    """The keys a statement of ``mode`` accepts, in the order its hints list them."""
    return _STATEMENT_KEYS[statement, mode]


ALIGN_STATEMENT_KEYS = statement_keys(Mode.PRUNE, Statement.ALIGN)
"""The keys an align statement accepts (it is a pruning statement)."""

_STATEMENT_RULES: dict[tuple[Mode, str], KeyRule] = {
    (row.mode, row.name): row.rule
    for row in KEYS
    if row.level in (Level.SETTING, Level.LANGUAGE) and row.mode is not None and row.rule
}
_NNI_NAMES = {row.name: row.nni for row in KEYS if row.nni}
_LANGUAGE_SPELLINGS = {row.nni: row.name for row in KEYS if row.nni}
_INSTEAD_IN_STATEMENTS = {
    row.name: row.instead for row in KEYS if row.level is Level.SETTING and row.instead
}


def statement_rule(mode: Mode, key: str) -> KeyRule | None:
    """The check of ``key``'s value in a statement of ``mode``."""
    return _STATEMENT_RULES.get((mode, key))


def nni_key(name: str) -> str:
    """The NNI key a language key writes: group is NNI's global_group_id."""
    return _NNI_NAMES.get(name, name)


def instead_in_statements(key: str, value: Any) -> str | None:
    """For an NNI key that statements spell otherwise, what to write: group=, or an align."""
    if key in _LANGUAGE_SPELLINGS:
        return f"write {_LANGUAGE_SPELLINGS[key]}={value!r}"
    return _INSTEAD_IN_STATEMENTS.get(key)
