"""Model-aware findings about rules: matches nothing, conflicts, dead statements, align cycles."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

from dsl_compress.diagnostics import (
    Diagnostic,
    Fix,
    Severity,
    Span,
    did_you_mean,
    located,
    replacing,
    sole_match,
)
from dsl_compress.plan import PlanEntry
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.resolve.check import Rule, SettingValue
from dsl_compress.language.syntax import Segment, Selector
from dsl_compress.resolve.selectors import brace_expansions, compile_selector, is_type_name

TARGET_WORDS = ("weight", "bias", "_input_", "_output_")


def nothing_matched(index: ModelIndex, compiled, what: str) -> Diagnostic:
    """W301 at the selector, with the closest module names or types (or what the scope ruled
    out, or the target its modules lack) as the hint."""
    selector: Selector = compiled.source
    text = ".".join(s.text for s in selector.path.segments) or (selector.path.regex or "")
    fixes: tuple[Fix, ...] = ()
    if compiled.type_name is not None:
        # No fix: the type may be right for another model (a registered type this one lacks).
        hint = _type_hint(index, compiled)
    elif _braced_types(selector):
        hint = _braced_type_hint(index, selector)
    else:
        pool = [*index.modules, *sorted(set(index.type_names.values()))]
        head = text.split(".")[0]
        typo = _typo_target(index, compiled)
        hint = _target_typo(typo) if typo else did_you_mean(text, pool)
        hint = hint or did_you_mean(head, [p for p in pool if p != head])
        fixes = _target_fix(typo) if typo else ()
    return Diagnostic(
        "W301",
        Severity.WARNING,
        f"this {what} matches no module of the model",
        span=selector.span,
        hint=hint,
        fixes=fixes,
    )


def unmatched_refused(diagnostics: Iterable[Diagnostic], relax: str) -> list[Diagnostic]:
    """E221 for every W301 (a statement, exclude or except that matches nothing): apply refuses
    them all at once, at their selectors, so a typo costs no run; ``relax`` is how to allow them."""
    return [
        Diagnostic(
            "E221",
            Severity.ERROR,
            f"{diag.message} (W301 is an error for apply)",
            span=diag.span,
            subject=diag.subject,
            hint=_with(diag.hint, f"pass {relax} to apply without it"),
            fixes=diag.fixes,
        )
        for diag in diagnostics
        if diag.code == "W301"
    ]


def _with(hint: str | None, relax: str) -> str:
    return f"{hint} (or {relax})" if hint else relax


def _type_hint(index: ModelIndex, compiled) -> str | None:
    count = len(index.by_type.get(compiled.type_name, ()))
    if count and compiled.scope_pattern is not None:
        return f"the model has {count} {compiled.type_name} module(s), none inside the `in` scope"
    return did_you_mean(compiled.type_name, set(index.type_names.values()))


def _braced_types(selector: Selector) -> list[str]:
    """CamelCase words inside a {a,b} set of the selector: names there, though meant as types."""
    words = []
    for segment in selector.path.segments:
        if segment.braced or "{" in segment.text:
            expanded = [w for option in segment.options for w in brace_expansions(option)]
            words.extend(w for w in expanded if is_type_name(w))
    return list(dict.fromkeys(words))


def _braced_type_hint(index: ModelIndex, selector: Selector) -> str:
    """`{Conv2d,Linear}.weight`: say what it means today and how to select by type."""
    words = _braced_types(selector)
    segments = selector.path.segments
    first = next(i for i, s in enumerate(segments) if s.braced or "{" in s.text)
    rest = "".join("." + s.text for s in segments[first + 1 :])
    if any(s.text != "**" for s in segments[:first]):  # the name part becomes an `in` scope
        rest += " in " + ".".join(s.text for s in segments[:first]) + ".*"
    present = [w for w in words if w in index.by_type]
    counts = ", ".join(f"{len(index.by_type[w])} {w}" for w in present)
    has = f"; the model has {counts} module(s)" if present else ""
    each = " and ".join(f"'{w}{rest}'" for w in (present or words))
    return (
        f"inside braces {' and '.join(repr(w) for w in words)} are module names, not types "
        f"(a type is a lone CamelCase word){has}: write one statement per type, {each}"
    )


@dataclass(frozen=True)
class TargetTypo:
    """`conv*.wieght`: the module part matches ``modules`` and the ``last`` segment, read as
    their target, is none of their ``targets``."""

    last: Segment
    written: str
    modules: list[str]
    targets: list[str]


def _target_typo(typo: TargetTypo) -> str:
    """Name the target: the closest of those modules' targets, or all of them."""
    which = (
        f"'{typo.written}'"
        if typo.modules == [typo.written]
        else f"the {len(typo.modules)} module(s) '{typo.written}' matches"
    )
    close = did_you_mean(typo.last.text, typo.targets)
    offer = close or "they have " + ", ".join(f"'{t}'" for t in typo.targets)
    return f"'{typo.last.text}' is not a target of {which}; {offer}"


