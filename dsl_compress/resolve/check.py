"""Checked statements: a rule set's statements with their selectors compiled and values evaluated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from dsl_compress.diagnostics import Span, did_you_mean, located, relocated
from dsl_compress.vocab import Mode
from dsl_compress.resolve.selectors import (
    CompiledSelector,
    compile_selector,
    is_type_word,
    split_target,
)
from dsl_compress.schema.registry import Registry
from dsl_compress.language.syntax import Align, Compress, Exclude, Path, Selector, Setting
from dsl_compress.resolve.setting_values import check_setting, evaluate
from dsl_compress.schema.key_sets import ALIGN_STATEMENT_KEYS, NUMERIC_KEYS, statement_keys


@dataclass(frozen=True)
class Value:
    """One evaluated setting value and the span that wrote it."""

    value: Any
    span: Span


@dataclass
class Rule:
    """A prune/quantize/distill/align statement ready to resolve against a model."""

    index: int
    mode: Mode
    selector: CompiledSelector
    values: dict[str, Value]
    excepts: list[CompiledSelector]
    span: Span
    partner: Path | None = None
    partner_targets: tuple[str, ...] | None = None
    # `m.p3` where p3 is no template's target: with a model, p3 is a parameter of m if no
    # module is named m.p3 (the "any parameter of the module").
    fallback: CompiledSelector | None = None

    @property
    def is_align(self) -> bool:
        return self.partner is not None


@dataclass
class ExcludeRule:
    selector: CompiledSelector
    mode: Mode | None
    span: Span


def target_words(registry: Registry, mode: Mode) -> frozenset[str]:
    """Every target name a template of the mode defines, so `M.p1` reads p1 as a target."""
    words: set[str] = set()
    table = registry[mode]
    for name in table.names():
        words.update(table.template(name))
    return frozenset(words)


def compile_rule(
    index: int,
    stmt: Compress | Align,
    lets: Mapping,
    registry: Registry,
    words: Mapping[Mode, frozenset[str]],
    diags: list,
) -> Rule | None:
    """A checked rule; ``words`` are the target names per kind (see target_words)."""
    mode = stmt.mode if isinstance(stmt, Compress) else Mode.PRUNE
    words = words[mode]
    selector = _selector(stmt.selector, words, True, stmt.span, diags)
    excepts = [_module_selector(s, "except", registry, mode, diags) for s in stmt.excepts]
    allowed = ALIGN_STATEMENT_KEYS if isinstance(stmt, Align) else statement_keys(mode)
    values = _values(mode, stmt.settings, lets, allowed, diags)
    _check_types(selector, registry, mode, stmt.selector, diags)
    if selector is None or any(e is None for e in excepts):
        return None
    rule = Rule(index, mode, selector, values, excepts, stmt.span)
    rule.fallback = _parameter_fallback(stmt.selector, selector)
    if isinstance(stmt, Align):
        _align_parts(rule, stmt, words, diags)
    return rule


def compile_exclude(stmt: Exclude, registry: Registry, diags: list) -> ExcludeRule | None:
    selector = _module_selector(stmt.selector, "exclude", registry, stmt.mode, diags)
    return None if selector is None else ExcludeRule(selector, stmt.mode, stmt.span)


def _module_selector(
    selector: Selector, what: str, registry, mode, diags
) -> CompiledSelector | None:
    """exclude/except selectors name modules: a trailing target is an error, types are checked."""
    segments = selector.path.segments
    _, target = split_target(selector.path, frozenset(), True)
    if target is not None and len(segments) > 1:
        module = ".".join(s.text for s in segments[:-1])
        message = f"{what} removes modules, not targets: '{segments[-1].text}' is a target"
        diags.append(located("E210", message, selector.span, f"write {what} {module}"))
        return None
    compiled = _selector(selector, frozenset(), False, selector.span, diags)
    for kind in [mode] if mode is not None else [Mode.PRUNE, Mode.QUANTIZE]:
        if compiled is not None and compiled.type_name in registry[kind]:
            return compiled
    _check_types(compiled, registry, mode or Mode.PRUNE, selector, diags)
    return compiled


def _parameter_fallback(selector: Selector, compiled: CompiledSelector | None):
    """The selector read with its last plain segment as a parameter target, if that can be."""
    path = selector.path
    if compiled is None or compiled.targets is not None or path.regex is not None:
        return None
    last = path.segments[-1] if len(path.segments) > 1 else None
    if last is None or last.braced or set("*{") & set(last.text):
        return None
    fallback, _ = compile_selector(selector, frozenset({last.text}), True)
    return fallback


def _selector(selector: Selector, words, takes_target, span, diags) -> CompiledSelector | None:
    compiled, found = compile_selector(selector, words, takes_target)
    diags.extend(relocated(d, selector.span or span) for d in found)
    return compiled


def _values(mode, settings: tuple[Setting, ...], lets, allowed, diags) -> dict[str, Value]:
    values: dict[str, Value] = {}
    for setting in settings:
        before = len(diags)
        value = evaluate(setting.value, lets, setting.key in NUMERIC_KEYS, diags)
        if len(diags) == before:  # an undefined name is reported once, not again as a bad value
            diags.extend(check_setting(mode, setting.key, value, setting, allowed))
        if setting.key in values:
            diags.append(located("E202", f"'{setting.key}' is set twice", setting.span))
        values[setting.key] = Value(value, setting.span)
    if "sparse_ratio" in values and "sparse_threshold" in values:
        diags.append(
            located(
                "E203",
                "sparse_ratio and sparse_threshold cannot both be set",
                values["sparse_threshold"].span,
                "keep one of them",
            )
        )
    return values


def _check_types(compiled, registry: Registry, mode: Mode, selector: Selector, diags) -> None:
    """A CamelCase selector must name a type the registry knows for this kind of statement."""
    if compiled is None or compiled.type_name is None or mode is Mode.DISTILL:
        return
    if compiled.type_name in registry[mode]:
        return
    name = compiled.type_name
    hint = did_you_mean(name, registry[mode].names())
    diags.append(
        located(
            "E201",
            f"unknown module type '{name}'",
            selector.path.segments[0].span,
            hint or f"register it first: register {mode.value} {name} {{ weight ... }}",
        )
    )


def _align_parts(rule: Rule, stmt: Align, words, diags) -> None:
    if "dims" not in rule.values:
        diags.append(located("E203", "align needs dims=[...]", stmt.span, "e.g. dims=[0]"))
    partner = stmt.partner
    compiled, found = compile_selector(partner, words, True)
    diags.extend(relocated(d, partner.span) for d in found)
    if rule.selector.targets is None or compiled is None or compiled.targets is None:
        diags.append(
            located(
                "E210",
                "align needs a target on both sides",
                stmt.span,
                "e.g. align bn*.weight with conv*.weight dims=[0]",
            )
        )
        return
    if (
        partner.scope is not None
        or partner.path.regex is not None
        or is_type_word(partner.path.segments[0])
    ):
        diags.append(
            located(
                "E210", "the align partner must be a module name or a name pattern", partner.span
            )
        )
        return
    rule.partner, rule.partner_targets = split_target(partner.path, words, True)
