"""Resolving checked rules against a model: per-tensor, per-key precedence, into a Plan."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch
from torch.nn.utils import parametrize

from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity, Span, span_of_origin
from dsl_compress.modes import Mode
from dsl_compress.plan import Plan, PlanEntry
from dsl_compress.resolve import check_entry
from dsl_compress.selection import ModelIndex
from dsl_compress.granularity import TargetKind
from dsl_compress.selectors import Match, expand_targets, render_partner
from dsl_compress.settings import Registry
from dsl_compress.statements import ExcludeRule, Rule, Value
from dsl_compress.rule_checks import (
    align_cycles,
    all_excluded,
    conflict,
    dead_rules,
    missing_partner,
    no_target,
    unregistered,
    nothing_matched,
)
from dsl_compress.values import nni_key

DEFAULT_METRIC = "l1"
Key = tuple[Mode, str, str]


@dataclass(frozen=True)
class Contribution:
    """What one statement says about one tensor."""

    rule: Rule
    values: dict[str, Value]
    explicit: bool

    @property
    def rank(self) -> tuple[tuple[int, int], int]:
        return (self.rule.selector.specificity, self.rule.index)


def resolve_rules(
    model: torch.nn.Module,
    rules: Sequence[Rule],
    excludes: Sequence[ExcludeRule],
    registry: Registry,
    record: dict | None = None,
) -> Plan:
    """The plan for ``model``: every matched tensor with each key set by its winning statement.

    ``record``, when given, receives every statement's contribution per (kind, module, target).
    """
    index = ModelIndex.of(model)
    diags: list[Diagnostic] = []
    excluded = _excluded(index, excludes, diags)
    contributions: dict[Key, list[Contribution]] = defaultdict(list)
    for rule in rules:
        rule, matches = _matches(index, rule, excluded, diags)
        made = sum(_contribute(index, rule, m, registry, contributions, diags) for m in matches)
        if matches and not made and rule.selector.exact_name is None:
            diags.append(no_target(rule, len(matches)))
    if record is not None:
        record.update(contributions)
    state = _Outcome()
    entries = [_entry(index, key, found, registry, state) for key, found in contributions.items()]
    diags.extend(state.conflicts.values())
    diags.extend(state.unregistered.values())
    matched = {c.rule.index for found in contributions.values() for c in found}
    diags.extend(dead_rules(rules, matched, state.won))
    checked = [e for e in (_checked(index, entry, diags) for entry in entries) if e is not None]
    diags.extend(align_cycles(checked, {e.key: e_span for e, e_span in entries}))
    errors = [d for d in diags if d.severity is Severity.ERROR]
    if errors:
        raise CompressionError(errors)
    return Plan(tuple(checked), tuple(diags))


@dataclass
class _Outcome:
    """What resolution learns on the way: conflicts found, statements that won some key."""

    conflicts: dict = field(default_factory=dict)
    won: set[int] = field(default_factory=set)
    unregistered: dict = field(default_factory=dict)


def _checked(index: ModelIndex, entry_span: tuple[PlanEntry, Span], diags: list):
    """Target checks of one entry, reported at the setting that caused them."""
    entry, span = entry_span
    before = len(diags)
    resolved = check_entry(index, entry, entry.metric, diags)
    granularity = entry.key_origins.get("granularity", "")
    for i in range(before, len(diags)):
        where = (span_of_origin(granularity) or span) if diags[i].code.startswith("P50") else span
        d = diags[i]
        message = f"{entry.module}.{entry.target}: {d.message}"
        diags[i] = Diagnostic(d.code, d.severity, message, span=where, hint=d.hint)
    return resolved


def _excluded(index: ModelIndex, excludes: Sequence[ExcludeRule], diags: list) -> dict:
    """Module names removed from every kind (key None) or from one kind."""
    out: dict[Mode | None, set[str]] = defaultdict(set)
    for rule in excludes:
        names = {m.module for m in rule.selector.matches(index)}
        if not names:
            diags.append(nothing_matched(index, rule.selector, rule.span, "exclude"))
        out[rule.mode] |= names
    return out


def _matches(index: ModelIndex, rule: Rule, excluded: dict, diags: list) -> tuple[Rule, list]:
    """The rule as it applies (read with a parameter target if that is what matches) and its
    matches after exclude and except."""
    removed = excluded.get(None, set()) | excluded.get(rule.mode, set())
    for selector in rule.excepts:
        names = {m.module for m in selector.matches(index)}
        if not names:
            diags.append(nothing_matched(index, selector, selector.source.span, "except"))
        removed = removed | names
    found = rule.selector.matches(index)
    if not found and rule.fallback is not None:
        found = _parameter_matches(index, rule)
        rule = replace(rule, selector=rule.fallback, fallback=None) if found else rule
    kept = [m for m in found if m.module not in removed]
    if not found:
        diags.append(nothing_matched(index, rule.selector, rule.span, "statement"))
    elif not kept:
        diags.append(all_excluded(rule, len(found)))
    return rule, kept


def _parameter_matches(index: ModelIndex, rule: Rule) -> list[Match]:
    """Modules that have the fallback's parameter (the rule then targets that parameter)."""
    (target,) = rule.fallback.targets
    modules = index.modules
    return [m for m in rule.fallback.matches(index) if target in modules[m.module]._parameters]


