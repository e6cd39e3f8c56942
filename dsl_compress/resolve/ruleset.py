"""Rule sets: parsed .rules files with includes expanded, compiled to a registry, a config_list, a plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
from dsl_compress.diagnostics import (
    CompressionError,
    Diagnostic,
    Severity,
)
from dsl_compress.gc_pause import without_gc
from dsl_compress.vocab import Mode
from dsl_compress.resolve.nni_export import mixed_metrics, static_config_list
from dsl_compress.language.parse import parse as parse_file
from dsl_compress.plan import Plan
from dsl_compress.resolve.registration import build_template
from dsl_compress.schema.registry import DEFAULT_REGISTRY, Registry
from dsl_compress.resolve.check import (
    ExcludeRule,
    Rule,
    compile_exclude,
    compile_rule,
    target_words,
)
from dsl_compress.language.syntax import (
    Align,
    Compress,
    Exclude,
    Include,
    Let,
    Literal,
    Register,
    RuleFile,
    Statement,
)
from dsl_compress.resolve.setting_values import WORDS, evaluate
from dsl_compress.diagnostics import located, raise_errors, source_order


@dataclass(frozen=True)
class Compiled:
    """What a rule set means: registrations, an NNI config_list per kind and, with a model, a plan."""

    registry: dict[str, dict[str, dict]]
    plan: Plan | None
    diagnostics: tuple[Diagnostic, ...]
    registries: Registry = field(repr=False, compare=False)
    # Without a model: the statements translated one by one (see nni_export).
    model_free_config_list: dict[str, list[dict]] | None = field(default=None, repr=False)

    @cached_property
    def config_list(self) -> dict[str, list[dict]]:
        """NNI config_list per kind: with a model, one config per tensor of the plan (built on
        first use: a large model's list is large); without one, the model-free translation."""
        if self.plan is None:
            return self.model_free_config_list
        return {m.value: self.plan.to_config_list(m) for m in Mode}

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.WARNING)


@dataclass(frozen=True)
class RuleSet:
    """Statements of a .rules file in order, with included files' statements in place."""

    statements: tuple[Statement, ...]
    path: str | None = None
    files: tuple[str, ...] = ()

    @without_gc
    def compile(
        self, model: torch.nn.Module | None = None, registry: Registry | None = None
    ) -> Compiled:
        """Check everything, then resolve; raises CompressionError carrying every error."""
        checked = self.check(registry)
        diags = list(checked.diagnostics)
        rules, excludes, registries = checked.rules, checked.excludes, checked.registries
        plan = None
        if model is not None:
            from dsl_compress.resolve.from_rules import (
                resolve_rules,
            )  # torch loads only with a model

            plan = resolve_rules(model, rules, excludes, registries)
        model_free = None
        if plan is not None:
            diags.extend(plan.diagnostics)
            diags.extend(mixed_metrics(plan))
        else:
            model_free = static_config_list(rules, excludes, diags)
        diags.sort(key=source_order)
        return Compiled(checked.registered, plan, tuple(diags), registries, model_free)

    def check(self, registry: Registry | None = None) -> "CheckedRules":
        """The model-independent stage: lets, registrations, selectors and values checked."""
        diags: list[Diagnostic] = []
        lets = _lets(self.statements, diags)
        registries, registered = _registrations(self.statements, lets, registry, diags)
        rules, excludes = [], []
        words = {mode: target_words(registries, mode) for mode in Mode}
        for i, stmt in enumerate(self.statements):
            if isinstance(stmt, (Compress, Align)):
                rules.append(compile_rule(i, stmt, lets, registries, words, diags))
            elif isinstance(stmt, Exclude):
                excludes.append(compile_exclude(stmt, registries, diags))
        raise_errors(sorted(diags, key=source_order))
        return CheckedRules(
            [r for r in rules if r is not None],
            [e for e in excludes if e is not None],
            registries,
            registered,
            tuple(diags),
        )


@dataclass(frozen=True)
class CheckedRules:
    """Rules ready to resolve against a model, with the registry they resolve against."""

    rules: list[Rule]
    excludes: list[ExcludeRule]
    registries: Registry
    registered: dict[str, dict[str, dict]]
    diagnostics: tuple[Diagnostic, ...]


def _lets(statements, diags: list) -> dict[str, Any]:
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


def parse(text: str, path: str | None = None) -> RuleSet:
    """Parse rules text; includes are read relative to ``path``'s folder (or the working folder)."""
    base = Path(path).resolve() if path else None
    statements = _expand(parse_file(text, path), base, [base] if base else [], set())
    return RuleSet(tuple(statements), path, tuple(str(p) for p in _seen(statements, base)))


def load(path: str | Path) -> RuleSet:
    """Read and parse a .rules file."""
    file = Path(path)
    if not file.is_file():
        raise CompressionError(
            [Diagnostic("E205", Severity.ERROR, f"no rules file at '{path}'", subject=str(path))]
        )
    return parse(read_rules(file), str(path))


def _expand(
    rule_file: RuleFile, base: Path | None, stack: list[Path], done: set
) -> list[Statement]:
    """Statements with includes in place; a file already included is not included again."""
    out: list[Statement] = []
    errors: list[Diagnostic] = []
    for stmt in rule_file.statements:
        if not isinstance(stmt, Include):
            out.append(stmt)
            continue
        try:
            out.extend(_include(stmt, base, stack, done))
        except CompressionError as exc:
            errors.extend(exc.diagnostics)
    if errors:
        raise CompressionError(errors)
    return out


def _include(stmt: Include, base: Path | None, stack: list[Path], done: set) -> list[Statement]:
    folder = base.parent if base else Path.cwd()
    target = (folder / stmt.path).resolve()
    if target.is_dir():
        message = f"included path '{stmt.path}' is a folder, not a rules file"
        raise CompressionError([located("E205", message, stmt.span, f"it is {target}")])
    if target in stack:
        chain = " -> ".join(p.name for p in [*stack, target])
        raise CompressionError([located("E206", f"include cycle: {chain}", stmt.span)])
    if not target.is_file():
        raise CompressionError(
            [
                located(
                    "E205",
                    f"included file '{stmt.path}' does not exist",
                    stmt.span,
                    f"looked for {target}",
                )
            ]
        )
    if target in done:
        return []
    done.add(target)
    included = parse_file(read_rules(target, stmt.span), _shown(target))
    return _expand(included, target, [*stack, target], done)


def read_rules(path: Path, span=None) -> str:
    """A rules file's text (UTF-8, a BOM allowed); undecodable bytes are a diagnostic."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        message = f"'{path}' is not UTF-8 text ({exc.reason} at byte {exc.start})"
        diag = Diagnostic("E102", Severity.ERROR, message, span=span, subject=str(path))
        raise CompressionError([diag]) from None


def _shown(path: Path) -> str:
    """How a file is named in diagnostics: relative to the working folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _seen(statements: list[Statement], base: Path | None) -> list[Path]:
    names = {s.span.file for s in statements if s.span.file}  # each file resolved once
    files = {Path(name).resolve() for name in names}
    return sorted(files - ({base} if base else set()))
