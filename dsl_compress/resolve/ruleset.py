"""Rule sets and the compile verb: a .rules file's statements (includes in place) checked and,
with a model, resolved into a plan; without one, translated to NNI config_lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import torch
from dsl_compress.diagnostics import (
    CompressionError,
    Diagnostic,
    Severity,
    raise_errors,
    source_order,
)
from dsl_compress.language.includes import IncludeReader, parse_with_includes, read_rules
from dsl_compress.language.parse import StatementCache
from dsl_compress.language.syntax import Statement
from dsl_compress.plan import Plan
from dsl_compress.resolve.check import CheckedRules, check_rules
from dsl_compress.resolve.contributions import Contribution, SettingKey
from dsl_compress.resolve.nni_export import (
    inexpressible_entries,
    inexpressible_rules,
    mixed_metrics,
    static_config_list,
)
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.schema.registry import Registry
from dsl_compress.vocab import Mode


@dataclass(frozen=True)
class Compiled:
    """What a rule set means: registrations, an NNI config_list per kind and, with a model, a plan."""

    registry: dict[str, dict[str, dict]]
    plan: Plan | None
    diagnostics: tuple[Diagnostic, ...]
    registries: Registry = field(repr=False, compare=False)
    # Without a model: the statements translated one by one (see nni_export).
    model_free_config_list: dict[str, list[dict]] | None = field(default=None, repr=False)
    # Compiled with trace=True and a model: every tensor's statements, in statement order.
    contributions: Mapping[SettingKey, list[Contribution]] | None = field(
        default=None, repr=False, compare=False
    )

    # Without a model: the statements an NNI config_list cannot express (E223).
    model_free_export_errors: tuple[Diagnostic, ...] = field(default=(), repr=False)

    @cached_property
    def config_list(self) -> dict[str, list[dict]]:
        """NNI config_list per kind: with a model, one config per tensor of the plan (built on
        first use: a large model's list is large); without one, the model-free translation.
        Raises CompressionError (E223) naming each statement NNI cannot express (N:M)."""
        if self.plan is None:
            if self.model_free_config_list is None:
                raise ValueError("compiled with export=False: no config_list was made")
            raise_errors(self.model_free_export_errors)
            return self.model_free_config_list
        raise_errors(inexpressible_entries(self.plan))
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

    def compile(
        self,
        model: torch.nn.Module | None = None,
        registry: Registry | None = None,
        *,
        trace: bool = False,
        export: bool = True,
    ) -> Compiled:
        """Check everything, then resolve against ``model`` (a torch module, or a manifest's
        stand-in, which loads no torch); raises CompressionError carrying every error.

        ``trace`` keeps, with a model, which statements reached each tensor (what explain reads).
        ``export=False`` skips, without a model, the model-free config_list and its W304 notes
        (lint shows neither); its ``config_list`` is then an error.
        """
        index = None if model is None else ModelIndex.of(model)  # one walk of the model
        model_types = None if index is None else frozenset(index.type_names.values())
        checked = self.check(registry, model_types)
        diags = list(checked.diagnostics)
        plan, model_free, contributions, export_errors = None, None, None, ()
        if model is not None:
            from dsl_compress.resolve.from_rules import resolve_rules

            resolution = resolve_rules(model, checked, index)
            plan = resolution.plan
            contributions = resolution.contributions() if trace else None
            diags.extend(plan.diagnostics)
            diags.extend(mixed_metrics(plan))
        elif export:
            model_free = static_config_list(checked.rules, checked.excludes, diags)
            export_errors = tuple(inexpressible_rules(checked.rules))
        diags.sort(key=source_order)
        registered, registries = checked.registered, checked.registries
        return Compiled(
            registered, plan, tuple(diags), registries, model_free, contributions, export_errors
        )

    def check(
        self, registry: Registry | None = None, model_types: frozenset[str] | None = None
    ) -> CheckedRules:
        """The model-independent stage: lets, registrations, selectors and values checked
        (``model_types``: the model's type names, when there is a model; see check_rules)."""
        return check_rules(self.statements, registry, model_types)


def parse(
    text: str,
    path: str | None = None,
    include_root: str | Path | None = None,
    reader: IncludeReader | None = None,
    cache: StatementCache | None = None,
    failed: list[Diagnostic] | None = None,
) -> RuleSet:
    """Parse rules text; includes are read relative to ``path``'s folder (or the working folder)
    and only under ``include_root`` (by default that same folder), by ``reader`` when given
    (the language server's open buffers before disk); ``cache`` keeps an edited document's
    unchanged statements from being parsed again; with ``failed``, includes that fail are
    left out and their errors appended there (lint checks the rest)."""
    statements, files = parse_with_includes(text, path, include_root, reader, cache, failed)
    return RuleSet(statements, path, files)


def load(path: str | Path, include_root: str | Path | None = None) -> RuleSet:
    """Read and parse a .rules file; its includes may read under ``include_root`` only (by
    default the file's own folder)."""
    return parse(read_rules_file(path), str(path), include_root)


def read_rules_file(path: str | Path) -> str:
    """A .rules file's text; a missing or unreadable file is one E205 naming it."""
    file = Path(path)
    try:
        exists = file.is_file()
    except OSError as exc:  # a name too long, a symlink loop
        message = f"cannot read rules file '{path}': {exc.strerror or exc}"
        raise CompressionError(
            [Diagnostic("E205", Severity.ERROR, message, subject=str(path))]
        ) from None
    if not exists:
        raise CompressionError(
            [Diagnostic("E205", Severity.ERROR, f"no rules file at '{path}'", subject=str(path))]
        )
    return read_rules(file)
