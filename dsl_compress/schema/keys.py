"""The per-mode key tables of an NNI 3.0 config and the value checks of one setting dict."""

from __future__ import annotations

import re
from typing import Any, Mapping

from dsl_compress.diagnostics import Diagnostic, did_you_mean, error
from dsl_compress.schema.checks import (
    GRANULARITY_RULE,
    KeyRule,
    apply_method_rule,
    found,
    is_int,
    is_number,
    ratio_rule,
    subject_of,
    type_rule,
    wrong_type,
)
from dsl_compress.vocab import Mode, QUANT_DTYPES, QUANT_SCHEMES

# ---- pruning: align ------------------------------------------------------------------------------

ALIGN_KEYS = ("module_name", "target_name", "dims")
ALIGN_EXAMPLE = "{'module_name': None, 'target_name': 'weight', 'dims': [0]}"
_ALIGN_EXPECTED = "a dict with module_name (str or None), target_name (str) and dims (list of int)"

_ALIGN_ENTRY_RULES: dict[str, KeyRule] = {
    "module_name": type_rule("a str or None", lambda v: v is None or isinstance(v, str)),
    "target_name": type_rule("a str", lambda v: isinstance(v, str)),
    "dims": type_rule("a list of int", lambda v: isinstance(v, list) and all(map(is_int, v))),
}


def _check_align(key: str, value: Any, subject: str) -> list[Diagnostic]:
    if not isinstance(value, dict):
        message = f"{key} must be {_ALIGN_EXPECTED}, got {found(value)}"
        return [error("C107", message, subject=subject, hint=f"write e.g. {ALIGN_EXAMPLE}")]
    diagnostics = _align_missing(key, value, subject)
    for name, item in value.items():
        entry_subject = subject_of(subject, name)
        rule = _ALIGN_ENTRY_RULES.get(name)
        if rule is None:
            message = f"unknown key {name!r} in {key}; {key} takes only {', '.join(ALIGN_KEYS)}"
            hint = did_you_mean(str(name), ALIGN_KEYS)
            diagnostics.append(error("C102", message, subject=entry_subject, hint=hint))
        else:
            diagnostics.extend(rule.check(f"{key}.{name}", item, entry_subject))
    return diagnostics


def _align_missing(key: str, value: dict, subject: str) -> list[Diagnostic]:
    missing = [name for name in ALIGN_KEYS if name not in value]
    if not missing:
        return []
    message = f"{key} is missing {' and '.join(missing)}; it needs all of {', '.join(ALIGN_KEYS)}"
    hint = f"write all three keys, e.g. {ALIGN_EXAMPLE} (module_name None means this same module)"
    return [error("C107", message, subject=subject, hint=hint)]


# ---- quantization --------------------------------------------------------------------------------

_DTYPE_EXPECTED = "None or one of 'int2'..'int8', 'uint2'..'uint8'"


def _check_quant_dtype(key: str, value: Any, subject: str) -> list[Diagnostic]:
    if value is None or (isinstance(value, str) and value in QUANT_DTYPES):
        return []
    if not isinstance(value, str):
        hint = f"write 'int{value}'" if is_int(value) and 2 <= value <= 8 else None
        hint = hint or "write the dtype's name as a string, e.g. 'int8' (None means int8)"
        return [wrong_type(key, "a str like 'int8', or None", value, subject, hint)]
    message = f"{key} {value!r} is not supported; expected {_DTYPE_EXPECTED}"
    return [error("C106", message, subject=subject, hint=_dtype_hint(value))]


def _dtype_hint(value: str) -> str:
    bits = re.fullmatch(r"(u?int)(\d+)", value)
    if bits and int(bits[2]) > 8:
        return f"at most 8 bits are supported, e.g. '{bits[1]}8'"
    if bits and int(bits[2]) < 2:
        return f"at least 2 bits are needed, e.g. '{bits[1]}2'"
    if bits:
        return f"write '{bits[1]}{int(bits[2])}'"
    if re.match(r"(b?float|fp\d|half|double)", value.lower()):
        return "only integer quantization is supported: use e.g. 'int8' (None means int8)"
    return did_you_mean(value, QUANT_DTYPES) or "use e.g. 'int8' or 'uint8' (None means int8)"


def _check_quant_scheme(key: str, value: Any, subject: str) -> list[Diagnostic]:
    if isinstance(value, str) and value in QUANT_SCHEMES:
        return []
    hint = None
    if value is None:
        hint = "omit quant_scheme for the default (symmetric); NNI 3.0 rejects an explicit None"
    elif value == "asymmetric":
        hint = "NNI calls the asymmetric scheme 'affine'"
    elif isinstance(value, str):
        hint = did_you_mean(value, QUANT_SCHEMES)
    message = f"{key} must be 'affine' or 'symmetric', got {found(value)}"
    return [error("C105", message, subject=subject, hint=hint)]


