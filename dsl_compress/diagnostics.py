"""The one Diagnostic type, its severity, source spans, and the error that carries diagnostics."""

from __future__ import annotations

import difflib
import enum
import functools
import re
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from dsl_compress.codes import CODES, LANGUAGE_CODE_OF


class Severity(str, enum.Enum):
    """How bad a diagnostic is; errors stop compilation, warnings do not."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file: 1-based line and column, end exclusive."""

    file: str | None
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file or '<string>'}:{self.line}:{self.column}"


def span_of_origin(origin: str) -> Span | None:
    """The span of a 'file:line:col' origin; None for other origins (a config index, a template)."""
    file, _, column = origin.rpartition(":")
    file, _, line = file.rpartition(":")
    if not (line.isdigit() and column.isdigit()):
        return None
    return Span(file or None, int(line), int(column), int(line), int(column) + 1)


@dataclass(frozen=True, slots=True)
class Fix:
    """One edit that resolves a diagnostic: replace the text of ``span`` with ``replacement``;
    ``title`` says it in words ("replace 'Conv2D' with 'Conv2d'"). Only fixes that cannot change
    meaning beyond the diagnostic's intent are attached (an unambiguous did-you-mean)."""

    span: Span
    replacement: str
    title: str


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a rule set, a config_list, a model or the engine.

    ``span`` locates it in a source file; ``subject`` locates it anywhere else
    (``config_list[2].sparse_ratio``, ``module 'fc1' target 'weight'``).
    """

    code: str
    severity: Severity
    message: str
    span: Span | None = field(default=None, compare=False)
    subject: str | None = None
    hint: str | None = None
    # The hint in .rules words, where ``hint`` speaks config_list ("drop weight from
    # target_names"): what the diagnostic says once located at a statement (at_statement).
    rules_hint: str | None = field(default=None, compare=False, repr=False)
    # Structured edits that resolve it (lint --fix, the language server's quick fixes).
    fixes: tuple[Fix, ...] = field(default=(), compare=False)
    # The one value that resolves a diagnostic about a value, where its maker knows no span (a
    # key table check): whoever locates the diagnostic at that value's text makes it a Fix.
    replacement: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"diagnostic code {self.code!r} is not in the code table")

    @property
    def location(self) -> str:
        if self.span is not None:
            return str(self.span)
        return self.subject or "<input>"

    def render(self, source_lines: Sequence[str] | None = None) -> str:
        """Render like a compiler: location, severity[code], message, source, help.

        Without ``source_lines`` the excerpt is read from the span's file when it exists (to
        render many diagnostics, :func:`render_all` reads each file once).
        """
        lines = [f"{self.location}: {self.severity.value}[{self.code}] {self.message}"]
        if source_lines is None and self.span is not None:
            source_lines = _file_lines(self.span.file)
        if self.span is not None and source_lines and 0 < self.span.line <= len(source_lines):
            lines.extend(_source_excerpt(self.span, source_lines[self.span.line - 1]))
        if self.hint:
            lines.append(f"  help: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def _file_lines(file: str | None) -> list[str]:
    if not file:
        return []
    try:
        with open(file, encoding="utf-8-sig") as handle:
            return handle.read().split("\n")
    except (OSError, UnicodeDecodeError, ValueError):
        return []


class SourceLines:
    """Each file's lines, read once: rendering many diagnostics of one file must not read it
    once per diagnostic (16,000 of them took a minute that way)."""

    def __init__(self, known: dict[str, Sequence[str]] | None = None) -> None:
        self._files: dict[str, Sequence[str]] = dict(known or {})

    def of(self, file: str | None) -> Sequence[str]:
        if not file:
            return []
        if file not in self._files:
            self._files[file] = _file_lines(file)
        return self._files[file]

    def __getitem__(self, file: str) -> Sequence[str]:
        return self.of(file)


def render_all(
    diagnostics: Iterable[Diagnostic], sources: SourceLines | None = None
) -> Iterator[str]:
    """Each diagnostic rendered with its source excerpt, each file read once."""
    sources = sources or SourceLines()
    for diag in diagnostics:
        yield diag.render(sources.of(diag.span.file) if diag.span is not None else None)


# An excerpt shows at most this many characters of a line, around the span: a 169 KB line
# printed once per diagnostic of it made hundreds of megabytes of output.
EXCERPT_WIDTH = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _source_excerpt(span: Span, text: str) -> list[str]:
    number = str(span.line)
    pad = " " * len(number)
    text = text.rstrip("\r")
    end = span.end_column if span.end_line == span.line else len(text) + 1
    first, last = span.column - 1, max(span.column, end - 1)
    start = 0
    if first >= EXCERPT_WIDTH // 2:  # the span starts far along a long line: shift the window
        start = max(0, min(first - EXCERPT_WIDTH // 4, len(text) - EXCERPT_WIDTH))
    shown = text[start : start + EXCERPT_WIDTH]
    before = "…" if start > 0 else ""
    after = "…" if start + EXCERPT_WIDTH < len(text) else ""
    caret_start = first - start + len(before)
    width = max(1, min(last, start + EXCERPT_WIDTH) - max(first, start))
    # Control characters (a terminal's escape sequences among them) are never echoed raw.
    shown = _CONTROL.sub("\ufffd", shown)
    return [
        f"  {number} | {before}{shown}{after}",
        f"  {pad} | {' ' * caret_start}{'^' * width}",
    ]


class CompressionError(Exception):
    """Raised with every error diagnostic found; nothing was modified when it is raised."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        super().__init__(self.diagnostics)

    def __str__(self) -> str:
        # Rendered when shown, not when raised: a check that raises and catches thousands of
        # errors must not read and render the source each time.
        return "\n".join(render_all(self.diagnostics))

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnostics]


