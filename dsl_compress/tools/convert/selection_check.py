"""The per-tensor check of a conversion against a model: the converted rules compiled with the
model must give every tensor exactly the settings the source tool gives it (re-implemented in
ct_match / modelopt_match); where they do not, exact module-name statements are added, and
what still differs is an error note."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from dsl_compress.diagnostics import CompressionError, Diagnostic, error, warning
from dsl_compress.tools.convert.conversion import Conversion, ConvertedStatement
from dsl_compress.tools.convert.selectors import name_selector
from dsl_compress.vocab import Mode

# The keys compared per mode: those the converters write (the rest keep their defaults).
COMPARED_KEYS = {
    Mode.QUANTIZE: ("quant_dtype", "quant_scheme", "granularity"),
    Mode.PRUNE: ("sparse_ratio", "mask_structure", "granularity"),
}
# A tensor as the check addresses it: module, target ("weight", "_input_", "_output_"), mode.
TensorKey = tuple[str, str, Mode]


@dataclass(frozen=True)
class Wanted:
    """What the source tool gives one tensor: its settings in our spelling, and where the
    source says so (the origin of the statement that reproduces it)."""

    settings: tuple[tuple[str, Any], ...]
    origin: str


def normalised(mode: Mode, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The compared keys of a setting, a quantization's ``granularity=default`` read as the plan
    holds it (None: one scale per tensor)."""
    values = {key: settings.get(key) for key in COMPARED_KEYS[mode]}
    if mode is Mode.QUANTIZE and values.get("granularity") == "default":
        values["granularity"] = None
    return values


def planned(conversion: Conversion, model: Any, modes: tuple[Mode, ...]) -> dict[TensorKey, dict]:
    """Every tensor's compared settings in the plan the converted rules compile to."""
    from dsl_compress.resolve.ruleset import parse

    plan = (
        parse(conversion.rules_text(), conversion.source or "converted.rules").compile(model).plan
    )
    found = {}
    for entry in plan.entries:
        if entry.mode in modes:
            target = "_input_" if entry.target.startswith("_input_") else entry.target
            target = "_output_" if target.startswith("_output_") else target
            found[(entry.module, target, entry.mode)] = normalised(entry.mode, entry.setting)
    return found


def differences(wanted: Mapping[TensorKey, Wanted], found: Mapping[TensorKey, dict]) -> list:
    """The tensors whose compared settings differ, with what the source wants (None: nothing)."""
    keys = sorted(set(wanted) | set(found), key=lambda k: (k[2].value, k[0], k[1]))
    return [
        (key, wanted.get(key))
        for key in keys
        if (normalised(key[2], dict(wanted[key].settings)) if key in wanted else None)
        != found.get(key)
    ]


def checked(conversion: Conversion, wanted: Mapping[TensorKey, Wanted], model: Any) -> Conversion:
    """The conversion with exact statements added wherever the compiled rules and the source's
    selection disagree, and an error note for any tensor that still differs."""
    modes = tuple({key[2] for key in wanted} | _statement_modes(conversion))
    try:
        diffs = differences(wanted, planned(conversion, model, modes))
    except CompressionError as failure:
        return _with_notes(conversion, [_not_compiled(failure)])
    if not diffs:
        return conversion
    fixed = _fixed(conversion, diffs)
    try:
        left = differences(wanted, planned(fixed, model, modes))
    except CompressionError as failure:
        return _with_notes(conversion, [_not_compiled(failure)])
    notes = [_exact_note(len(fixed.statements) - len(conversion.statements))]
    notes += [_unreproduced(key) for key, _ in left]
    return _with_notes(fixed, notes)


def _statement_modes(conversion: Conversion) -> set[Mode]:
    return {s.mode or s.exclude_from for s in conversion.statements if (s.mode or s.exclude_from)}


def _fixed(conversion: Conversion, diffs: list) -> Conversion:
    wanted_modules = {(key[0], key[2]) for key, want in diffs if want is not None}
    added, excluded = [], set()
    for (module, target, mode), want in diffs:
        if want is not None:
            added.append(_exact_statement(module, target, mode, want))
        elif (module, mode) not in wanted_modules and (module, mode) not in excluded:
            excluded.add((module, mode))
            added.append(_exact_exclude(module, mode))
    return replace(conversion, statements=conversion.statements + tuple(added))


def _exact_statement(module: str, target: str, mode: Mode, want: Wanted) -> ConvertedStatement:
    comment = (
        "exact name: the general statements above do not give this tensor what the source does"
    )
    return ConvertedStatement(
        mode, name_selector(module, target), want.settings, want.origin, comment
    )


def _exact_exclude(module: str, mode: Mode) -> ConvertedStatement:
    comment = "exact name: the source leaves this module alone, the statements above would not"
    return ConvertedStatement(None, name_selector(module), (), "", comment, exclude_from=mode)


def _with_notes(conversion: Conversion, notes: list[Diagnostic]) -> Conversion:
    return replace(conversion, notes=conversion.notes + tuple(notes))


def _exact_note(count: int) -> Diagnostic:
    return warning(
        "K158",
        f"{count} exact module-name statement(s) added: the source's precedence or matching "
        "could not be reproduced by the general statements alone",
        hint="each is marked 'exact name' in the output; review whether the source meant it",
    )


def _unreproduced(key: TensorKey) -> Diagnostic:
    module, target, mode = key
    return error(
        "K159",
        f"the converted rules do not {mode.value} '{module}.{target}' as the source does",
        subject=f"module '{module}' target '{target}'",
        hint="write a statement for this tensor by hand",
    )


def _not_compiled(failure: CompressionError) -> Diagnostic:
    first = failure.diagnostics[0] if failure.diagnostics else None
    detail = f"{first.code}: {first.message}" if first else str(failure)
    return error("K159", f"the converted rules do not compile with the model ({detail})")
