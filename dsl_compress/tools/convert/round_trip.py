"""The round trip of a conversion with a model: the .rules it wrote compile to the plan the
source gives, every tensor and key; a tensor where they differ gets an exact-name statement with
the source's values (K101), and what still differs after that is error K104."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from dsl_compress.diagnostics import CompressionError, Diagnostic, error, warning
from dsl_compress.plan import Plan
from dsl_compress.resolve.config_input import ConfigInput
from dsl_compress.resolve.ruleset import parse
from dsl_compress.tools.convert.conversion import Conversion, ConvertedStatement
from dsl_compress.tools.convert.selectors import name_selector
from dsl_compress.vocab import Mode

# A tensor of one mode: (mode, module, target).
Tensor = tuple[str, str, str]
_SPELLING = {"global_group_id": "group"}


def plan_table(plan: Plan) -> dict[Tensor, dict[str, Any]]:
    """Each tensor's resolved keys (None means unset, as NNI's consumers read it) and metric:
    the plan's dicts without their origins."""
    table = {}
    for item in plan.to_dicts():
        setting = {k: v for k, v in item["setting"].items() if v is not None}
        if item["metric"] is not None:
            setting["metric"] = item["metric"]
        table[(item["mode"], item["module"], item["target"])] = setting
    return table


def differences(expected: dict, found: dict) -> list[tuple[Tensor, str, Any, Any]]:
    """(tensor, key, expected value, found value) wherever the two tables differ; key '' for a
    tensor one of them lacks."""
    out = []
    for tensor in sorted(set(expected) | set(found)):
        if tensor not in expected or tensor not in found:
            out.append((tensor, "", expected.get(tensor), found.get(tensor)))
            continue
        want, got = expected[tensor], found[tensor]
        for key in sorted(set(want) | set(got)):
            if want.get(key) != got.get(key):
                out.append((tensor, key, want.get(key), got.get(key)))
    return out


def check_round_trip(
    conversion: Conversion,
    config: ConfigInput,
    model: Any,
    source_origin: Callable[[str], str] = str,
) -> Conversion:
    """``conversion`` with repairs for the tensors whose plan differs from the source's, and
    error K104 for each difference that remains; ``source_origin`` names a config of
    ``config`` as the statements name it (the source's index, before NNI 2.x translation)."""
    plan = config.plan(model)
    expected = plan_table(plan)
    firsts = {(e.mode.value, e.module, e.target): source_origin(e.origin) for e in plan.entries}
    found, problems = _compiled(conversion, model)
    if problems:
        return replace(conversion, notes=conversion.notes + tuple(problems))
    diffs = differences(expected, found)
    if not diffs:
        return conversion
    repairs, notes = _repairs(diffs, expected)
    kept_off = _kept_off(conversion.statements, diffs, expected, firsts)
    repaired = replace(
        conversion,
        statements=kept_off + tuple(repairs),
        notes=conversion.notes + tuple(notes),
    )
    found, problems = _compiled(repaired, model)
    remaining = problems or [_differs(*d) for d in differences(expected, found)]
    return replace(repaired, notes=repaired.notes + tuple(remaining))


def _compiled(conversion: Conversion, model: Any) -> tuple[dict, list[Diagnostic]]:
    text = conversion.rules_text()
    try:
        compiled = parse(text, "<converted>").compile(model)
    except CompressionError as exc:
        return {}, [_unreadable(d) for d in exc.diagnostics]
    return plan_table(compiled.plan), []


def _repairs(diffs, expected: dict) -> tuple[list[ConvertedStatement], list[Diagnostic]]:
    """One exact-name statement per differing tensor, setting each key where the two differ to
    the source's value (none where the source leaves it unset)."""
    keys: dict[Tensor, list[str]] = {}
    for tensor, key, _, _ in diffs:
        if tensor in expected:
            wanted = [key] if key else sorted(expected[tensor])
            # A key NNI leaves unset cannot be written unset: _kept_off keeps it off instead.
            wanted = [k for k in wanted if k in expected[tensor]]
            keys.setdefault(tensor, []).extend(k for k in wanted if k not in ("metric", "align"))
    statements, notes = [], []
    for tensor, names in keys.items():
        if not names:
            continue
        mode, module, target = tensor
        values = tuple((_SPELLING.get(k, k), expected[tensor].get(k)) for k in dict.fromkeys(names))
        comment = (
            f"{module}.{target}: NNI's first config wins here, where .rules precedence would "
            "merge or override keys of later configs: its setting written out by name"
        )
        statements.append(
            ConvertedStatement(Mode(mode), f"{name_selector(module)}.{target}", values, "", comment)
        )
        notes.append(_repaired(module, target, [k for k, _ in values]))
    return statements, notes


def _kept_off(
    statements: tuple[ConvertedStatement, ...], diffs, expected: dict, firsts: dict
) -> tuple[ConvertedStatement, ...]:
    """The statements with ``except MODULE`` added to those of a later config where that config
    gives a tensor a key NNI's first config leaves unset (NNI takes the whole setting of the
    first config; .rules merges the keys of every statement)."""
    off: dict[tuple[str, str], set[str]] = {}
    for tensor, key, want, got in diffs:
        if key and want is None and got is not None and tensor in expected:
            mode, module, _ = tensor
            off.setdefault((mode, firsts.get(tensor, "")), set()).add(module)
    if not off:
        return statements
    out = []
    for statement in statements:
        modules = set()
        for (mode, first), names in off.items():
            mine = statement.mode is not None and statement.mode.value == mode
            if mine and statement.origin and statement.origin != first:
                modules |= names
        extra = tuple(name_selector(m) for m in sorted(modules))
        out.append(replace(statement, excepts=statement.excepts + extra) if extra else statement)
    return tuple(out)


def _repaired(module: str, target: str, keys: list[str]) -> Diagnostic:
    return warning(
        "K101",
        f"'{module}.{target}' written as an exact-name statement ({', '.join(keys)}): NNI "
        "takes its whole setting from the first config that selects it",
        subject=f"{module}.{target}",
        hint="nothing to fix; the output says so in a comment",
    )


def _differs(tensor: Tensor, key: str, want: Any, got: Any) -> Diagnostic:
    mode, module, target = tensor
    what = (
        f"key '{key}': the source gives {want!r}, the rules {got!r}"
        if key
        else (
            "the source configures it, the rules do not"
            if got is None
            else "the rules configure it, the source does not"
        )
    )
    return error(
        "K104",
        f"round trip differs at {mode} '{module}.{target}', {what}",
        subject=f"{module}.{target}",
        hint="report it with the source file: the converted rules must reproduce it",
    )


def _unreadable(diag: Diagnostic) -> Diagnostic:
    return error(
        "K104",
        f"the converted rules do not compile with the model: {diag.message}",
        subject=diag.subject,
        hint=diag.hint,
    )
