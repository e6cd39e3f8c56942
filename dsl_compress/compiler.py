"""Resolving checked rules against a model: per-tensor, per-key precedence, into a Plan."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity, Span, did_you_mean
from dsl_compress.modes import Mode
from dsl_compress.plan import Plan, PlanEntry
from dsl_compress.resolve import check_entry
from dsl_compress.selection import ModelIndex
from dsl_compress.selectors import Match, render_partner
from dsl_compress.settings import Registry
from dsl_compress.statements import ExcludeRule, Rule, Value
from dsl_compress.values import at, located

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
) -> Plan:
    """The plan for ``model``: every matched tensor with each key set by its winning statement."""
    index = ModelIndex.of(model)
    diags: list[Diagnostic] = []
    excluded = _excluded(index, excludes, diags)
    contributions: dict[Key, list[Contribution]] = defaultdict(list)
    for rule in rules:
        matches = _matches(index, rule, excluded)
        if not matches:
            diags.append(_matches_nothing(index, rule))
        for match in matches:
            _contribute(index, rule, match, registry, contributions, diags)
    conflicts: dict = {}
    entries = [
        _entry(index, key, found, registry, conflicts) for key, found in contributions.items()
    ]
    diags.extend(conflicts.values())
    checked = []
    for entry, span in entries:
        before = len(diags)
        resolved = check_entry(index, entry, entry.metric, diags)
        diags[before:] = [at(d, span, d.code) for d in diags[before:]]
        if resolved is not None:
            checked.append(resolved)
    errors = [d for d in diags if d.severity is Severity.ERROR]
    if errors:
        raise CompressionError(errors)
    return Plan(tuple(checked), tuple(diags))


def _excluded(index: ModelIndex, excludes: Sequence[ExcludeRule], diags: list) -> dict:
    """Module names removed from every kind (key None) or from one kind."""
    out: dict[Mode | None, set[str]] = defaultdict(set)
    for rule in excludes:
        names = {m.module for m in rule.selector.matches(index)}
        if not names:
            diags.append(_nothing(index, rule.selector.source, rule.span, "exclude"))
        out[rule.mode] |= names
    return out


def _matches(index: ModelIndex, rule: Rule, excluded: dict) -> list[Match]:
    removed = excluded.get(None, set()) | excluded.get(rule.mode, set())
    for selector in rule.excepts:
        removed = removed | {m.module for m in selector.matches(index)}
    return [m for m in rule.selector.matches(index) if m.module not in removed]


def _matches_nothing(index: ModelIndex, rule: Rule) -> Diagnostic:
    return _nothing(index, rule.selector.source, rule.span, "statement")


def _nothing(index: ModelIndex, selector, span, what: str) -> Diagnostic:
    text = ".".join(s.text for s in selector.path.segments) or (selector.path.regex or "")
    pool = list(index.modules) + sorted(set(index.type_names.values()))
    hint = did_you_mean(text, pool) or did_you_mean(text.split(".")[0], pool)
    return Diagnostic(
        "W301",
        Severity.WARNING,
        f"this {what} matches no module of the model",
        span=span,
        hint=hint,
    )


def _contribute(index, rule: Rule, match: Match, registry, contributions, diags) -> None:
    values = dict(rule.values)
    if rule.is_align:
        partner = render_partner(rule.partner, match.captures)
        if partner is None or partner not in index.modules:
            diags.append(_missing_partner(index, rule, match, partner))
            return
        dims = values.pop("dims", Value([0], rule.span)).value
        align = {"module_name": partner, "target_name": rule.partner_targets[0], "dims": dims}
        values["align"] = Value(align, rule.span)
    targets = rule.selector.targets
    explicit = targets is not None
    if not explicit:
        targets = _template_targets(index, rule, match.module, registry, diags)
    for target in targets:
        contributions[(rule.mode, match.module, target)].append(
            Contribution(rule, values, explicit)
        )


def _missing_partner(index: ModelIndex, rule: Rule, match: Match, partner: str | None):
    if partner is None:
        message = f"the partner pattern has more wildcards than '{match.module}' captured"
        return located("E209", message, rule.span)
    return located(
        "E209",
        f"align found no module '{partner}' to pair with '{match.module}'",
        rule.span,
        did_you_mean(partner, index.modules),
    )


def _template_targets(index, rule: Rule, module: str, registry, diags) -> list[str]:
    try:
        template = registry[rule.mode].template(index.modules[module])
    except CompressionError as exc:
        diags.extend(located(d.code, d.message, rule.span, d.hint) for d in exc.diagnostics)
        return []
    return [t + "0" if t in ("_input_", "_output_") else t for t in template]


def _entry(
    index, key: Key, found: list[Contribution], registry, conflicts
) -> tuple[PlanEntry, Span]:
    mode, module, target = key
    try:
        base = registry[mode].get(index.modules[module], {"target_names": [target]})[target]
    except CompressionError:
        base = {}
    setting, origins = dict(base), {k: f"template {index.type_names[module]}" for k in base}
    extra: dict[str, Any] = {}
    for name in sorted({k for c in found for k in c.values}):
        allowed = [
            c for c in found if name in c.values and (c.explicit or name in base or _extra(name))
        ]
        if not allowed:
            continue
        winner = max(allowed, key=lambda c: c.rank)
        _check_conflict(allowed, winner, name, module, target, conflicts)
        value = winner.values[name]
        (extra if _extra(name) else setting)[_nni_key(name)] = value.value
        origins[_nni_key(name)] = str(value.span)
    top = max(found, key=lambda c: c.rank)
    metric = extra.get("metric", DEFAULT_METRIC) if mode is Mode.PRUNE else None
    entry = PlanEntry(
        module, target, mode, index.type_names[module], setting, str(top.rule.span), origins, metric
    )
    return entry, top.rule.span


def _extra(name: str) -> bool:
    return name == "metric"


def _nni_key(name: str) -> str:
    return "global_group_id" if name == "group" else name


def _check_conflict(allowed, winner: Contribution, name, module, target, conflicts: dict) -> None:
    """Equally specific statements giving one tensor different values: the later wins, say so."""
    rivals = [
        c
        for c in allowed
        if c is not winner
        and c.rule.selector.specificity == winner.rule.selector.specificity
        and c.values[name].value != winner.values[name].value
    ]
    for rival in rivals:
        seen = (str(winner.values[name].span), str(rival.values[name].span), name)
        conflicts.setdefault(
            seen,
            Diagnostic(
                "W302",
                Severity.WARNING,
                f"'{module}.{target}' gets {name}={winner.values[name].value!r} here and "
                f"{name}={rival.values[name].value!r} at {rival.values[name].span}, equally "
                "specific; the later statement wins",
                span=winner.values[name].span,
                hint="make one statement more specific, or remove one",
            ),
        )
