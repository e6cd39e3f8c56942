"""The model-free check stage: lets evaluated, registrations built, and each statement checked
into a Rule or ExcludeRule (selectors compiled, values evaluated) ready to resolve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from dsl_compress.diagnostics import (
    Diagnostic,
    Fix,
    Severity,
    Span,
    did_you_mean,
    located,
    raise_errors,
    relocated,
    replacing,
    sole_match,
    source_order,
)
from dsl_compress.vocab import Mode
from dsl_compress.resolve.registration import build_template
from dsl_compress.resolve.selectors import (
    CompiledSelector,
    SelectorCache,
    is_type_word,
    split_target,
)
from dsl_compress.schema.registry import DEFAULT_REGISTRY, Registry
from dsl_compress.language.syntax import (
    Align,
    Compress,
    Exclude,
    Let,
    Literal,
    Path,
    Register,
    Selector,
    Setting,
    Statement,
)
from dsl_compress.schema.presets import PRESETS, expand_scheme
from dsl_compress.resolve.setting_values import (
    WORDS,
    check_setting,
    evaluate,
    structure_conflicts_in,
)
from dsl_compress.schema.key_sets import ALIGN_STATEMENT_KEYS, NUMERIC_KEYS, statement_keys

# The most diagnostics one statement shows; E220 counts the rest (see cap_statement).
MAX_PER_STATEMENT = 20


@dataclass(frozen=True)
class SettingValue:
    """One evaluated setting value and the span that wrote it."""

    value: Any
    span: Span
    # The preset it came from, as `explain` shows it ("scheme=W4A16 → quant_dtype=int4 ..."):
    # None for a value written as it is.
    expansion: str | None = None


@dataclass(frozen=True)
class AlignPartner:
    """The other side of an align: a module path (wildcards filled from the matched module's
    captures) and its targets."""

    path: Path
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """A prune/quantize/distill/align statement ready to resolve against a model."""

    index: int
    mode: Mode
    selector: CompiledSelector
    values: dict[str, SettingValue]
    excepts: list[CompiledSelector]
    span: Span
    partner: AlignPartner | None = None
    # `m.p3` where p3 is no template's target: with a model, p3 is a parameter of m if no
    # module is named m.p3 (the "any parameter of the module").
    fallback: CompiledSelector | None = None

    @property
    def is_align(self) -> bool:
        return self.partner is not None


@dataclass(frozen=True)
class ExcludeRule:
    selector: CompiledSelector
    mode: Mode | None
    span: Span


@dataclass(frozen=True)
class KnownTypes:
    """The module types a selector may name: the registry's per kind and, when a model is
    given, the model's own (``model_types``; None without a model)."""

    registry: Registry
    model_types: frozenset[str] | None = None

    def known(self, name: str, mode: Mode) -> bool:
        return name in self.registry[mode]

    def problem(self, name: str, mode: Mode, span: Span) -> Diagnostic | None:
        """None for a registered type; R301 for a type of the model without a template of
        this kind (register it); E201 for a type neither registered nor in the model."""
        if self.known(name, mode):
            return None
        register = f"register {mode.value} {name} {{ weight ... }}"
        if self.model_types is not None and name in self.model_types:
            message = (
                f"module type '{name}' is in the model but has no {mode.value} settings template"
            )
            hint = f"register it in the rules, naming its targets and their settings: {register}"
            return located("R301", message, span, hint)
        pool = sorted({*self.registry[mode].names(), *(self.model_types or ())})
        close = did_you_mean(name, pool)
        if self.model_types is None:
            # Without a model only registered types are known: say how the model's own come in.
            how = "types of your own model are known only with --model (compile(model) in Python)"
            how = how if close else f"{how}; or register it first: {register}"
        else:
            how = f"the model has no '{name}' module and no template is registered for it"
        hint = f"{close} {how[0].upper()}{how[1:]}" if close else how[0].upper() + how[1:]
        return located(
            "E201", f"unknown module type '{name}'", span, hint, self._fix(name, pool, span)
        )

    def _fix(self, name: str, pool: list[str], span: Span) -> tuple[Fix, ...]:
        """The one close type; without a model only a slip of case: a name near a registered
        type may be a type of the user's own model, which only the model can tell."""
        close = sole_match(name, pool)
        if close is None or (self.model_types is None and close.lower() != name.lower()):
            return ()
        return (replacing(span, name, close),)


