"""The linter: every diagnostic of .rules files, and with a model the size checks of the plan."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from dsl_compress.diagnostics import (
    CompressionError,
    Diagnostic,
    Severity,
    SourceLines,
    Span,
    did_you_mean,
    fail,
    span_of_origin,
)
from dsl_compress.codes import LINT_CODE_OF
from dsl_compress.language.includes import IncludeReader, TextsFirst, include_root_of
from dsl_compress.language.parse import StatementCache
from dsl_compress.tools.lint_pieces import lint_in_pieces
from dsl_compress.vocab import Mode
from dsl_compress.plan import Plan, PlanEntry, Key
from dsl_compress.resolve.config_input import MODE_ARGUMENT_HINT, ConfigInput, read_config_input
from dsl_compress.resolve.ruleset import RuleSet, parse, read_rules_file
from dsl_compress.resolve.model_index import ModelIndex

if TYPE_CHECKING:
    import torch

    from dsl_compress.stand_in import StandInModule

    Model = torch.nn.Module | StandInModule

FAIL_ON: dict[str, frozenset[Severity]] = {
    "error": frozenset({Severity.ERROR}),
    "warning": frozenset({Severity.ERROR, Severity.WARNING}),
}


# An input that cannot be read (E205) or a config_list without its mode (X803) is the
# command's input error; a file that reads but does not parse (C101, E101) is a finding.
INPUT_ERRORS = frozenset({"E205", "X803"})


@dataclass(frozen=True)
class LintResult:
    """What lint found: diagnostics in file/line/column order and the source lines to show them.

    ``unreadable`` names the inputs that could not be read at all (missing, unreadable, or a
    config_list without its mode): the command's input error, not a finding of the rules.
    """

    diagnostics: tuple[Diagnostic, ...]
    sources: SourceLines = field(default_factory=SourceLines, compare=False)
    files_checked: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()

    def count(self, severity: Severity) -> int:
        return sum(1 for d in self.diagnostics if d.severity is severity)

    def exit_status(self, fail_on: str = "warning") -> int:
        """1 when some diagnostic is at or above ``fail_on`` ('warning', as ruff's default, or
        'error'), else 0; info notes never fail."""
        if fail_on not in FAIL_ON:
            hint = did_you_mean(str(fail_on), FAIL_ON) or "use 'error' or 'warning'"
            fail("X803", f"fail_on must be 'error' or 'warning', not {fail_on!r}", hint=hint)
        return int(any(d.severity in FAIL_ON[fail_on] for d in self.diagnostics))


def lint(
    paths: Sequence[str],
    model: Model | None = None,
    *,
    mode: Mode | str | None = None,
    metric: str | None = None,
    mode_hint: str = MODE_ARGUMENT_HINT,
    include_root: str | Path | None = None,
    target: str | None = None,
    texts: Mapping[Path, str] | None = None,
    jobs: int = 1,
) -> LintResult:
    """Lint each input: a .rules file, or an NNI config_list .json (with ``mode`` for a plain
    list, ``metric`` for pruning); syntax and meaning, and with ``model`` everything model-aware
    (a torch module, or a manifest's stand-in: then lint loads no torch). Includes read only
    under ``include_root`` (by default each file's own folder). A .rules file (linted or
    included) whose resolved path is in ``texts`` is read from there, not from disk.

    With ``target`` ('vllm') and a model, what that server refuses in a compressed-tensors
    export of each plan is reported too (F101, V101-V104). Without a model, ``jobs`` > 1 lints
    a file of a megabyte or more in that many worker processes.

    Errors are collected, never raised: a file that does not parse or compile is reported
    with every error it has, and the other files are still checked.
    """
    found: list[Diagnostic] = []
    unreadable: list[str] = []
    for path in map(str, paths):
        try:
            diagnostics = lint_file(
                path,
                model,
                mode=mode,
                metric=metric,
                mode_hint=mode_hint,
                include_root=include_root,
                target=target,
                texts=texts,
                jobs=jobs,
            )
        except CompressionError as exc:
            diagnostics = list(exc.diagnostics)
            if any(d.code in INPUT_ERRORS for d in diagnostics):
                unreadable.append(path)
        found.extend(_located(diagnostics, path))
    diagnostics = sorted(_unique(found), key=_position)
    files = tuple(map(str, paths))
    return LintResult(tuple(diagnostics), SourceLines(), files, tuple(unreadable))


def lint_file(
    path: str,
    model: Model | None = None,
    *,
    mode: Mode | str | None = None,
    metric: str | None = None,
    mode_hint: str = MODE_ARGUMENT_HINT,
    include_root: str | Path | None = None,
    target: str | None = None,
    texts: Mapping[Path, str] | None = None,
    jobs: int = 1,
) -> list[Diagnostic]:
    """Every diagnostic of one input; raises CompressionError when it cannot be read or parsed
    as a whole (a missing file, JSON that does not parse, a config_list without its mode)."""
    if is_config_list(path):
        config = read_config_input(path, mode, mode_hint=mode_hint)
        return _lint_config_list(config, model, metric, target)
    text = (texts or {}).get(Path(path).resolve())
    text = read_rules_file(path) if text is None else text
    reader = TextsFirst(texts) if texts else None
    options = {"include_root": include_root, "reader": reader, "target": target, "jobs": jobs}
    return lint_text(text, path, model, **options)


def lint_text(
    text: str,
    path: str | None,
    model: Model | None = None,
    *,
    include_root: str | Path | None = None,
    reader: IncludeReader | None = None,
    target: str | None = None,
    cache: StatementCache | None = None,
    jobs: int = 1,
) -> list[Diagnostic]:
    """Every diagnostic of .rules text (what :func:`lint_file` reports for a file holding it);
    ``reader`` reads included files (the language server's unsaved buffers before disk);
    ``target`` and ``jobs`` as for :func:`lint`; ``cache`` re-parses only the statements an
    edit changed.

    Without a model (or a cache), a file is linted a piece at a time (tools/lint_pieces.py).
    """
    if model is None and cache is None:
        try:
            include_root_of(path, include_root)  # checked as the whole-file parse checks it
        except CompressionError as exc:
            return list(exc.diagnostics)
        found = lint_in_pieces(text, path, jobs)
        if found is not None:
            return found
    options = {"include_root": include_root, "reader": reader, "target": target, "cache": cache}
    return lint_whole(text, path, model, **options)


_WHOLE_OPTIONS = frozenset({"include_root", "reader", "target", "cache"})


def lint_whole(
    text: str, path: str | None, model: Model | None = None, **options
) -> list[Diagnostic]:
    """:func:`lint_text` of the file parsed and checked whole, its options (all but ``jobs``)
    as there: with a model, a cache or an include; and what the piecewise lint is tested
    against."""
    unknown = set(options) - _WHOLE_OPTIONS
    if unknown:
        raise TypeError(f"lint_whole() got unexpected options {sorted(unknown)}")
    target = options.get("target")
    failed: list[Diagnostic] = []  # includes that cannot be read: reported with the rest
    try:
        where = (options.get("include_root"), options.get("reader"), options.get("cache"))
        rules = parse(text, path, *where, failed)
        # Without a model, W304 only says what an NNI export would lack: not a finding of the
        # rules, so the export it comes from is not made.
        compiled = rules.compile(model, export=False)
    except CompressionError as exc:
        return failed + list(exc.diagnostics)
    found = failed + list(compiled.diagnostics)
    if model is not None and compiled.plan is not None:
        spans = statement_spans(rules)
        found.extend(check_plan(compiled.plan, model, spans))
        if target is not None:
            found.extend(_widened(d, spans) for d in _target(compiled.plan, model, target))
    return found


def _target(plan: Plan, model: Model, target: str) -> list[Diagnostic]:
    from dsl_compress.deploy.checks import deployment_findings  # only with --target

    return deployment_findings(plan, model, target)[1]


def is_config_list(path: str | Path) -> bool:
    """Whether an input is an NNI config_list (a .json file) rather than .rules text."""
    return str(path).endswith(".json")


def _lint_config_list(
    config: ConfigInput, model: Model | None, metric: str | None, target: str | None = None
) -> list[Diagnostic]:
    """C1xx of every config; with a model, what resolving them reports and the plan's checks."""
    found = config.validate()
    if model is None or any(d.severity is Severity.ERROR for d in found):
        return found
    try:
        plan = config.plan(model, metric)
    except CompressionError as exc:
        return list(exc.diagnostics)
    checked = check_plan(plan, model) + (_target(plan, model, target) if target else [])
    return [*plan.diagnostics, *config.located_by_origin(plan, checked)]


def check_plan(
    plan: Plan, model: Model, spans: Mapping[str, Span] | None = None
) -> list[Diagnostic]:
    """W305 ratios that prune no block, and every error apply() would meet in the engine's
    checks of settings and shapes, which lint runs itself (see :func:`foretold`).

    Each is reported at the statement or setting that set the value: ``spans`` maps a plan
    origin ('file:line:col') to that construct's whole span (see :func:`statement_spans`).
    """
    shapes = _parameter_shapes(model)
    found = [d for e in plan.of_mode(Mode.PRUNE) for d in _zero_blocks(e, shapes.get(e.key))]
    found.extend(foretold(plan, model))
    return [_widened(diag, spans or {}) for diag in found]


def foretold(plan: Plan, model: Model) -> list[Diagnostic]:
    """The errors apply() fails with, from the engine's own checks of settings and shapes
    (:func:`plan_problems`), each under the lint code that foretells its engine code
    (``CodeInfo.predicts``); lint runs no forward pass, so input/output shapes are unknown.
    """
    from dsl_compress.engine.plan_checks import plan_problems  # not needed without a model

    return [_foretold(entry, p.setting, p.diagnostic) for entry, p in plan_problems(model, plan)]


def _foretold(entry: PlanEntry, key: str, engine: Diagnostic) -> Diagnostic:
    code = LINT_CODE_OF.get(engine.code, engine.code)
    by = f" (the {entry.module_type} template's {key})" if _templated(entry, key) else ""
    name = f"{entry.module}.{entry.target}"
    message = engine.message if name in engine.message else f"{name}: {engine.message}"
    hint = "; ".join(h for h in (engine.hint, f"apply() fails with {engine.code}") if h)
    return _at(entry, key, code, Severity.ERROR, message + by, hint)


def statement_spans(rules: RuleSet) -> dict[str, Span]:
    """Whole spans of statements and settings by the 'file:line:col' a plan origin names."""
    spans: dict[str, Span] = {}
    for stmt in rules.statements:
        spans.setdefault(str(stmt.span), stmt.span)
        for setting in getattr(stmt, "settings", ()):
            spans.setdefault(str(setting.value.span), setting.span)
            spans.setdefault(str(setting.span), setting.span)
    return spans


def _widened(diag: Diagnostic, spans: Mapping[str, Span]) -> Diagnostic:
    span = spans.get(str(diag.span)) if diag.span is not None else None
    if span is None:
        return diag
    return dataclasses.replace(diag, span=span)


def _parameter_shapes(model: Model) -> dict[Key, tuple[int, ...]]:
    return {
        (name, target): tuple(tensor.shape)
        for name, module in ModelIndex.of(model).modules.items()
        for target, tensor in module._parameters.items()
        if tensor is not None
    }


# ----- W305: a ratio that prunes no block ---------------------------------------------------------


def _zero_blocks(entry: PlanEntry, shape: tuple[int, ...] | None) -> list[Diagnostic]:
    """The ratio stage prunes floor(blocks * ratio) blocks (ratio clamped to min/max); 0 is none.

    Group members are ranked together, so a small member of a group is not a finding.
    """
    ratio = entry.get("sparse_ratio")
    if not ratio or shape is None or _grouped(entry):
        return []
    low, high = entry.get("min_sparse_ratio") or 0.0, entry.get("max_sparse_ratio") or 1.0
    ratio = min(high, max(low, ratio))
    blocks = _block_count(entry, shape)
    if blocks is None or not 0.0 < ratio < 1.0 or int(blocks * ratio) > 0:
        return []
    unit = "element" if entry.kernel is None else "block"
    message = (
        f"{entry.module}.{entry.target}: sparse_ratio={ratio} of {blocks} {unit}(s) prunes nothing "
        f"(floor({blocks} * {ratio}) = 0)"
    )
    hint = f"use sparse_ratio >= {math.ceil(1000 / blocks) / 1000:g}, or a finer granularity"
    return [_at(entry, "sparse_ratio", "W305", Severity.WARNING, message, hint)]


def _grouped(entry: PlanEntry) -> bool:
    return entry.get("global_group_id") is not None or entry.get("dependency_group_id") is not None


def _block_count(entry: PlanEntry, shape: tuple[int, ...]) -> int | None:
    """How many blocks the ratio counts: elements without a granularity, else the block grid."""
    try:
        kernel = entry.kernel
        sizes = kernel.block_shape(shape, entry.subject) if kernel is not None else shape
    except CompressionError:
        return None  # a granularity that does not fit is the engine's P501, not this check
    return math.prod(sizes)


def _templated(entry: PlanEntry, key: str) -> bool:
    return entry.key_origins.get(key, "").startswith("template ")


# ----- locating, ordering and showing ------------------------------------------------------------


def _at(
    entry: PlanEntry, key: str, code: str, severity: Severity, message: str, hint: str
) -> Diagnostic:
    """A diagnostic at the statement that set ``key`` (or that matched the tensor)."""
    span = span_of_origin(entry.key_origins.get(key, "")) or span_of_origin(entry.origin)
    subject = None if span is not None else entry.subject
    return Diagnostic(code, severity, message, span=span, subject=subject, hint=hint)


def _located(found: Iterable[Diagnostic], path: str) -> list[Diagnostic]:
    """Diagnostics without a span belong to the linted file: its path becomes their subject."""
    out = []
    for diag in found:
        if diag.span is None and diag.subject != path:
            message = f"{diag.subject}: {diag.message}" if diag.subject else diag.message
            diag = dataclasses.replace(diag, message=message, subject=path, rules_hint=None)
        out.append(diag)
    return out


def file_of(diag: Diagnostic) -> str | None:
    """The file a lint diagnostic is about: its span's, or the linted path it was put on."""
    return diag.span.file if diag.span is not None else diag.subject


def _position(diag: Diagnostic) -> tuple[Any, ...]:
    span = diag.span
    where = (span.line, span.column) if span is not None else (0, 0)
    return (file_of(diag) or "", *where, diag.code, diag.message)


class _SameFile:
    """A file by its resolved path where it names one (``a.rules`` and ``./a.rules`` alike);
    each name is resolved once per lint, not once per diagnostic (a system call per link)."""

    def __init__(self) -> None:
        self._resolved: dict[str, str] = {}

    def __call__(self, name: str | None) -> str | None:
        if not name or name.startswith("<"):
            return name
        resolved = self._resolved.get(name)
        if resolved is None:
            resolved = self._resolved[name] = str(Path(name).resolve())
        return resolved


def _identity(diag: Diagnostic, same_file: _SameFile) -> tuple[Any, ...]:
    span = diag.span
    where = (span.line, span.column, span.end_line, span.end_column) if span else ()
    return (diag.code, diag.severity, diag.message, same_file(file_of(diag)), where)


def _fix_keys(diag: Diagnostic, same_file: _SameFile) -> set[tuple[Any, ...]]:
    """A diagnostic's fixes, their files by resolved path."""
    return {
        (same_file(f.span.file), f.span.line, f.span.column, f.span.end_line, f.span.end_column)
        + (f.replacement,)
        for f in diag.fixes
    }


def _unique(found: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Once each: a file included by two linted files reports its findings once. Where the
    two readings offer different fixes (each includer's lets), the fix is not certain: the
    finding keeps none."""
    seen: dict[tuple[Any, ...], Diagnostic] = {}
    same_file = _SameFile()
    for diag in found:
        identity = _identity(diag, same_file)
        first = seen.setdefault(identity, diag)
        if first is not diag and _fix_keys(first, same_file) != _fix_keys(diag, same_file):
            seen[identity] = dataclasses.replace(first, fixes=())
    return list(seen.values())
