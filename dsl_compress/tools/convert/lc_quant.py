"""llm-compressor's QuantizationModifier and GPTQModifier as quantize statements: the scheme
groups compressed-tensors applies (``scheme`` presets, ``config_groups``), each target a
statement in an order that makes our precedence give compressed-tensors' ranking, ``ignore``
as excludes; GPTQ and observers reported as algorithms."""

from __future__ import annotations

from typing import Any, Mapping

from dsl_compress.diagnostics import fail
from dsl_compress.tools.convert import ct_match
from dsl_compress.tools.convert.conversion import ConvertedStatement
from dsl_compress.tools.convert.ct_schemes import PRESETS, ROLES, convert_args
from dsl_compress.tools.convert.lc_recipe import Modifier
from dsl_compress.tools.convert.part import Part, note
from dsl_compress.tools.convert.selection_check import Wanted
from dsl_compress.tools.convert.selectors import name_selector, prefix_regex, regex_selector
from dsl_compress.vocab import Mode

QUANT_MODIFIERS = ("QuantizationModifier", "GPTQModifier")
_ALGORITHM_KEYS = ("block_size", "dampening_frac", "actorder", "offload_hessians")
_OBSERVER_KEYS = ("observer", "weight_observer", "input_observer", "output_observer")
_IGNORED_KEYS = ("index", "group", "start", "end", "update", "bypass_divisibility_checks")
_KNOWN_KEYS = {"config_groups", "targets", "ignore", "scheme", "kv_cache_scheme"}
_KNOWN_KEYS |= set(_ALGORITHM_KEYS + _OBSERVER_KEYS + _IGNORED_KEYS)


def convert_quantization(modifier: Modifier, modules: tuple | None) -> Part:
    """One quantization modifier: statements, notes and (with modules) each tensor's scheme."""
    notes = _modifier_notes(modifier)
    schemes = _target_schemes(modifier, notes)
    roles = {
        target: _converted_roles(modifier, target, scheme, notes)
        for target, (scheme, _) in schemes.items()
    }
    ignore = _as_list(modifier.args.get("ignore", []))
    order = _statement_order(schemes)
    statements = [
        s
        for index, target in enumerate(order)
        for s in _target_statements(target, roles, schemes, order[index + 1 :], ignore)
    ]
    wanted = {}
    if modules is not None:
        wanted = _wanted(modules, schemes, roles, ignore)
        notes += _model_notes(modifier, modules, schemes, ignore)
    elif len({str(schemes[t][0]) for t in schemes if _kind(t) == "regex"}) > 1:
        message = "re: targets with different schemes: where they overlap, compressed-tensors picks the alphabetically first pattern (#847)"
        notes.append(
            note(
                "K153",
                modifier.origin,
                message,
                hint="give the model to see which modules it concerns",
            )
        )
    replaces = tuple(_selector(target) for target in order)
    return Part(tuple(statements), tuple(notes), wanted, replaces, bool(ignore))


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


def _modifier_notes(modifier: Modifier) -> list:
    notes = []
    unknown = sorted(set(modifier.args) - _KNOWN_KEYS)
    for key in unknown:
        notes.append(
            note(
                "K160",
                modifier.at(key),
                f"{modifier.kind} has no argument {key!r}: not converted (llm-compressor would reject it)",
            )
        )
    if modifier.kind == "GPTQModifier":
        knobs = ", ".join(
            f"{k}={modifier.args[k]!r}" for k in _ALGORITHM_KEYS if k in modifier.args
        )
        notes.append(
            note(
                "K151",
                modifier.origin,
                "GPTQ (error-compensating rounding"
                + (f"; {knobs}" if knobs else "")
                + ") is an algorithm, not a setting: not converted; its scheme is, with round-to-nearest scales",
            )
        )
    notes += modifier.knob_notes(_OBSERVER_KEYS, "chooses how scales are calibrated")
    if modifier.args.get("kv_cache_scheme"):
        notes.append(
            note(
                "K152",
                modifier.at("kv_cache_scheme"),
                "kv_cache_scheme (quantized attention keys and values) has no NNI equivalent: not converted",
            )
        )
    return notes


def _groups(modifier: Modifier) -> list[tuple[str, list[str], Mapping[str, Any], str]]:
    """(group name, targets, scheme, origin) in compressed-tensors' group order."""
    args, targets = modifier.args, _as_list(modifier.args.get("targets", ["Linear"]))
    scheme, groups = args.get("scheme"), args.get("config_groups")
    if scheme is not None and groups:
        fail(
            "K150",
            f"{modifier.at('scheme')}: {modifier.kind} takes scheme or config_groups, not both",
        )
    if isinstance(scheme, str):
        return [("group_0", targets, _preset(scheme, modifier), modifier.at("scheme"))]
    if isinstance(scheme, dict):
        return [
            (f"group_{i}", _as_list(t), _preset(name, modifier), modifier.at(f"scheme.{name}"))
            for i, (name, t) in enumerate(scheme.items())
        ]
    if isinstance(groups, dict):
        return [
            (name, _as_list(g.get("targets", [])), g, modifier.at(f"config_groups.{name}"))
            for name, g in groups.items()
            if _is_group(g, name, modifier)
        ]
    return []


def _is_group(group: Any, name: str, modifier: Modifier) -> bool:
    if not isinstance(group, dict):
        fail("K150", f"{modifier.at('config_groups')}: config group {name!r} must be a mapping")
    return True