@dataclass(frozen=True)
class CheckedRules:
    """Rules ready to resolve against a model, with the registry they resolve against."""

    rules: list[Rule]
    excludes: list[ExcludeRule]
    registries: Registry
    registered: dict[str, dict[str, dict]]
    diagnostics: tuple[Diagnostic, ...]


def check_rules(
    statements: Sequence[Statement],
    registry: Registry | None,
    model_types: frozenset[str] | None = None,
) -> CheckedRules:
    """Lets, registrations, selectors and values checked; raises CompressionError carrying
    every error. ``model_types``, the type names of the model when one is given, turn a type
    word of the model without a template from "unknown" (E201) into "unregistered" (R301)."""
    context = rule_context(statements, registry, model_types)
    rules, excludes, found = check_statements(statements, context)
    diags = [*context.diagnostics, *found]
    raise_errors(sorted(diags, key=source_order))
    return CheckedRules(rules, excludes, context.registries, context.registered, tuple(diags))


@dataclass(frozen=True)
class RuleContext:
    """What each statement is checked against: the file's lets and templates, the module
    types known, the target words per kind; and what checking the lets and templates found."""

    lets: dict[str, Any]
    registries: Registry
    registered: dict[str, dict[str, dict]]
    types: KnownTypes
    words: dict[Mode, frozenset[str]]
    diagnostics: tuple[Diagnostic, ...]


def rule_context(
    statements: Sequence[Statement],
    registry: Registry | None,
    model_types: frozenset[str] | None = None,
) -> RuleContext:
    """The context of a file's statements, from its lets and register blocks (the others in
    ``statements`` are passed over: a caller may give only those)."""
    diags: list[Diagnostic] = []
    lets = _lets(statements, diags)
    registries, registered = _registrations(statements, lets, registry, diags)
    types = KnownTypes(registries, model_types)
    words = {mode: target_words(registries, mode) for mode in Mode}
    return RuleContext(lets, registries, registered, types, words, tuple(diags))


def check_statements(
    statements: Sequence[Statement], context: RuleContext, first_index: int = 0
) -> tuple[list[Rule], list[ExcludeRule], list[Diagnostic]]:
    """Each prune/quantize/distill/align statement checked into a Rule and each exclude into
    an ExcludeRule (those that check), with what the checks found; ``first_index`` is the
    file index of the first statement (a rule's index orders equally specific rules)."""
    diags: list[Diagnostic] = []
    rules, excludes = [], []
    lets, types, words = context.lets, context.types, context.words
    selectors = SelectorCache()
    for i, stmt in enumerate(statements, first_index):
        before = len(diags)
        if isinstance(stmt, (Compress, Align)):
            rule = compile_rule(i, stmt, lets, types, words, selectors, diags)
            if rule is not None:
                rules.append(rule)
        elif isinstance(stmt, Exclude):
            exclude = compile_exclude(stmt, types, selectors, diags)
            if exclude is not None:
                excludes.append(exclude)
        cap_statement(diags, before, stmt.span)
    return rules, excludes, diags


def cap_statement(diags: list[Diagnostic], before: int, span: Span) -> None:
    """Keep the first MAX_PER_STATEMENT diagnostics a statement added after ``before``, then
    one E220 counting the rest: one line of 20,000 unknown keys printed 291 MB."""
    extra = diags[before + MAX_PER_STATEMENT :]
    if not extra:
        return
    del diags[before + MAX_PER_STATEMENT :]
    worst = min(extra, key=lambda d: list(Severity).index(d.severity)).severity
    message = f"{len(extra)} more problems in this statement are not shown"
    hint = f"fix the first {MAX_PER_STATEMENT} shown; the rest are often the same mistake"
    diags.append(Diagnostic("E220", worst, message, span=span, hint=hint))


