"""Resolving checked rules against a model: per-tensor, per-key precedence, into a Plan."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Mapping, Sequence

from dsl_compress.resolve.contributions import (
    Contribution,
    ContributionTable,
    SettingKey,
    TensorContributions,
    in_statement_order,
)
from dsl_compress.diagnostics import (
    CompressionError,
    Diagnostic,
    Severity,
    Span,
    at_statement,
    span_of_origin,
)
from dsl_compress.vocab import INPUT_PREFIX, OUTPUT_PREFIX, Mode
from dsl_compress.plan import Plan, PlanEntry
from dsl_compress.resolve.entries import EntryChecks
from dsl_compress.resolve.targets import PER_MODULE, TargetPresence
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.resolve.settle import settle
from dsl_compress.resolve.selectors import Match, expand_targets, render_partner
from dsl_compress.schema.registry import Registry
from dsl_compress.stand_in import StandInModule
from dsl_compress.resolve.check import CheckedRules, ExcludeRule, Rule, SettingValue
from dsl_compress.resolve.findings import (
    align_cycles,
    all_excluded,
    conflict,
    dead_rules,
    missing_partner,
    no_target,
    unregistered,
    nothing_matched,
)

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Resolution:
    """The plan from rules, and each tensor's (kind, module, target) shared (type-wide) and own
    contributions, in the order the statements first reached them."""

    plan: Plan
    tensors: list[TensorContributions] = field(repr=False)

    def contributions(self) -> Mapping[SettingKey, list[Contribution]]:
        """Every tensor's contributions in statement order (what explain reads)."""
        return {key: in_statement_order(shared, own) for key, shared, own in self.tensors}


def resolve_rules(
    model: torch.nn.Module | StandInModule, checked: CheckedRules, index: ModelIndex | None = None
) -> Resolution:
    """The plan for ``model`` (a torch module, or a manifest's stand-in: resolution loads no
    torch): every matched tensor with each key set by its winning statement; raises
    CompressionError carrying every error. ``index``: the model's index, when the caller has
    built it already."""
    rules = checked.rules
    index = index or ModelIndex.of(model)
    diags: list[Diagnostic] = []
    excluded = _excluded(index, checked.excludes, diags)
    removed = {mode: excluded.get(None, set()) | excluded.get(mode, set()) for mode in Mode}
    resolver = _Resolver(index, checked.registries, removed)
    for rule in rules:
        if _type_wide(rule):
            resolver.add_type_wide(rule, diags)
            continue
        rule, matches = _matches(index, rule, removed[rule.mode], diags)
        made = resolver.contribute_all(rule, matches, diags)
        if matches and not made and rule.selector.exact_name is None:
            diags.append(no_target(rule, len(matches)))
    found_per_key = resolver.table.items()
    state = _Outcome()
    check_diags: list[Diagnostic] = []
    entries, spans = [], {}
    for key, shared, own in found_per_key:
        entry, spans[key[1:]] = resolver.entry(key, shared, own, state, check_diags)
        if entry is not None:
            entries.append(entry)
    diags.extend(conflict(found) for found in state.conflicts.values())
    diags.extend(state.unregistered.values())
    diags.extend(dead_rules(rules, state.matched, state.won))
    diags.extend(check_diags)
    diags.extend(align_cycles(entries, spans))
    errors = [d for d in diags if d.severity is Severity.ERROR]
    if errors:
        raise CompressionError(errors)
    statements = {str(v.span): str(rule.span) for rule in rules for v in rule.values.values()}
    return Resolution(Plan(tuple(entries), tuple(diags), statements), found_per_key)


def _type_wide(rule: Rule) -> bool:
    """A statement that reaches every module of its type, whatever the module's name."""
    return (
        rule.selector.type_wide and not rule.excepts and not rule.is_align and rule.fallback is None
    )


@dataclass
class _Outcome:
    """What resolution learns on the way: conflicts found, statements that matched or won some
    key, and the settled settings per distinct list of contributions."""

    conflicts: dict = field(default_factory=dict)
    won: set[int] = field(default_factory=set)
    matched: set[int] = field(default_factory=set)
    unregistered: dict = field(default_factory=dict)
    settled: dict = field(default_factory=dict)

    def note_conflicts(self, conflicts, module: str, target: str) -> None:
        """Count the tensor among those each of its conflicts (W302) reaches."""
        for seen in conflicts:
            self.conflicts[seen].tensors.append(f"{module}.{target}")


