"""Lint's diagnostics for one open document, as LSP diagnostics grouped by the file they are
in (an included file's findings are published for that file), and the files it included."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from lsprotocol import types

from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity, SourceLines
from dsl_compress.language.parse import StatementCache
from dsl_compress.lsp.code_actions import fixes_data
from dsl_compress.language.includes import TextsFirst
from dsl_compress.lsp.documents import path_of, uri_of
from dsl_compress.lsp.positions import split_lines, to_range
from dsl_compress.lsp.project import Project
from dsl_compress.tools.lint import lint_text

SOURCE = "dsl-compress"

SEVERITIES = {
    Severity.ERROR: types.DiagnosticSeverity.Error,
    Severity.WARNING: types.DiagnosticSeverity.Warning,
    Severity.INFO: types.DiagnosticSeverity.Information,
}


@dataclass(frozen=True)
class Checked:
    """One check of a document: the diagnostics per file URI (the document's own always
    present, if empty) and the files its includes read."""

    by_uri: dict[str, list[types.Diagnostic]]
    included: frozenset[Path]


def check_document(
    uri: str,
    text: str,
    buffers: dict[Path, str],
    project: Project,
    cache: StatementCache | None = None,
    opened: Mapping[Path, str] | None = None,
) -> Checked:
    """Every diagnostic `lint` gives the document's text (with the manifest its project names),
    included files read from ``buffers`` before disk; with ``cache``, only the statements an
    edit changed are parsed again. An included file's findings go to the URI it is open
    under (``opened``, by resolved path), else to its own."""
    path = path_of(uri)
    reader = TextsFirst(buffers)
    model, found = None, []
    if path is not None:
        try:
            model = project.model_for(path)
        except CompressionError as exc:  # the manifest does not read: say so, check without it
            found.extend(exc.diagnostics)
    found.extend(lint_text(text, str(path) if path else None, model, reader=reader, cache=cache))
    grouped = _grouped(uri, text, found, buffers, opened or {})
    return Checked(grouped, frozenset(reader.read))


def _grouped(
    uri: str,
    text: str,
    found: Sequence[Diagnostic],
    buffers: dict[Path, str],
    opened: Mapping[Path, str],
) -> dict[str, list[types.Diagnostic]]:
    own = path_of(uri)
    disk = SourceLines()
    grouped: dict[str, list[types.Diagnostic]] = {uri: []}
    for diag in found:
        file = _file(diag, own)
        if file is None:
            where, lines = uri, split_lines(text)
        elif file in buffers:
            where, lines = opened.get(file) or uri_of(file), split_lines(buffers[file])
        else:
            where, lines = uri_of(file), disk.of(str(file))
        grouped.setdefault(where, []).append(to_lsp(diag, lines))
    return grouped


def _file(diag: Diagnostic, own: Path | None) -> Path | None:
    """The file a diagnostic is in; None for the document itself (or one without a span)."""
    if diag.span is None or not diag.span.file:
        return None
    file = Path(diag.span.file).resolve()
    return None if file == own else file


def to_lsp(diag: Diagnostic, lines: Sequence[str]) -> types.Diagnostic:
    """One LSP diagnostic: the same code, range and severity, the hint after the message."""
    message = diag.message
    if diag.span is None and diag.subject:
        message = f"{diag.subject}: {message}"
    if diag.hint:
        message = f"{message}\nhelp: {diag.hint}"
    file = diag.span.file if diag.span is not None else None
    return types.Diagnostic(
        range=to_range(lines, diag.span),
        message=message,
        severity=SEVERITIES[diag.severity],
        code=diag.code,
        source=SOURCE,
        data=fixes_data(diag.fixes, lines, file),
    )
