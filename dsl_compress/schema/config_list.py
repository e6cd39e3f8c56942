"""Validation of an NNI 3.0 config_list: every problem in it, as error diagnostics."""

from __future__ import annotations

from typing import Any, Collection, Mapping

from dsl_compress.diagnostics import Diagnostic, did_you_mean, error, fail
from dsl_compress.schema.checks import MODE_NOUNS, found, subject_of, wrong_type
from dsl_compress.schema.key_sets import (
    CONFIG_RULES,
    EXCLUDE_KEYS,
    EXCLUSIVE_KEYS,
    LEGACY_KEYS,
    NAME_RULES,
    REQUIRED_KEYS,
    SELECTION_KEYS,
    SELECTOR_KEYS,
    SETTING_RULES,
    TARGET_KEYS,
    modes_taking,
    setting_keys,
)
from dsl_compress.schema.mask_structure import (
    is_element_wise,
    parse_mask_structure,
    structure_conflicts,
)
from dsl_compress.vocab import Mode

__all__ = [
    "CONFIG_RULES",
    "LEGACY_KEYS",
    "SELECTION_KEYS",
    "SELECTOR_KEYS",
    "SETTING_RULES",
    "TARGET_KEYS",
    "config_keys",
    "setting_keys",
    "validate_config",
    "validate_config_list",
]

_SETTING_EXAMPLES = {
    Mode.PRUNE: "'sparse_ratio': 0.5",
    Mode.QUANTIZE: "'quant_dtype': 'int8'",
    Mode.DISTILL: "'lambda': 1.0",
}


def config_keys(mode: Mode | str) -> frozenset[str]:
    """Every key a top-level config of ``mode`` accepts."""
    mode = Mode(mode)
    own = set(SETTING_RULES[mode]) | set(CONFIG_RULES[mode])
    return frozenset(SELECTION_KEYS + TARGET_KEYS) | own


def validate_config_list(config_list: Any, mode: Mode | str) -> list[Diagnostic]:
    """All problems in ``config_list`` for ``mode`` as error diagnostics; empty when it is valid."""
    mode = _as_mode(mode)
    if not isinstance(config_list, list):
        return [_not_a_list(config_list)]
    diagnostics: list[Diagnostic] = []
    for index, config in enumerate(config_list):
        diagnostics.extend(validate_config(config, mode, f"config_list[{index}]"))
    return diagnostics


def validate_config(config: Any, mode: Mode | str, subject: str = "config") -> list[Diagnostic]:
    """All problems in one config dict; ``subject`` names it in the diagnostics."""
    mode = _as_mode(mode)
    if not isinstance(config, dict):
        hint = "write each config as a dict, e.g. {'op_types': ['Linear'], ...}"
        message = f"each config must be a dict, got {found(config)}"
        return [error("C101", message, subject=subject, hint=hint)]
    diagnostics = _unknown_keys(config, mode, subject, config_keys(mode), top_level=True)
    diagnostics += _check_selection(config, subject)
    diagnostics += _check_target_settings(config, mode, subject)
    diagnostics += _check_required(config, mode, subject)
    diagnostics += _check_setting_values(config, mode, subject, top_level=True)
    return diagnostics


def _as_mode(mode: Any) -> Mode:
    try:
        return Mode(mode)
    except ValueError:
        fail("X803", f"mode must be one of {', '.join(m.value for m in Mode)}, got {mode!r}")
        raise


def _not_a_list(value: Any) -> Diagnostic:
    hint = None
    if isinstance(value, dict):
        hint = "wrap the config in a list: [{...}]"
    elif isinstance(value, tuple):
        hint = "write it as a list: [...]"
    message = f"config_list must be a list of dicts, got {found(value)}"
    return error("C101", message, subject="config_list", hint=hint)


# ---- keys ----------------------------------------------------------------------------------------


def _unknown_keys(
    setting: dict, mode: Mode, subject: str, allowed: Collection[str], *, top_level: bool
) -> list[Diagnostic]:
    return [
        _unknown_key(key, mode, subject_of(subject, key), allowed, top_level)
        for key in setting
        if key not in allowed
    ]