class _Resolver:
    """Matches statements to tensors and settles each tensor's keys (once per distinct list)."""

    def __init__(self, index: ModelIndex, registry: Registry, removed: dict) -> None:
        self.index, self.registry, self.removed = index, registry, removed
        self.presence = TargetPresence(index, registry)
        self.checks = EntryChecks(index)
        self.table = ContributionTable(self.presence.has_parameter, self.presence.everywhere)
        self._typed: dict[str, list[str]] = {}
        self._kept: dict[tuple[Mode, str], list[str]] = {}
        self._templates: dict[tuple[Mode, str], tuple[str, ...] | None] = {}
        self._bases: dict[tuple[Mode, str, str], dict] = {}

    def add_type_wide(self, rule: Rule, diags: list) -> None:
        """`prune Conv2d.weight ...`: one entry in the type's group, not one per module."""
        type_name, mode = rule.selector.type_name, rule.mode
        found = self._of_type(type_name)
        kept = self._kept_of_type(mode, type_name)
        if not found:
            diags.append(nothing_matched(self.index, rule.selector, "statement"))
            return
        if not kept:
            diags.append(all_excluded(rule, len(found)))
            return
        explicit = rule.selector.targets is not None
        targets = rule.selector.targets if explicit else self._template_of(mode, type_name) or ()
        if explicit:
            targets = [
                t for t in targets if any(self.presence.has_target(m, t, mode) for m in kept)
            ]
        if not targets:
            diags.append(no_target(rule, len(kept)))
            return
        c = self.table.contribution(rule, dict(rule.values), explicit)
        self.table.add_type_wide((mode, type_name), kept, c, targets, explicit)

    def contribute_all(self, rule: Rule, matches: list, diags: list) -> int:
        """Contribute the rule to every match (Matches for an align, else module names);
        returns how many tensors it reached."""
        if rule.is_align or rule.selector.exact_name is not None:
            found = matches if rule.is_align else [Match(name, ()) for name in matches]
            return sum(self.contribute(rule, m, diags) for m in found)
        targets, mode = rule.selector.targets, rule.mode
        c = self.table.contribution(rule, rule.values, targets is not None)
        type_names, keys = self.index.type_names, []
        per_type: dict[str, list[tuple[str, bool]]] = {}
        for name in matches:
            type_name = type_names[name]
            chosen = per_type.get(type_name)
            if chosen is None:
                chosen = per_type[type_name] = self._targets_of_type(type_name, targets, mode)
            for target, ask_module in chosen:
                if (name == "" or ask_module) and not self.presence.has_target(name, target, mode):
                    continue
                keys.append((mode, name, target))
        self.table.add_all(c, keys)
        return len(keys)

    def _targets_of_type(self, type_name: str, targets, mode: Mode) -> list[tuple[str, bool]]:
        """The targets a pattern reaches on modules of a type, each with whether a module
        must be asked (its parameter may be missing); the template's when none is named."""
        if targets is None:
            return [(t, False) for t in self._template_of(mode, type_name) or ()]
        out = []
        for target in targets:
            known = self.presence.of_type(type_name, target, mode)
            if known is not False:
                out.append((target, known is PER_MODULE))
        return out

    def contribute(self, rule: Rule, match: Match, diags: list) -> int:
        """Add the rule's values for each target of the module; returns how many it added.

        A pattern or type skips modules that lack the target (or a template); only an exact
        module name makes that an error, as a name pattern like `**.weight` also meets
        containers.
        """
        index, values, tag = self.index, rule.values, ()
        if rule.is_align:
            values = dict(values)
            partner = render_partner(rule.partner.path, match.captures)
            if partner is None or partner not in index.modules:
                diags.append(missing_partner(index, rule, match.module, partner))
                return 0
            dims = values.pop("dims", SettingValue([0], rule.span)).value
            align = {"module_name": partner, "target_name": rule.partner.targets[0], "dims": dims}
            values["align"] = SettingValue(align, rule.span)
            tag = (partner,)
        targets = rule.selector.targets
        explicit = targets is not None
        strict = rule.selector.exact_name is not None
        if not explicit:
            type_name = index.type_names[match.module]
            targets = self._template_of(rule.mode, type_name)
            if targets is None and strict:
                diags.append(unregistered(rule.mode, type_name, rule.span))
            targets = targets or ()
        elif not strict:
            targets = [t for t in targets if self.presence.has_target(match.module, t, rule.mode)]
        c = self.table.contribution(rule, values, explicit, *tag)
        self.table.add_all(c, [(rule.mode, match.module, target) for target in targets])
        return len(targets)

    def entry(self, key: SettingKey, shared: tuple, own: list, state: _Outcome, diags: list):
        """The tensor's checked plan entry (None when a check drops it) and the span of its
        most specific statement. Settled and checked once per distinct list of contributions;
        other tensors with that list only check their own module."""
        mode, module, target = key
        type_name = self.index.type_names[module]
        signature = (mode, type_name, target, id(shared), *map(id, own))
        settled = state.settled.get(signature)
        if settled is None:
            found = in_statement_order(shared, own)
            base = self._base(mode, module, target)
            setting, origins, metric, top, conflicts = settle(
                key, type_name, found, base, self.registry, state
            )
            entry = PlanEntry(
                module, target, mode, type_name, setting, str(top.span), origins, metric
            )
            before = len(diags)
            checked = self._checked(entry, top.span, diags)
            clean = checked is not None and len(diags) == before
            state.settled[signature] = (entry, top.span, checked if clean else None, conflicts)
            return checked, top.span
        first, span, template, conflicts = settled
        state.note_conflicts(conflicts, module, target)
        plain = template is not None and self.presence.plain(module, target)
        base = template if plain else first
        entry = PlanEntry(
            module, target, mode, type_name, dict(base.setting), base.origin,
            dict(base.key_origins), base.metric,
        )  # fmt: skip
        return (entry if plain else self._checked(entry, span, diags)), span

    def _of_type(self, type_name: str) -> list[str]:
        """The type's modules, once each (canonical names), in model order."""
        if type_name not in self._typed:
            self._typed[type_name] = self.index.first_names(self.index.by_type.get(type_name, []))
        return self._typed[type_name]

    def _kept_of_type(self, mode: Mode, type_name: str) -> list[str]:
        if (mode, type_name) not in self._kept:
            removed = self.removed[mode]
            kept = [n for n in self._of_type(type_name) if n not in removed]
            self._kept[(mode, type_name)] = kept
        return self._kept[(mode, type_name)]

    def _template_of(self, mode: Mode, type_name: str) -> tuple[str, ...] | None:
        """The template's targets for the type (None: it has no template of this kind)."""
        key = (mode, type_name)
        if key not in self._templates:
            table = self.registry[mode]
            template = table.template(type_name) if type_name in table else None
            self._templates[key] = None if template is None else expand_targets(tuple(template))
        return self._templates[key]

    def _base(self, mode: Mode, module: str, target: str) -> dict:
        """The template's setting for the target (per type, so computed once per type); empty
        when the type has no template of this kind, or its template not this target."""
        type_name = self.index.type_names[module]
        key = (mode, type_name, target)
        if key not in self._bases:
            table = self.registry[mode]
            template = table.template(type_name) if type_name in table else {}
            self._bases[key] = _target_setting(template, target)
        return self._bases[key]

    def _checked(self, entry: PlanEntry, span: Span, diags: list) -> PlanEntry | None:
        """Target checks of one entry, reported at the setting that caused them."""
        before = len(diags)
        resolved = self.checks.check(entry, entry.metric, diags)
        granularity = entry.key_origins.get("granularity", "")
        for i in range(before, len(diags)):
            d = diags[i]
            where = (span_of_origin(granularity) or span) if d.code.startswith("P50") else span
            diags[i] = at_statement(d, where, f"{entry.module}.{entry.target}: {d.message}")
        return resolved


