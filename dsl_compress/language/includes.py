"""Rules files on disk: reading their text, and include statements expanded in place (cycles,
missing files and files included twice)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity, Span
from dsl_compress.language.parse import StatementCache, parse_rule_file
from dsl_compress.language.syntax import Include, RuleFile, Statement

# How an included file's text is read: by default from disk (read_rules); the language server
# reads the unsaved text of the files open in the editor first.
IncludeReader = Callable[[Path, Span | None], str]

# Each level of include is a few stack frames; a chain of 500 files overflowed Python's stack.
MAX_INCLUDE_DEPTH = 32


@dataclass(frozen=True)
class _Reading:
    """What one expansion shares: the folder includes may read under, the files read so far."""

    root: Path
    done: set = field(default_factory=set)
    read: IncludeReader = field(default=lambda path, span: read_rules(path, span))
    # Where an include that fails is reported, left out, when the caller collects them.
    failed: list | None = None


def parse_with_includes(
    text: str,
    path: str | None = None,
    include_root: str | Path | None = None,
    reader: IncludeReader | None = None,
    cache: StatementCache | None = None,
    failed: list[Diagnostic] | None = None,
) -> tuple[tuple[Statement, ...], tuple[str, ...]]:
    """The statements of rules text with included files' statements in place, and the files it
    included; includes are read relative to ``path``'s folder (or the working folder).

    Includes may read only files under ``include_root`` (by default the folder of ``path``, or
    the working folder), symlinks resolved first: rules from a pull request must not read
    ``/etc/passwd`` into a CI log. ``reader`` reads an included file's text (by default
    :func:`read_rules`); it is asked only after the file passed those checks. ``cache``
    parses the text itself again only where it changed since the cache's last parse (an
    editor's document). With ``failed``, an include that cannot be read (missing, outside the
    root, a cycle) is left out and its error appended there, so that the rest is still checked
    (lint); without, every such error is raised.
    """
    base = _resolved(Path(path)) if path else None
    root = _include_root(include_root, base)
    reading = _Reading(root, read=reader or _Reading(root).read, failed=failed)
    parsed = parse_rule_file(text, path) if cache is None else cache.parse(text, path)
    statements = _expand(parsed, base, [base] if base else [], reading)
    return tuple(statements), tuple(str(p) for p in _seen(statements, base))


def read_rules(path: Path, span: Span | None = None) -> str:
    """A rules file's text (UTF-8, a BOM allowed); an unreadable file, undecodable bytes or a
    NUL byte (a binary file) are a diagnostic that shows none of its content."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        message = f"cannot read rules file '{path}': {exc.strerror or exc}"
        raise CompressionError(
            [Diagnostic("E205", Severity.ERROR, message, span=span, subject=str(path))]
        ) from None
    except UnicodeDecodeError as exc:
        message = f"'{path}' is not UTF-8 text ({exc.reason} at byte {exc.start})"
        diag = Diagnostic("E102", Severity.ERROR, message, span=span, subject=str(path))
        raise CompressionError([diag]) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        message = f"'{path}' is not rules text (a NUL byte on line {line}); none of it is shown"
        diag = Diagnostic("E102", Severity.ERROR, message, span=span, subject=str(path))
        raise CompressionError([diag])
    return text


def include_root_of(path: str | None, include_root: str | Path | None) -> Path:
    """The folder the includes of the file at ``path`` may read under: ``include_root``, by
    default the file's own folder (or the working folder); raises CompressionError for a
    root that is not a folder (X803) or a path that does not resolve (E205)."""
    base = _resolved(Path(path)) if path else None
    return _include_root(include_root, base)


def _include_root(include_root: str | Path | None, base: Path | None) -> Path:
    if include_root is None:
        return base.parent if base else _resolved(Path.cwd())
    root = _resolved(Path(include_root))
    if not root.is_dir():
        message = f"the include root '{include_root}' is not a folder"
        raise CompressionError([Diagnostic("X803", Severity.ERROR, message, subject=str(root))])
    return root


def _resolved(path: Path, span: Span | None = None) -> Path:
    """``path`` with every symlink resolved; a symlink loop or an impossible name is E205."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop before Python 3.13
        reason = getattr(exc, "strerror", None) or "a symlink loop"
        message = f"cannot resolve '{path}': {reason}"
        raise CompressionError([_error("E205", message, span, subject=str(path))]) from None


def _expand(
    rule_file: RuleFile, base: Path | None, stack: list[Path], reading: _Reading
) -> list[Statement]:
    """Statements with includes in place; a file already included is not included again."""
    out: list[Statement] = []
    errors: list[Diagnostic] = []
    for stmt in rule_file.statements:
        if not isinstance(stmt, Include):
            out.append(stmt)
            continue
        try:
            out.extend(_include(stmt, base, stack, reading))
        except CompressionError as exc:
            errors.extend(exc.diagnostics)
    if errors and reading.failed is None:
        raise CompressionError(errors)
    if errors:
        reading.failed.extend(errors)
    return out


def _include(stmt: Include, base: Path | None, stack: list[Path], reading: _Reading):
    folder = base.parent if base else Path.cwd()
    target = _resolved(folder / stmt.path, stmt.span)
    _check_allowed(stmt, target, stack, reading.root)
    if target in reading.done:
        return []
    reading.done.add(target)
    included = parse_rule_file(reading.read(target, stmt.span), _shown(target))
    return _expand(included, target, [*stack, target], reading)


def _check_allowed(stmt: Include, target: Path, stack: list[Path], root: Path) -> None:
    """Refuse, before anything of the target is read: a path outside the include root, a chain
    too deep, a cycle, a folder, a missing file."""
    if not target.is_relative_to(root):
        message = f"include '{stmt.path}' reads outside the include root"
        hint = (
            f"includes may read files under {root} only; move the file there or give --include-root"
        )
        raise CompressionError([_error("E219", message, stmt.span, hint)])
    if len(stack) > MAX_INCLUDE_DEPTH:
        message = f"includes chained deeper than {MAX_INCLUDE_DEPTH} files"
        raise CompressionError(
            [_error("E104", message, stmt.span, "include the files from one file")]
        )
    if target in stack:
        chain = " -> ".join(p.name for p in [*stack, target])
        raise CompressionError([_error("E206", f"include cycle: {chain}", stmt.span)])
    try:
        is_dir, is_file = target.is_dir(), target.is_file()
    except OSError as exc:
        message = f"cannot read included file '{stmt.path}': {exc.strerror or exc}"
        raise CompressionError([_error("E205", message, stmt.span)]) from None
    if is_dir:
        message = f"included path '{stmt.path}' is a folder, not a rules file"
        raise CompressionError([_error("E205", message, stmt.span, f"it is {target}")])
    if not is_file:
        message = f"included file '{stmt.path}' does not exist"
        raise CompressionError([_error("E205", message, stmt.span, f"looked for {target}")])


def _error(
    code: str, message: str, span: Span | None, hint: str | None = None, subject=None
) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, span=span, subject=subject, hint=hint)


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


class TextsFirst:
    """An :data:`IncludeReader` that reads an included file from ``texts`` (by resolved path:
    an editor's unsaved buffers, lint --fix's fixed texts) where it holds it, else from disk,
    and remembers every file it read."""

    def __init__(self, texts: Mapping[Path, str]) -> None:
        self._texts = texts
        self.read: set[Path] = set()

    def __call__(self, path: Path, span: Span | None) -> str:
        self.read.add(path)
        text = self._texts.get(path)
        return text if text is not None else read_rules(path, span)
