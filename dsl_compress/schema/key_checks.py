"""The value checks of single keys: the align dict, quant_dtype, quant_scheme, fuse_names,
module-name lists, and the .rules-only metric, dims and group."""

from __future__ import annotations

import re
from typing import Any

from dsl_compress.diagnostics import Diagnostic, did_you_mean, error, sole_match
from dsl_compress.schema.checks import KeyRule, found, is_int, subject_of, type_rule, wrong_type
from dsl_compress.vocab import METRIC_NAMES, QUANT_DTYPES, QUANT_SCHEMES

# ---- pruning: align ------------------------------------------------------------------------------

ALIGN_ENTRY_KEYS = ("module_name", "target_name", "dims")
"""The keys of an align dict: the module and target whose mask is followed, along dims."""

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
            message = (
                f"unknown key {name!r} in {key}; {key} takes only {', '.join(ALIGN_ENTRY_KEYS)}"
            )
            hint = did_you_mean(str(name), ALIGN_ENTRY_KEYS)
            diagnostics.append(error("C102", message, subject=entry_subject, hint=hint))
        else:
            diagnostics.extend(rule.check(f"{key}.{name}", item, entry_subject))
    return diagnostics


def _align_missing(key: str, value: dict, subject: str) -> list[Diagnostic]:
    missing = [name for name in ALIGN_ENTRY_KEYS if name not in value]
    if not missing:
        return []
    needs = ", ".join(ALIGN_ENTRY_KEYS)
    message = f"{key} is missing {' and '.join(missing)}; it needs all of {needs}"
    hint = f"write all three keys, e.g. {ALIGN_EXAMPLE} (module_name None means this same module)"
    return [error("C107", message, subject=subject, hint=hint)]


ALIGN_RULE = KeyRule(f"{_ALIGN_EXPECTED}, e.g. {ALIGN_EXAMPLE}", _check_align)

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
    hint = _dtype_hint(value)
    fix = sole_match(value, QUANT_DTYPES) if hint == did_you_mean(value, QUANT_DTYPES) else None
    return [error("C106", message, subject=subject, hint=hint, replacement=fix)]


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


QUANT_DTYPE_RULE = KeyRule(_DTYPE_EXPECTED, _check_quant_dtype, QUANT_DTYPES)


def _check_quant_scheme(key: str, value: Any, subject: str) -> list[Diagnostic]:
    if isinstance(value, str) and value in QUANT_SCHEMES:
        return []
    hint = fix = None
    if value is None:
        hint = "omit quant_scheme for the default (symmetric); NNI 3.0 rejects an explicit None"
    elif value == "asymmetric":
        hint = "NNI calls the asymmetric scheme 'affine'"
    elif isinstance(value, str):
        hint = did_you_mean(value, QUANT_SCHEMES)
        fix = sole_match(value, QUANT_SCHEMES)
    message = f"{key} must be 'affine' or 'symmetric', got {found(value)}"
    return [error("C105", message, subject=subject, hint=hint, replacement=fix)]


QUANT_SCHEME_RULE = KeyRule("'affine' or 'symmetric'", _check_quant_scheme, QUANT_SCHEMES)

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


FUSE_NAMES_RULE = KeyRule(_FUSE_EXPECTED, _check_fuse_names)


def is_group_id(value: Any) -> bool:
    return is_int(value) or isinstance(value, str)


def is_link(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(name, str) for name in value)
    return isinstance(value, str)


# ---- module and target names ---------------------------------------------------------------------


def _check_names(key: str, value: Any, subject: str) -> list[Diagnostic]:
    return _check_name_list(key, value, subject, regex=False)


def _check_patterns(key: str, value: Any, subject: str) -> list[Diagnostic]:
    return _check_name_list(key, value, subject, regex=True)


def _check_name_list(key: str, value: Any, subject: str, regex: bool) -> list[Diagnostic]:
    if not isinstance(value, list):
        hint = None
        if isinstance(value, str):
            hint = f"wrap it in a list: [{value!r}]"
        elif isinstance(value, (tuple, set, frozenset)):
            hint = f"write it as a list: {sorted(value, key=str)!r}"
        return [wrong_type(key, "a list of str", value, subject, hint)]
    diagnostics = []
    for index, item in enumerate(value):
        item_subject = f"{subject}[{index}]"
        if not isinstance(item, str):
            hint = (
                f"write the name as a string: {item.__name__!r}" if isinstance(item, type) else None
            )
            diagnostics.append(wrong_type(f"each {key} entry", "a str", item, item_subject, hint))
        elif regex:
            diagnostics.extend(_check_regex(key, item, item_subject))
    return diagnostics


def _check_regex(key: str, pattern: str, subject: str) -> list[Diagnostic]:
    try:
        re.compile(pattern)
    except re.error as exc:
        message = f"{key} entry {pattern!r} is not a valid regular expression: {exc}"
        hint = None
        if pattern.startswith(("*", "+", "?")):
            hint = f"this is a regex, not a glob: write '.{pattern}' to match any prefix"
        return [error("S205", message, subject=subject, hint=hint)]
    return []


NAMES_RULE = KeyRule("a list of str", _check_names)
PATTERNS_RULE = KeyRule("a list of str, each a regular expression", _check_patterns)

# ---- the language's own keys ---------------------------------------------------------------------
# No config_list holds these, so their checks speak the language's code (E203) and name no subject.


def _check_metric(key: str, value: Any, subject: str) -> list[Diagnostic]:
    if value in METRIC_NAMES:
        return []
    hint = did_you_mean(str(value), METRIC_NAMES) or f"use one of {', '.join(METRIC_NAMES)}"
    fix = sole_match(value, METRIC_NAMES) if isinstance(value, str) else None
    return [error("E203", f"unknown metric {value!r}", hint=hint, replacement=fix)]


def _check_dims(key: str, value: Any, subject: str) -> list[Diagnostic]:
    if isinstance(value, list) and all(map(is_int, value)):
        return []
    return [error("E203", f"dims must be a list of ints, got {value!r}", hint="e.g. dims=[0]")]


def _check_group(key: str, value: Any, subject: str) -> list[Diagnostic]:
    if is_group_id(value):
        return []
    return [error("E203", f"group must be a name or an int, got {value!r}")]


METRIC_RULE = KeyRule(f"one of {', '.join(METRIC_NAMES)}", _check_metric, METRIC_NAMES)
DIMS_RULE = KeyRule("a list of int", _check_dims)
GROUP_RULE = KeyRule("a name or an int", _check_group)