def _preset(name: str, modifier: Modifier) -> Mapping[str, Any]:
    if name.upper() not in PRESETS:
        fail(
            "K150",
            f"{modifier.at('scheme')}: {name!r} is not a compressed-tensors preset scheme",
            hint="one of " + ", ".join(PRESETS),
        )
    return PRESETS[name.upper()]


def _target_schemes(modifier: Modifier, notes: list) -> dict[str, tuple[Mapping[str, Any], str]]:
    """Each target's scheme and origin; a target in two groups keeps the later group's, as
    compressed-tensors' OrderedDict does."""
    groups = _groups(modifier)
    if not groups:
        notes.append(
            note(
                "K160",
                modifier.origin,
                f"{modifier.kind} has neither scheme nor config_groups: it quantizes nothing",
            )
        )
    chosen: dict[str, tuple[Mapping[str, Any], str]] = {}
    for name, targets, scheme, origin in groups:
        for target in targets:
            if target in chosen:
                notes.append(
                    note(
                        "K153",
                        origin,
                        f"target {target!r} is in two groups: the later one ({name}) wins",
                    )
                )
            chosen[target] = (scheme, f"{origin} ({name})")
    return chosen


def _converted_roles(
    modifier: Modifier, target: str, scheme: Mapping[str, Any], notes: list
) -> dict[str, tuple]:
    roles = {}
    for role, our_target in ROLES.items():
        args = scheme.get(role)
        if not args:
            continue
        converted = convert_args(args)
        if converted.reasons:
            reasons = "; ".join(converted.reasons)
            notes.append(
                note(
                    "K152",
                    modifier.origin,
                    f"{role} of target {target!r}: {reasons}: not converted, left unquantized",
                )
            )
        else:
            roles[our_target] = converted.settings
        if converted.calibration:
            notes.append(
                note(
                    "K151",
                    modifier.origin,
                    f"{role} of target {target!r}: {', '.join(converted.calibration)} steer calibration, not settings: not converted",
                )
            )
    return roles


def _statement_order(schemes: Mapping[str, Any]) -> list[str]:
    """Classes first, then re: patterns, then names; within each, reverse alphabetical: the later
    of equally specific statements wins ours, the alphabetically first wins theirs."""
    classes = [t for t in schemes if _kind(t) == "class"]
    regexes = [t for t in schemes if _kind(t) == "regex"]
    names = [t for t in schemes if _kind(t) == "name"]
    return sorted(classes, reverse=True) + sorted(regexes, reverse=True) + names


def _kind(target: str) -> str:
    if target.startswith("re:"):
        return "regex"
    return "class" if "." not in target and target[:1].isupper() else "name"


def _selector(target: str, our_target: str | None = None) -> str:
    kind = _kind(target)
    if kind == "regex":
        return regex_selector(prefix_regex(target[3:]), our_target)
    if kind == "class":
        return f"{target}.{our_target}" if our_target else target
    return name_selector(target, our_target)


def _target_statements(
    target: str,
    roles: Mapping[str, Mapping[str, tuple]],
    schemes: Mapping,
    outranking: list[str],
    ignore: list[str],
) -> list[ConvertedStatement]:
    """One statement per role (weight, input) of ``target``'s scheme. compressed-tensors gives
    a module the whole scheme of the one target that wins it: a role is kept off the modules
    of every ``outranking`` target whose scheme lacks it, and off the modifier's ``ignore``
    (its own statements only: another modifier may quantize them)."""
    origin = schemes[target][1]
    overlapping = _kind(target) == "regex" and sum(_kind(t) == "regex" for t in schemes) > 1
    comment = (
        "compressed-tensors ranks overlapping re: targets alphabetically (#847): written in "
        "reverse, so the later statement wins here as the alphabetically first wins there"
        if overlapping
        else None
    )
    found = []
    for role, settings in roles[target].items():
        lacking = [_selector(other) for other in outranking if role not in roles[other]]
        excepts = tuple(dict.fromkeys(lacking + [_selector(entry) for entry in ignore]))
        selector = _selector(target, role)
        found.append(
            ConvertedStatement(Mode.QUANTIZE, selector, settings, origin, comment, excepts=excepts)
        )
    return found


def _wanted(modules: tuple, schemes: Mapping, roles: Mapping, ignore: list[str]) -> dict:
    wanted = {}
    for module, target in ct_match.winning_targets(modules, schemes, ignore).items():
        for our_target, settings in roles[target].items():
            wanted[(module, our_target, Mode.QUANTIZE)] = Wanted(settings, schemes[target][1])
    return wanted


def _model_notes(modifier: Modifier, modules: tuple, schemes: Mapping, ignore: list[str]) -> list:
    notes = []
    for entry in list(schemes) + ignore:
        if not any(ct_match.is_match(m, [entry]) for m in modules):
            notes.append(
                note(
                    "K161",
                    modifier.origin,
                    f"{entry!r} matches no module of the model (compressed-tensors only logs it)",
                )
            )
    seen = set()
    for module in modules:
        ranked = ct_match.ranked_targets(module, schemes)
        ranked = (
            [t for t in ranked if _kind(t) == "regex"]
            if ranked and _kind(ranked[0]) == "regex"
            else []
        )
        distinct = [t for t in ranked if schemes[t][0] != schemes[ranked[0]][0]]
        if (
            distinct
            and (ranked[0], distinct[0]) not in seen
            and not ct_match.is_match(module, ignore)
        ):
            seen.add((ranked[0], distinct[0]))
            notes.append(
                note(
                    "K153",
                    modifier.origin,
                    f"'{module.name}' matches {ranked[0]!r} and {distinct[0]!r}: compressed-tensors picks {ranked[0]!r}, the alphabetically first, not the more specific",
                )
            )
    return notes