def _target_setting(template: Mapping[str, dict], target: str) -> dict:
    """A template's setting for a target: its own, else its kind's bare prefix's (NNI's
    `_input_` setting serves every input); empty when the template has neither."""
    prefixes = [p for p in (INPUT_PREFIX, OUTPUT_PREFIX) if target.startswith(p)]
    for name in (target, *prefixes):
        if name in template:
            return template[name]
    return {}


def _excluded(index: ModelIndex, excludes: Sequence[ExcludeRule], diags: list) -> dict:
    """Module names removed from every kind (key None) or from one kind."""
    out: dict[Mode | None, set[str]] = defaultdict(set)
    for rule in excludes:
        names = set(rule.selector.names(index))
        if not names:
            diags.append(nothing_matched(index, rule.selector, "exclude"))
        out[rule.mode] |= names
    return out


def _matches(index: ModelIndex, rule: Rule, removed: set, diags: list) -> tuple[Rule, list]:
    """The rule as it applies (read with a parameter target if that is what matches) and its
    matches after exclude and except (``removed``: what exclude removes from the rule's kind):
    Matches with captures for an align, module names otherwise."""
    for selector in rule.excepts:
        names = set(selector.names(index))
        if not names:
            diags.append(nothing_matched(index, selector, "except"))
        removed = removed | names
    found = rule.selector.matches(index) if rule.is_align else rule.selector.names(index)
    if not found and rule.fallback is not None:
        found = _parameter_matches(index, rule)
        found = found if rule.is_align else [m.module for m in found]
        rule = replace(rule, selector=rule.fallback, fallback=None) if found else rule
    if rule.is_align:
        kept = [m for m in found if m.module not in removed]
    else:
        kept = [name for name in found if name not in removed]
    if not found:
        diags.append(nothing_matched(index, rule.selector, "statement"))
    elif not kept:
        diags.append(all_excluded(rule, len(found)))
    return rule, kept


def _parameter_matches(index: ModelIndex, rule: Rule) -> list[Match]:
    """Modules that have the fallback's parameter (the rule then targets that parameter)."""
    (target,) = rule.fallback.targets
    modules = index.modules
    return [m for m in rule.fallback.matches(index) if target in modules[m.module]._parameters]