def _lets(statements: Sequence[Statement], diags: list) -> dict[str, Any]:
    """let values in order; a let may use earlier lets, never later ones or built-in words."""
    later = {s.name: s for s in statements if isinstance(s, Let)}
    lets: dict[str, Any] = {}
    for stmt in statements:
        if not isinstance(stmt, Let):
            continue
        if stmt.name in lets:
            diags.append(located("E211", f"'{stmt.name}' is already defined", stmt.span))
        elif stmt.name in WORDS:
            diags.append(located("E211", f"'{stmt.name}' is a built-in word", stmt.span))
        value = stmt.value
        if isinstance(value, Literal) and value.is_word and value.value not in lets:
            if value.value in later and later[value.value] is not stmt:
                where = later[value.value].span
                message = f"'{value.value}' is defined later, at line {where.line}"
                diags.append(located("E204", message, value.span, "move that let first"))
        lets[stmt.name] = evaluate(value, lets, False, diags)
    return lets


def _registrations(statements, lets, registry: Registry | None, diags: list):
    """A scoped copy of the registry with this rule set's templates, and those templates."""
    registries = (registry or DEFAULT_REGISTRY).scoped()
    registered: dict[str, dict[str, dict]] = {m.value: {} for m in Mode}
    seen: dict[tuple, Register] = {}
    for stmt in statements:
        if isinstance(stmt, Register):
            first = seen.setdefault((stmt.mode, stmt.type_name), stmt)
            if first is not stmt:
                message = (
                    f"{stmt.type_name} is already registered for {stmt.mode.value} at {first.span}"
                )
                diags.append(located("E212", message, stmt.span, "merge the two blocks"))
                continue
            template = build_template(stmt, lets, diags)
            if template:
                registries[stmt.mode].register(stmt.type_name, template)
                registered[stmt.mode.value][stmt.type_name] = template
    return registries, registered


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
    types: KnownTypes,
    words: Mapping[Mode, frozenset[str]],
    selectors: SelectorCache,
    diags: list,
) -> Rule | None:
    """A checked rule; ``words`` are the target names per kind (see target_words)."""
    mode = stmt.mode if isinstance(stmt, Compress) else Mode.PRUNE
    words = words[mode]
    selector = _selector(stmt.selector, words, True, stmt.span, selectors, diags)
    excepts = [_module_selector(s, "except", types, mode, selectors, diags) for s in stmt.excepts]
    allowed = ALIGN_STATEMENT_KEYS if isinstance(stmt, Align) else statement_keys(mode)
    values = _values(mode, stmt.settings, lets, allowed, diags)
    _check_types(selector, types, mode, stmt.selector, diags)
    if selector is None or any(e is None for e in excepts):
        return None
    fallback = _parameter_fallback(stmt.selector, selector, selectors)
    partner = _align_partner(stmt, selector, values, words, selectors, diags)
    return Rule(index, mode, selector, values, excepts, stmt.span, partner, fallback)


def compile_exclude(
    stmt: Exclude, types: KnownTypes, selectors: SelectorCache, diags: list
) -> ExcludeRule | None:
    selector = _module_selector(stmt.selector, "exclude", types, stmt.mode, selectors, diags)
    return None if selector is None else ExcludeRule(selector, stmt.mode, stmt.span)


def _module_selector(
    selector: Selector, what: str, types: KnownTypes, mode, selectors: SelectorCache, diags
) -> CompiledSelector | None:
    """exclude/except selectors name modules: a trailing target is an error, types are checked
    (removing the modules of a type of the model needs no template)."""
    segments = selector.path.segments
    _, target = split_target(selector.path, frozenset(), True)
    if target is not None and len(segments) > 1:
        module = ".".join(s.text for s in segments[:-1])
        message = f"{what} removes modules, not targets: '{segments[-1].text}' is a target"
        diags.append(located("E210", message, selector.span, f"write {what} {module}"))
        return None
    compiled = _selector(selector, frozenset(), False, selector.span, selectors, diags)
    if compiled is None or compiled.type_name in (types.model_types or ()):
        return compiled
    for kind in [mode] if mode is not None else [Mode.PRUNE, Mode.QUANTIZE]:
        if types.known(compiled.type_name, kind):
            return compiled
    _check_types(compiled, types, mode or Mode.PRUNE, selector, diags)
    return compiled