_FUSE_EXPECTED = "a list of tuples of 2 or 3 module names, e.g. [('conv1', 'bn1')]"


def _check_fuse_names(key: str, value: Any, subject: str) -> list[Diagnostic]:
    # Reported even when well-formed, so a fusion request is never silently dropped.
    message = f"{key} (module fusion) is valid NNI 3.0 but not supported by this engine yet"
    hint = "remove fuse_names; each selected module is then quantized on its own"
    diagnostics = [error("C111", message, subject=subject, hint=hint)]
    if not isinstance(value, list):
        return diagnostics + [wrong_type(key, _FUSE_EXPECTED, value, subject)]
    for index, group in enumerate(value):
        diagnostics.extend(_check_fuse_group(key, group, f"{subject}[{index}]"))
    return diagnostics


def _check_fuse_group(key: str, group: Any, subject: str) -> list[Diagnostic]:
    names_ok = isinstance(group, (list, tuple)) and all(isinstance(n, str) for n in group)
    if isinstance(group, tuple) and names_ok and 2 <= len(group) <= 3:
        return []
    expected = "a tuple of 2 or 3 module names"
    hint = None
    if isinstance(group, list):
        expected += " (NNI 3.0 rejects a list here)"
        hint = f"write it as a tuple: {tuple(group)!r}"
    return [wrong_type(f"each {key} entry", expected, group, subject, hint)]


# ---- the tables ----------------------------------------------------------------------------------


def _is_group_id(value: Any) -> bool:
    return is_int(value) or isinstance(value, str)


def _is_link(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(name, str) for name in value)
    return isinstance(value, str)


SETTING_RULES: dict[Mode, dict[str, KeyRule]] = {
    Mode.PRUNE: {
        "sparse_ratio": ratio_rule(0, 1, low_open=False, high_open=False),
        "sparse_threshold": type_rule("an int or float", is_number),
        "max_sparse_ratio": ratio_rule(0, 1, low_open=True, high_open=False),
        "min_sparse_ratio": ratio_rule(0, 1, low_open=False, high_open=True),
        "global_group_id": type_rule("an int or str", _is_group_id),
        "dependency_group_id": type_rule("an int or str", _is_group_id),
        "internal_metric_block": type_rule("an int >= 1", lambda v: is_int(v) and v >= 1),
        "granularity": GRANULARITY_RULE,
        "apply_method": apply_method_rule(Mode.PRUNE),
        "align": KeyRule(f"{_ALIGN_EXPECTED}, e.g. {ALIGN_EXAMPLE}", _check_align),
    },
    Mode.QUANTIZE: {
        "quant_dtype": KeyRule(_DTYPE_EXPECTED, _check_quant_dtype),
        "quant_scheme": KeyRule("'affine' or 'symmetric'", _check_quant_scheme),
        "granularity": GRANULARITY_RULE,
        "apply_method": apply_method_rule(Mode.QUANTIZE),
    },
    Mode.DISTILL: {
        "lambda": type_rule("an int or float", is_number),
        "link": type_rule("a str, or a list or tuple of str", _is_link),
        "apply_method": apply_method_rule(Mode.DISTILL),
    },
}
"""Per mode, the setting keys a config takes at top level (shorthand) and per target."""

CONFIG_RULES: dict[Mode, dict[str, KeyRule]] = {
    Mode.PRUNE: {},
    Mode.QUANTIZE: {"fuse_names": KeyRule(_FUSE_EXPECTED, _check_fuse_names)},
    Mode.DISTILL: {},
}
"""Per mode, the keys a config takes at top level only (never inside target_settings)."""

REQUIRED_KEYS: dict[Mode, dict[str, str]] = {
    Mode.PRUNE: {},
    Mode.QUANTIZE: {
        "quant_dtype": "write quant_dtype=None for int8: NNI 3.0 requires the key even then",
    },
    Mode.DISTILL: {},
}
"""Per mode, the keys a config must have at top level, each with the hint shown when absent."""

EXCLUSIVE_KEYS: dict[Mode, tuple[tuple[str, str], ...]] = {
    Mode.PRUNE: (("sparse_ratio", "sparse_threshold"),),
    Mode.QUANTIZE: (),
    Mode.DISTILL: (),
}
"""Per mode, the pairs of keys one setting dict may not both hold."""


def setting_keys(mode: Mode | str) -> frozenset[str]:
    """The setting keys of ``mode``: the shorthand keys, also valid per target."""
    return frozenset(SETTING_RULES[Mode(mode)])


def modes_taking(key: Any) -> tuple[Mode, ...]:
    """The modes whose configs accept ``key``, in Mode order."""
    return tuple(m for m in Mode if key in SETTING_RULES[m] or key in CONFIG_RULES[m])


def check_setting_values(
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
    return diagnostics