def _target_fix(typo: TargetTypo) -> tuple[Fix, ...]:
    close = sole_match(typo.last.text, typo.targets)
    return (replacing(typo.last.span, typo.last.text, close),) if close else ()


def _typo_target(index: ModelIndex, compiled) -> TargetTypo | None:
    """The selector's last segment when it stands for a target its modules lack."""
    selector: Selector = compiled.source
    path = selector.path
    if compiled.targets is not None or path.regex is not None or len(path.segments) < 2:
        return None
    last = path.segments[-1]
    if last.braced or set("*{") & set(last.text):
        return None
    module_part = replace(selector, path=replace(path, segments=path.segments[:-1]))
    modules_selector, _ = compile_selector(module_part, frozenset(), takes_target=False)
    modules = modules_selector.names(index) if modules_selector is not None else []
    if not modules:
        return None
    targets = {t for m in modules for t in index.modules[m]._parameters} | set(TARGET_WORDS)
    written = ".".join(s.text for s in path.segments[:-1])
    return TargetTypo(last, written, modules, sorted(targets))


def all_excluded(rule: Rule, count: int) -> Diagnostic:
    return Diagnostic(
        "W301",
        Severity.WARNING,
        f"every module this statement matches ({count}) is removed by exclude or except",
        span=rule.selector.source.span,
        hint="remove the statement, or narrow the exclude",
    )


def no_target(rule: Rule, count: int) -> Diagnostic:
    targets = ", ".join(rule.selector.targets or ()) or "the template's targets"
    return Diagnostic(
        "W301",
        Severity.WARNING,
        f"this statement matches {count} module(s), but none of them has {targets}",
        span=rule.selector.source.span,
        hint="check the target name, or narrow the pattern to modules that have it",
    )


def unregistered(mode, type_name: str, span: Span) -> Diagnostic:
    """R301 at the statement, with the language's way to register the type."""
    return located(
        "R301",
        f"module type '{type_name}' has no {mode.value} settings template",
        span,
        f"register it in the rules: register {mode.value} {type_name} {{ weight ... }}",
    )


def missing_partner(index: ModelIndex, rule: Rule, module: str, partner: str | None) -> Diagnostic:
    if partner is None:
        message = f"the partner pattern has more wildcards than '{module}' captured"
        return located("E209", message, rule.span)
    return located(
        "E209",
        f"align found no module '{partner}' to pair with '{module}'",
        rule.span,
        did_you_mean(partner, index.modules),
    )


@dataclass(frozen=True)
class Conflict:
    """Two equally specific statements giving different values for one key, and every tensor
    on which they do (filled in as resolution meets them)."""

    name: str
    winner: SettingValue
    rival: SettingValue
    tensors: list[str] = field(default_factory=list)


_NAMED_TENSORS = 3  # tensors a W302 names; the rest are counted


def conflict(found: Conflict) -> Diagnostic:
    """W302: equally specific statements give tensors different values; the later wins."""
    name, winner, rival, tensors = found.name, found.winner, found.rival, found.tensors
    if len(tensors) == 1:
        who = f"'{tensors[0]}' gets"
    else:
        named = ", ".join(f"'{t}'" for t in tensors[:_NAMED_TENSORS])
        more = f" and {len(tensors) - _NAMED_TENSORS} more" if len(tensors) > _NAMED_TENSORS else ""
        who = f"{len(tensors)} tensors ({named}{more}) get"
    return Diagnostic(
        "W302",
        Severity.WARNING,
        f"{who} {name}={winner.value!r} here and {name}={rival.value!r} at "
        f"{rival.span}, equally specific; the later statement wins",
        span=winner.span,
        hint="make one statement more specific, or remove one",
    )


def dead_rules(rules: Iterable[Rule], matched: set[int], won: set[int]) -> list[Diagnostic]:
    """W303: statements that match tensors but set no key that survives on any of them."""
    return [
        Diagnostic(
            "W303",
            Severity.WARNING,
            "every setting of this statement is overridden on every tensor it matches",
            span=rule.span,
            hint="remove it, or narrow the statements that override it",
        )
        for rule in rules
        if rule.index in matched and rule.index not in won and rule.values
    ]


def align_cycles(entries: Iterable[PlanEntry], spans: Mapping[tuple, Span]) -> list[Diagnostic]:
    """E208 for every cycle of align sources among pruning entries."""
    source = {}
    for entry in entries:
        align = entry.setting.get("align")
        if align is not None and isinstance(align, Mapping):
            source[entry.key] = (align.get("module_name") or entry.module, align.get("target_name"))
    diags, reported = [], set()
    for start in source:
        cycle = _cycle_from(start, source)
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            chain = " -> ".join(f"{m}.{t}" for m, t in [*cycle, cycle[0]])
            hint = "break the cycle: give one member a sparse_ratio instead of an align"
            message = f"align statements form a cycle: {chain}"
            diags.append(located("E208", message, spans[cycle[0]], hint))
    return diags


def _cycle_from(start, source) -> list | None:
    path, seen = [], set()
    node = start
    while node in source and node not in seen:
        seen.add(node)
        path.append(node)
        node = source[node]
    if node in seen and node == start:
        return path
    return None