def _parameter_fallback(
    selector: Selector, compiled: CompiledSelector | None, selectors: SelectorCache
):
    """The selector read with its last plain segment as a parameter target, if that can be."""
    path = selector.path
    if compiled is None or compiled.targets is not None or path.regex is not None:
        return None
    last = path.segments[-1] if len(path.segments) > 1 else None
    if last is None or last.braced or set("*{") & set(last.text):
        return None
    fallback, _ = selectors.compile(selector, frozenset({last.text}), True)
    return fallback


def _selector(
    selector: Selector, words, takes_target, span, selectors: SelectorCache, diags
) -> CompiledSelector | None:
    compiled, found = selectors.compile(selector, words, takes_target)
    diags.extend(relocated(d, selector.span or span) for d in found)
    return compiled


def _values(mode, settings: tuple[Setting, ...], lets, allowed, diags) -> dict[str, SettingValue]:
    values: dict[str, SettingValue] = {}
    written = {setting.key for setting in settings}
    for setting in settings:
        before = len(diags)
        value = evaluate(setting.value, lets, setting.key in NUMERIC_KEYS, diags)
        if len(diags) == before:  # an undefined name is reported once, not again as a bad value
            found = check_setting(mode, setting.key, value, setting, allowed, lets, written)
            diags.extend(found)
        if setting.key in values:
            diags.append(located("E202", f"'{setting.key}' is set twice", setting.span))
        values[setting.key] = SettingValue(value, setting.span)
    if "sparse_ratio" in values and "sparse_threshold" in values:
        diags.append(
            located(
                "E203",
                "sparse_ratio and sparse_threshold cannot both be set",
                values["sparse_threshold"].span,
                "keep one of them",
            )
        )
    diags.extend(structure_conflicts_in(values))
    return expand_preset(values)


def expand_preset(values: dict[str, SettingValue]) -> dict[str, SettingValue]:
    """``scheme=NAME`` replaced by the keys its preset stands for, each at the scheme's span;
    a key written beside it keeps its own value (schema/presets.py)."""
    scheme = values.pop("scheme", None)
    if scheme is None:
        return values
    expansion = PRESETS[scheme.value].expansion() if scheme.value in PRESETS else None
    for key, value in expand_scheme(scheme.value, values).items():
        values[key] = SettingValue(value, scheme.span, expansion)
    return values


def _check_types(compiled, types: KnownTypes, mode: Mode, selector: Selector, diags) -> None:
    """A CamelCase selector must name a type the registry knows for this kind of statement."""
    if compiled is None or compiled.type_name is None or mode is Mode.DISTILL:
        return
    found = types.problem(compiled.type_name, mode, selector.path.segments[0].span)
    if found is not None:
        diags.append(found)


def _align_partner(
    stmt, selector: CompiledSelector, values, words, selectors: SelectorCache, diags
) -> AlignPartner | None:
    """An align statement's partner (None for other statements, or when it is not one)."""
    if not isinstance(stmt, Align):
        return None
    if "dims" not in values:
        diags.append(located("E203", "align needs dims=[...]", stmt.span, "e.g. dims=[0]"))
    partner = stmt.partner
    compiled, found = selectors.compile(partner, words, True)
    diags.extend(relocated(d, partner.span) for d in found)
    if selector.targets is None or compiled is None or compiled.targets is None:
        diags.append(
            located(
                "E210",
                "align needs a target on both sides",
                stmt.span,
                "e.g. align bn*.weight with conv*.weight dims=[0]",
            )
        )
        return None
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
        return None
    return AlignPartner(*split_target(partner.path, words, True))