class CompressionWarning(UserWarning):
    """Category for warnings the engine emits through :mod:`warnings`."""


def error(
    code: str,
    message: str,
    *,
    subject: str | None = None,
    hint: str | None = None,
    rules_hint: str | None = None,
    replacement: str | None = None,
) -> Diagnostic:
    return Diagnostic(
        code,
        Severity.ERROR,
        message,
        subject=subject,
        hint=hint,
        rules_hint=rules_hint,
        replacement=replacement,
    )


def warning(
    code: str,
    message: str,
    *,
    subject: str | None = None,
    hint: str | None = None,
    rules_hint: str | None = None,
) -> Diagnostic:
    return Diagnostic(
        code, Severity.WARNING, message, subject=subject, hint=hint, rules_hint=rules_hint
    )


def located(
    code: str,
    message: str,
    span: Span,
    hint: str | None = None,
    fixes: tuple[Fix, ...] = (),
) -> Diagnostic:
    """An error at ``span`` in a source file."""
    return Diagnostic(code, Severity.ERROR, message, span=span, hint=hint, fixes=fixes)


def relocated(
    diag: Diagnostic, span: Span, code: str | None = None, fixes: tuple[Fix, ...] = ()
) -> Diagnostic:
    """``diag`` located at ``span`` in a .rules file, under ``code`` or else its language code
    (LANGUAGE_CODE_OF), its hint in the words of .rules; ``fixes`` join its own."""
    code = code or LANGUAGE_CODE_OF.get(diag.code, diag.code)
    hint = diag.rules_hint or diag.hint
    return Diagnostic(
        code,
        diag.severity,
        diag.message,
        span=span,
        subject=diag.subject,
        hint=hint,
        fixes=diag.fixes + fixes,
    )


def replacing(span: Span, old: str, new: str) -> Fix:
    """The fix that replaces ``old``, the text at ``span``, with ``new``."""
    return Fix(span, new, f"replace {old!r} with {new!r}")


