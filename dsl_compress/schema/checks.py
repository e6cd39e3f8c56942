"""The KeyRule type and the value checks the modes share: ratios, granularity, apply_method."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from dsl_compress.diagnostics import (
    CompressionError,
    Diagnostic,
    did_you_mean,
    error,
    sole_match,
)
from dsl_compress.schema.granularity import GRANULARITY_NAMES, parse_granularity
from dsl_compress.vocab import Mode

Check = Callable[[str, Any, str], list[Diagnostic]]


@dataclass(frozen=True)
class KeyRule:
    """One key: what it accepts, in words (for messages and `explain`), and the check;
    ``choices``: the words it takes, where they are a closed set (offered by completion)."""

    expected: str
    check: Check
    choices: tuple[str, ...] = ()


def subject_of(parent: str, key: Any) -> str:
    """The subject path of ``key`` inside ``parent``: ``parent.key``, or ``parent['a.b']``."""
    if isinstance(key, str) and key.isidentifier():
        return f"{parent}.{key}"
    return f"{parent}[{key!r}]"


def found(value: Any) -> str:
    """A short description of a value for 'got ...' in messages."""
    if value is None:
        return "None"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A number that is not NaN or infinite: a threshold or a loss weight of NaN or inf
    would mask everything (or nothing) or poison the loss without a word."""
    return is_number(value) and math.isfinite(value)


def wrong_type(
    key: str, expected: str, value: Any, subject: str, hint: str | None = None
) -> Diagnostic:
    return error(
        "C103", f"{key} must be {expected}, got {found(value)}", subject=subject, hint=hint
    )


def type_rule(expected: str, accepts: Callable[[Any], bool]) -> KeyRule:
    def check(key: str, value: Any, subject: str) -> list[Diagnostic]:
        return [] if accepts(value) else [wrong_type(key, expected, value, subject)]

    return KeyRule(expected, check)


# ---- ratios --------------------------------------------------------------------------------------


def ratio_rule(low: float, high: float, low_open: bool, high_open: bool) -> KeyRule:
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    expected = f"a float in {interval}"

    def check(key: str, value: Any, subject: str) -> list[Diagnostic]:
        if not is_number(value):
            return [wrong_type(key, expected, value, subject, _ratio_type_hint(value))]
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if above and below:
            return []
        message = f"{key} must be {expected}, got {value!r}"
        return [error("C104", message, subject=subject, hint=_ratio_range_hint(value))]

    return KeyRule(expected, check)


def _ratio_type_hint(value: Any) -> str | None:
    if value is None:
        return "omit the key to leave it unset; NNI 3.0 rejects an explicit None"
    if isinstance(value, str):
        return "write the number without quotes, e.g. 0.5"
    return None


def _ratio_range_hint(value: float) -> str:
    if 2 <= value <= 100:
        return f"ratios are fractions, not percentages: write {value / 100:g} for {value:g}%"
    return "a ratio is the fraction of elements masked: 0.0 keeps all, 1.0 masks all"


# ---- granularity ---------------------------------------------------------------------------------

_GRANULARITY_EXPECTED = (
    "'default', 'in_channel', 'out_channel', 'per_channel', None, "
    "a list of block sizes like [1, -1], or [[sizes], 'front'|'back', pad]"
)


def _check_granularity(key: str, value: Any, subject: str) -> list[Diagnostic]:
    if isinstance(value, str) and value not in GRANULARITY_NAMES:
        hint = did_you_mean(value, GRANULARITY_NAMES) or f"use {_GRANULARITY_EXPECTED}"
        message = f"{key} {value!r} is not a granularity name; expected {_GRANULARITY_EXPECTED}"
        fix = sole_match(value, GRANULARITY_NAMES)
        return [error("C105", message, subject=subject, hint=hint, replacement=fix)]
    if isinstance(value, tuple):
        hint = f"write it as a list: {_tuples_as_lists(value)!r}"
        message = f"{key} must be a list, not a tuple (NNI 3.0 rejects tuples), got {value!r}"
        return [error("C112", message, subject=subject, hint=hint)]
    if value is not None and not isinstance(value, (str, list)):
        message = f"{key} must be {_GRANULARITY_EXPECTED}; got {found(value)}"
        return [error("C112", message, subject=subject)]
    try:
        parse_granularity(value, subject)
    except CompressionError as exc:
        return list(exc.diagnostics)
    return []


def _tuples_as_lists(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_tuples_as_lists(v) for v in value]
    return value


# ---- apply_method --------------------------------------------------------------------------------

APPLY_METHODS: dict[Mode, tuple[str, ...]] = {
    Mode.PRUNE: ("mul", "add", "bypass"),
    Mode.QUANTIZE: ("bypass", "clamp_round", "qat_clamp_round"),
    Mode.DISTILL: ("mse", "kl"),
}

# Values that NNI's algorithms write into the setting themselves; users may not give them.
INTERNAL_APPLY_METHODS: dict[str, str] = {
    "movement_mul": "MovementPruner",
    "movement_add": "MovementPruner",
    "slim_mul": "SlimPruner",
    "lsq_clamp_round": "LsqQuantizer",
    "lsq_plus_clamp_round": "LsqPlusQuantizer",
    "dorefa_clamp_round_weight": "DoReFaQuantizer",
    "dorefa_clamp_round_output": "DoReFaQuantizer",
    "bnn_clamp_round": "BNNQuantizer",
}

MODE_NOUNS: dict[Mode, str] = {
    Mode.PRUNE: "pruning",
    Mode.QUANTIZE: "quantization",
    Mode.DISTILL: "distillation",
}


def choices_text(choices: tuple[str, ...]) -> str:
    return ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"


def apply_method_rule(mode: Mode) -> KeyRule:
    choices = APPLY_METHODS[mode]
    expected = f"one of {choices_text(choices)}"

    def check(key: str, value: Any, subject: str) -> list[Diagnostic]:
        if isinstance(value, str) and value in choices:
            return []
        message = f"{key} must be {expected}, got {found(value)}"
        hint = f"use {choices_text(choices)}, or omit {key} for the default"
        fix = None
        if isinstance(value, str) and value in INTERNAL_APPLY_METHODS:
            owner = INTERNAL_APPLY_METHODS[value]
            message += f", which is algorithm-internal ({owner} sets it itself)"
        elif isinstance(value, str) and (owner := _apply_method_mode(value)) is not None:
            message += f", which is a {MODE_NOUNS[owner]} apply_method"
        elif isinstance(value, str):
            hint = did_you_mean(value, choices) or hint
            fix = sole_match(value, choices)
        return [error("C105", message, subject=subject, hint=hint, replacement=fix)]

    return KeyRule(expected, check, choices)


def _apply_method_mode(value: str) -> Mode | None:
    return next((m for m, choices in APPLY_METHODS.items() if value in choices), None)


GRANULARITY_RULE = KeyRule(_GRANULARITY_EXPECTED, _check_granularity, GRANULARITY_NAMES)