def _unknown_key(
    key: Any, mode: Mode, subject: str, allowed: Collection[str], top_level: bool
) -> Diagnostic:
    noun = MODE_NOUNS[mode]
    other_modes = [m for m in modes_taking(key) if m is not mode]
    config_level = SELECTION_KEYS + TARGET_KEYS + tuple(CONFIG_RULES[mode])
    if key in LEGACY_KEYS:
        message = f"{key!r} is an NNI 2.x key; NNI 3.0 does not accept it"
        hint = LEGACY_KEYS[key]
    elif not top_level and key in config_level:
        message = f"{key!r} is a config-level key; it cannot appear inside target_settings"
        hint = f"move {key} to the top level of the config"
    elif other_modes:
        owners = " and ".join(MODE_NOUNS[m] for m in other_modes)
        message = f"{key!r} is a {owners} key, not valid in a {noun} config"
        hint = f"remove it; {key} belongs in a {owners} config_list"
    else:
        where = "config" if top_level else "target setting"
        message = f"unknown key {key!r} in a {noun} {where}"
        hint = (
            did_you_mean(str(key), allowed)
            or f"a {noun} {where} takes {', '.join(sorted(allowed))}"
        )
    return error("C102", message, subject=subject, hint=hint)


def _check_required(config: dict, mode: Mode, subject: str) -> list[Diagnostic]:
    noun = MODE_NOUNS[mode]
    return [
        error(
            "C110",
            f"a {noun} config needs {key}, and this one has none",
            subject=subject,
            hint=hint,
        )
        for key, hint in REQUIRED_KEYS[mode].items()
        if key not in config
    ]


# ---- selection -----------------------------------------------------------------------------------


def _check_selection(config: dict, subject: str) -> list[Diagnostic]:
    diagnostics = []
    if not any(key in config for key in SELECTOR_KEYS):
        diagnostics.append(_no_selector(config, subject))
    for key, rule in NAME_RULES.items():
        if key in config:
            diagnostics.extend(rule.check(key, config[key], subject_of(subject, key)))
    return diagnostics


def _no_selector(config: dict, subject: str) -> Diagnostic:
    message = "the config selects no modules: it has none of op_types, op_names, op_names_re"
    hint = "add op_types, op_names or op_names_re, e.g. op_types=['Linear']"
    if any(key in config for key in EXCLUDE_KEYS):
        hint = "exclude_* keys only remove modules from what the selectors choose; " + hint
    return error("C108", message, subject=subject, hint=hint)


# ---- target_settings -----------------------------------------------------------------------------


def _check_target_settings(config: dict, mode: Mode, subject: str) -> list[Diagnostic]:
    if "target_settings" not in config:
        return []
    value = config["target_settings"]
    subject = subject_of(subject, "target_settings")
    if not isinstance(value, dict):
        expected = "a dict from target name to a setting dict"
        hint = f"write e.g. {{'weight': {{{_SETTING_EXAMPLES[mode]}}}}}"
        return [wrong_type("target_settings", expected, value, subject, hint)]
    diagnostics = []
    for target, setting in value.items():
        diagnostics.extend(_check_target(target, setting, mode, subject_of(subject, target)))
    return diagnostics


def _check_target(target: Any, setting: Any, mode: Mode, subject: str) -> list[Diagnostic]:
    if not isinstance(target, str):
        return [wrong_type("a target name", "a str", target, subject)]
    if not isinstance(setting, dict):
        hint = f"write e.g. {{{target!r}: {{{_SETTING_EXAMPLES[mode]}}}}}"
        expected = "a dict of setting keys"
        return [wrong_type(f"the setting of target {target!r}", expected, setting, subject, hint)]
    allowed = setting_keys(mode)
    diagnostics = _unknown_keys(setting, mode, subject, allowed, top_level=False)
    return diagnostics + _check_setting_values(setting, mode, subject, top_level=False)


def _check_setting_values(
    setting: Mapping[Any, Any], mode: Mode, subject: str, *, top_level: bool
) -> list[Diagnostic]:
    """Check the values of the known keys of one setting dict; unknown keys are left alone."""
    rules = {**SETTING_RULES[mode], **(CONFIG_RULES[mode] if top_level else {})}
    diagnostics: list[Diagnostic] = []
    for key, value in setting.items():
        rule = rules.get(key)
        if rule is not None:
            diagnostics.extend(rule.check(key, value, subject_of(subject, key)))
    for first, second in EXCLUSIVE_KEYS[mode]:
        if first in setting and second in setting:
            message = f"{first} and {second} are both set; a setting takes only one of them"
            hint = f"keep {first} (mask a fraction) or {second} (mask below a metric value)"
            diagnostics.append(error("C109", message, subject=subject, hint=hint))
    return diagnostics + _structure_conflicts(setting, subject)


def _structure_conflicts(setting: Mapping[Any, Any], subject: str) -> list[Diagnostic]:
    """C109 at each key of one setting dict that its own mask_structure cannot combine with
    (keys met across dicts are the plan's checks': P511)."""
    structure = parse_mask_structure(setting.get("mask_structure"))
    if structure is None:
        return []
    element_wise = is_element_wise(setting.get("granularity"))
    return [
        error("C109", c.message, subject=subject_of(subject, c.key), hint=c.hint)
        for c in structure_conflicts(structure, setting, element_wise)
    ]