def _contribute(index, rule: Rule, match: Match, registry, contributions, diags) -> int:
    """Add the rule's values for each target of the module; returns how many it added.

    A pattern or type skips modules that lack the target (or a template); only an exact module
    name makes that an error, as a name pattern like `**.weight` also meets containers.
    """
    values = dict(rule.values)
    if rule.is_align:
        partner = render_partner(rule.partner, match.captures)
        if partner is None or partner not in index.modules:
            diags.append(missing_partner(index, rule, match.module, partner))
            return 0
        dims = values.pop("dims", Value([0], rule.span)).value
        align = {"module_name": partner, "target_name": rule.partner_targets[0], "dims": dims}
        values["align"] = Value(align, rule.span)
    targets = rule.selector.targets
    explicit = targets is not None
    strict = rule.selector.exact_name is not None
    if not explicit:
        targets = _template_targets(index, rule, match.module, registry, diags if strict else [])
    elif not strict:
        targets = [t for t in targets if _has_target(index, rule.mode, match.module, t, registry)]
    for target in targets:
        contributions[(rule.mode, match.module, target)].append(
            Contribution(rule, values, explicit)
        )
    return len(targets)


def _has_target(index: ModelIndex, mode: Mode, name: str, target: str, registry) -> bool:
    """Whether a pattern's target can exist on this module: a parameter it has, or an
    input/output of a type with a template of this kind."""
    module = index.modules[name]
    if TargetKind.of(target) is TargetKind.PARAMETER:
        return target in module._parameters or parametrize.is_parametrized(module, target)
    return name != "" and index.type_names[name] in registry[mode]


def _template_targets(index, rule: Rule, module: str, registry, diags) -> list[str]:
    try:
        template = registry[rule.mode].template(index.modules[module])
    except CompressionError:
        diags.append(unregistered(rule.mode, index.type_names[module], rule.span))
        return []
    return list(expand_targets(tuple(template)))


def _entry(index, key: Key, found: list[Contribution], registry, state) -> tuple[PlanEntry, Span]:
    mode, module, target = key
    type_name = index.type_names[module]
    if type_name not in registry[mode]:
        top = max(found, key=lambda c: c.rank).rule
        state.unregistered.setdefault((mode, type_name), unregistered(mode, type_name, top.span))
    try:
        base = registry[mode].get(index.modules[module], {"target_names": [target]})[target]
    except CompressionError:
        base = {}
    setting, origins = dict(base), {k: f"template {index.type_names[module]}" for k in base}
    extra: dict[str, Any] = {}
    ranks: dict[str, tuple] = {}
    for name in sorted({k for c in found for k in c.values}):
        allowed = [
            c
            for c in found
            if name in c.values and (c.explicit or nni_key(name) in base or _extra(name))
        ]
        if not allowed:
            continue
        winner = max(allowed, key=lambda c: c.rank)
        state.won.add(winner.rule.index)
        _check_conflict(allowed, winner, name, f"{module}.{target}", state.conflicts)
        value = winner.values[name]
        (extra if _extra(name) else setting)[nni_key(name)] = value.value
        origins[nni_key(name)] = str(value.span)
        ranks[name] = winner.rank
    _one_goal(setting, origins, ranks)
    top = max(found, key=lambda c: c.rank)
    metric = extra.get("metric", DEFAULT_METRIC) if mode is Mode.PRUNE else None
    entry = PlanEntry(
        module, target, mode, index.type_names[module], setting, str(top.rule.span), origins, metric
    )
    return entry, top.rule.span


def _extra(name: str) -> bool:
    return name == "metric"


def _one_goal(setting: dict, origins: dict, ranks: dict) -> None:
    """sparse_ratio and sparse_threshold are one choice: the more specific statement's stands."""
    if "sparse_ratio" in ranks and "sparse_threshold" in ranks:
        loser = min(("sparse_ratio", "sparse_threshold"), key=lambda k: ranks[k])
        setting[loser] = None
        origins.pop(loser, None)


def _check_conflict(allowed, winner: Contribution, name: str, tensor: str, conflicts) -> None:
    """Equally specific statements giving one tensor different values: the later wins, say so."""
    for rival in allowed:
        if (
            rival is winner
            or rival.rule.selector.specificity != winner.rule.selector.specificity
            or rival.values[name].value == winner.values[name].value
        ):
            continue
        seen = (str(winner.values[name].span), str(rival.values[name].span), name)
        conflicts.setdefault(seen, conflict(name, tensor, winner.values[name], rival.values[name]))