def fail(
    code: str,
    message: str,
    *,
    subject: str | None = None,
    hint: str | None = None,
    rules_hint: str | None = None,
) -> None:
    """Raise a CompressionError holding one error diagnostic (``rules_hint``: see Diagnostic)."""
    raise CompressionError(
        [error(code, message, subject=subject, hint=hint, rules_hint=rules_hint)]
    )


def at_statement(diag: Diagnostic, span: Span, message: str | None = None) -> Diagnostic:
    """``diag`` located at a .rules statement, its hint in the words of .rules."""
    return Diagnostic(
        diag.code,
        diag.severity,
        diag.message if message is None else message,
        span=span,
        hint=diag.rules_hint or diag.hint,
        fixes=diag.fixes,
    )


def source_order(diag: Diagnostic) -> tuple:
    """Diagnostics sort by file, line and column, as a compiler prints them."""
    span = diag.span
    return (span.file or "", span.line, span.column) if span is not None else ("", 0, 0)


def raise_errors(diagnostics: Iterable[Diagnostic]) -> None:
    """Raise one CompressionError carrying all errors, if there are any."""
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise CompressionError(errors)


def emit_warnings(diagnostics: Iterable[Diagnostic]) -> None:
    """Send warning diagnostics through :mod:`warnings` so callers see them."""
    found = [diag for diag in diagnostics if diag.severity is Severity.WARNING]
    for text in render_all(found):
        warnings.warn(text, CompressionWarning, stacklevel=3)


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> str | None:
    """A 'did you mean' hint from the closest candidates, or None."""
    close = close_matches(word, candidates, n)
    return "did you mean " + " or ".join(map(repr, close)) + "?" if close else None


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> tuple[str, ...]:
    """The candidates closest to ``word``, best first (those :func:`did_you_mean` names)."""
    return _closest(str(word), tuple(str(c) for c in candidates), n)


def sole_match(word: str, candidates: Iterable[str]) -> str | None:
    """The one close candidate, or None when there is none or several: the replacement a fix
    may make without choosing for the user."""
    close = close_matches(word, candidates)
    return close[0] if len(close) == 1 else None


# A pure function of its arguments, so a bounded memo changes no result: a file repeating one
# misspelt key 100,000 times asks difflib once, not 100,000 times (most of lint's time).
@functools.lru_cache(maxsize=512)
def _closest(word: str, pool: tuple[str, ...], n: int) -> tuple[str, ...]:
    # A slip of letter case (Conv2D for Conv2d), or else the one candidate a single typo away
    # (out_chanel for out_channel), names its candidate outright.
    same = tuple(c for c in pool if c.lower() == word.lower() and c != word)
    typo = tuple(c for c in pool if _one_typo_apart(word, c))
    close = same or (typo if len(typo) == 1 else ())
    close = close or tuple(difflib.get_close_matches(word, pool, n=n, cutoff=0.6))
    if not close:
        lowered = {c.lower(): c for c in pool}
        close = tuple(lowered[w] for w in difflib.get_close_matches(word.lower(), lowered, n=n))
    return close[:n]


def _one_typo_apart(word: str, other: str) -> bool:
    """Whether one letter added, dropped, changed or two neighbours swapped turn ``word`` into
    ``other`` (a word of one or two letters is too short to tell a typo from another word)."""
    if min(len(word), len(other)) < 3 or abs(len(word) - len(other)) > 1 or word == other:
        return False
    start = next((i for i, (a, b) in enumerate(zip(word, other)) if a != b), None)
    if start is None:  # one is the other with a letter added at the end
        return True
    head, tail = word[start:], other[start:]
    if len(head) == len(tail):
        swapped = len(head) > 1 and head[0] == tail[1] and head[1] == tail[0]
        return head[1:] == tail[1:] or (swapped and head[2:] == tail[2:])
    return head[1:] == tail or head == tail[1:]
