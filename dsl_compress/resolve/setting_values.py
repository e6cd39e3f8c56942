"""Values and keys of .rules settings: words, let names, lists, and the key table per statement kind."""

from __future__ import annotations

from typing import Any, Mapping

from dsl_compress.diagnostics import Diagnostic, Severity, Span, did_you_mean
from dsl_compress.vocab import METRIC_NAMES, Mode
from dsl_compress.schema.keys import SETTING_RULES
from dsl_compress.language.syntax import ListValue, Setting, Value

WORDS = {"none": None, "true": True, "false": False}
# Keys whose value is a number: a bare word there must be a let name.
NUMERIC_KEYS = frozenset(
    {"sparse_ratio", "sparse_threshold", "max_sparse_ratio", "min_sparse_ratio", "lambda"}
)
# Keys the language adds to NNI's: the metric of a prune statement, and its global group.
EXTRA_KEYS = {Mode.PRUNE: ("metric", "group"), Mode.QUANTIZE: (), Mode.DISTILL: ()}
ALIGN_KEYS = ("dims", "granularity", "apply_method")
# NNI rejects these internal or reserved keys from users; the language has its own spelling.
RENAMED = {"global_group_id": "group", "align": "an align statement"}

# Codes of the config_list checks, as the language reports them.
_CODE_FOR = {"C102": "E202", "C104": "E207"}


def nni_key(name: str) -> str:
    """The NNI key a language key writes: group is NNI's global_group_id."""
    return "global_group_id" if name == "group" else name


def at(diag: Diagnostic, span: Span, code: str | None = None) -> Diagnostic:
    """The same diagnostic, located at ``span`` (and renumbered into the language's codes)."""
    code = code or _CODE_FOR.get(diag.code, "E203" if diag.code.startswith("C") else diag.code)
    return Diagnostic(
        code, diag.severity, diag.message, span=span, subject=diag.subject, hint=diag.hint
    )


def located(code: str, message: str, span: Span, hint: str | None = None) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, span=span, hint=hint)


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


def statement_keys(mode: Mode) -> tuple[str, ...]:
    """Keys a prune/quantize/distill statement accepts."""
    return tuple(k for k in SETTING_RULES[mode] if k not in RENAMED) + EXTRA_KEYS[mode]


def check_setting(
    mode: Mode, key: str, value: Any, setting: Setting, allowed: tuple[str, ...]
) -> list:
    """Unknown keys and bad values of one setting, located at it."""
    if key not in allowed:
        hint = did_you_mean(key, allowed)
        if key == "global_group_id":
            hint = f"write group={value!r}"
        elif key == "align":
            hint = "write `align A.target with B.target dims=[...]` as its own statement"
        message = f"unknown setting '{key}' for {_statement_name(mode, allowed)}"
        return [located("E202", message, setting.span, hint or f"accepted: {', '.join(allowed)}")]
    if key == "metric":
        if value not in METRIC_NAMES:
            hint = did_you_mean(str(value), METRIC_NAMES) or f"use one of {', '.join(METRIC_NAMES)}"
            return [located("E203", f"unknown metric {value!r}", setting.value.span, hint)]
        return []
    if key == "dims":
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            return [
                located(
                    "E203",
                    f"dims must be a list of ints, got {value!r}",
                    setting.value.span,
                    "e.g. dims=[0]",
                )
            ]
        return []
    if key == "group":
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            return [
                located(
                    "E203", f"group must be a name or an int, got {value!r}", setting.value.span
                )
            ]
        return []
    rule = SETTING_RULES[mode].get(key)
    if rule is None:
        return []
    return [at(d, setting.value.span) for d in rule.check(key, value, key)]


def _statement_name(mode: Mode, allowed: tuple[str, ...]) -> str:
    return "align" if allowed == ALIGN_KEYS else mode.value
