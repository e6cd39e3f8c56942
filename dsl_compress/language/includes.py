"""Rules files on disk: reading their text, and include statements expanded in place (cycles,
missing files and files included twice)."""

from __future__ import annotations

from pathlib import Path

from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity, Span
from dsl_compress.language.parse import parse_rule_file
from dsl_compress.language.syntax import Include, RuleFile, Statement


def parse_with_includes(
    text: str, path: str | None = None
) -> tuple[tuple[Statement, ...], tuple[str, ...]]:
    """The statements of rules text with included files' statements in place, and the files it
    included; includes are read relative to ``path``'s folder (or the working folder)."""
    base = Path(path).resolve() if path else None
    statements = _expand(parse_rule_file(text, path), base, [base] if base else [], set())
    return tuple(statements), tuple(str(p) for p in _seen(statements, base))


def read_rules(path: Path, span: Span | None = None) -> str:
    """A rules file's text (UTF-8, a BOM allowed); an unreadable file or undecodable bytes are
    a diagnostic."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        message = f"cannot read rules file '{path}': {exc.strerror or exc}"
        raise CompressionError(
            [Diagnostic("E205", Severity.ERROR, message, span=span, subject=str(path))]
        ) from None
    except UnicodeDecodeError as exc:
        message = f"'{path}' is not UTF-8 text ({exc.reason} at byte {exc.start})"
        diag = Diagnostic("E102", Severity.ERROR, message, span=span, subject=str(path))
        raise CompressionError([diag]) from None


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
        raise CompressionError([_error("E205", message, stmt.span, f"it is {target}")])
    if target in stack:
        chain = " -> ".join(p.name for p in [*stack, target])
        raise CompressionError([_error("E206", f"include cycle: {chain}", stmt.span)])
    if not target.is_file():
        message = f"included file '{stmt.path}' does not exist"
        raise CompressionError([_error("E205", message, stmt.span, f"looked for {target}")])
    if target in done:
        return []
    done.add(target)
    included = parse_rule_file(read_rules(target, stmt.span), _shown(target))
    return _expand(included, target, [*stack, target], done)


def _error(code: str, message: str, span: Span, hint: str | None = None) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, span=span, hint=hint)


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
