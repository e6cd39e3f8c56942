"""Formatting .rules text into its one canonical layout, keeping every comment and the meaning.

The canonical style, in the spirit of black (one way to write each thing, so diffs show
only real changes):

- One statement per line: a ``;``-joined line is split, a statement written over several
  lines (a list across lines, a ``\\`` continuation) is joined. Lines are never wrapped.
- Single spaces between the parts of a statement; ``key=value`` without spaces; ``let name =
  value`` with them; lists as ``[1, -1]`` (comma and space, no trailing comma); ``except a, b``;
  ``exclude X from quantize``; selectors as written (``Linear.{weight,_input_,_output_}``,
  ``re"..."`` keeping its backslashes, ``in`` scopes).
- Strings in double quotes, ``\\`` and ``"`` escaped with a backslash. Integers as integers,
  floats as Python's ``repr`` (``0.5``, ``1e-05``; infinity as ``1e999``), words as written.
- ``register KIND Type {`` then one target per line indented by two spaces, then ``}``; a
  block with no targets and no comments inside is ``register KIND Type {}``.
- Comments are kept verbatim (trailing whitespace dropped). A full-line comment stays on its
  own line before the code that followed it (inside a register block if it was there,
  indented with it); one inside a statement that spanned lines moves above that statement.
  A trailing comment stays at the end of its line, after two spaces; a statement written
  over several lines keeps its last trailing comment there and the earlier ones move above
  it. A comment after everything stays at the end.
- One blank line where the source had one or more (a line holding only ``;`` counts as
  blank); none at the start or end of the file, after a ``{`` or before a ``}``. The text ends
  with exactly one newline; a file with no statements and no comments formats to "".

Placement uses the statements' spans, so :func:`format_file` on a tree built in code (no
spans) prints no blank lines and puts any comments at the end.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from operator import attrgetter
from typing import Iterable, Iterator

from dsl_compress.diagnostics import CompressionError, Diagnostic
from dsl_compress.language import worker_pool
from dsl_compress.language.parse import parse_rule_file
from dsl_compress.language.statement_split import Chunk, split_pieces
from dsl_compress.language.syntax import (
    Align,
    Comment,
    Compress,
    Exclude,
    Include,
    Let,
    ListValue,
    Path,
    Register,
    RegisterTarget,
    RuleFile,
    Selector,
    Setting,
    Statement,
    Value,
)

INDENT = "  "
COMMENT_GAP = "  "


# Statements per piece: a file is parsed and laid out a piece at a time, so its syntax
# tree is never alive whole (200,000 statements held 650 MB); a piece costs a few MB.
PIECE_STATEMENTS = 4096


def format_rules(text: str, path: str | None = None, jobs: int = 1) -> str:
    """The canonical text of ``text``; a syntax error raises the parser's CompressionError
    (with the syntax errors of every piece). With ``jobs`` > 1, a text of a megabyte or more
    is formatted by that many processes, a piece each at a time."""
    pieces = split_pieces(text, PIECE_STATEMENTS)
    jobs = worker_pool.jobs_for(text, jobs)
    return joined_pieces(worker_pool.mapped(format_piece, pieces, jobs, path))


@dataclass(frozen=True)
class FormattedPiece:
    """A piece of a file formatted on its own: its output lines joined (one string: a worker
    sends it whole), the source lines its first and last output line came from, or the
    syntax errors that stopped it."""

    text: str = ""
    first: int = 0
    last: int = 0
    errors: tuple[Diagnostic, ...] = ()


def format_piece(piece: Chunk, path: str | None = None) -> FormattedPiece:
    """One piece of :func:`split_pieces`, formatted (comments and blank lines as in a whole
    file: pieces start where a statement starts, so nothing a layout looks at crosses them)."""
    try:
        rule_file = parse_rule_file(piece.text, path, piece.line, piece.column)
    except CompressionError as exc:
        return FormattedPiece(errors=tuple(exc.diagnostics))
    lines, first, last = _Layout(rule_file).placed_lines()
    return FormattedPiece("\n".join(lines), first, last)


def joined_pieces(pieces: Iterable[FormattedPiece]) -> str:
    """The file's canonical text from its pieces in order: one blank line between two where
    the source had a gap, as between two lines of one piece; raises CompressionError with
    every piece's syntax errors."""
    out: list[str] = []
    errors: list[Diagnostic] = []
    last = 0
    for piece in pieces:
        errors.extend(piece.errors)
        if not piece.text:
            continue
        if out:
            out.append("\n\n" if piece.first - last > 1 else "\n")
        out.append(piece.text)
        last = max(last, piece.last)
    if errors:
        raise CompressionError(errors)
    return "".join(out) + "\n" if out else ""


def format_file(rule_file: RuleFile) -> str:
    """The canonical text of an already parsed file, comments included."""
    lines = _Layout(rule_file).lines()
    return "\n".join(lines) + "\n" if lines else ""


# --- code: one function per construct ------------------------------------------------------


def render_statement(statement: Statement) -> str:
    """One statement on one line; a register block as its lines joined by newlines."""
    if isinstance(statement, Register):
        inner = [INDENT + render_target(t) for t in statement.targets]
        return "\n".join([_register_head(statement), *inner, "}"]) if inner else _empty(statement)
    if isinstance(statement, Let):
        return f"let {statement.name} = {render_value(statement.value)}"
    if isinstance(statement, Include):
        return f"include {_quote(statement.path)}"
    if isinstance(statement, Exclude):
        words = ["exclude", render_selector(statement.selector)]
        return " ".join(words + (["from", statement.mode.value] if statement.mode else []))
    if isinstance(statement, Compress):
        head = [statement.mode.value, render_selector(statement.selector)]
    elif isinstance(statement, Align):
        head = ["align", render_selector(statement.selector), "with"]
        head.append(render_selector(statement.partner))
    else:
        raise TypeError(f"not a .rules statement: {statement!r}")
    return " ".join(head + _tail(statement.settings, statement.excepts))


def _tail(settings: tuple[Setting, ...], excepts: tuple[Selector, ...]) -> list[str]:
    words = [render_setting(s) for s in settings]
    if excepts:
        words.append("except " + ", ".join(render_selector(s) for s in excepts))
    return words


def _register_head(register: Register) -> str:
    return f"register {register.mode.value} {register.type_name} {{"


def _empty(register: Register) -> str:
    return _register_head(register) + "}"


def render_target(target: RegisterTarget) -> str:
    return " ".join([target.name] + [render_setting(s) for s in target.settings])


def render_setting(setting: Setting) -> str:
    return f"{setting.key}={render_value(setting.value)}"


def render_value(value: Value) -> str:
    if isinstance(value, ListValue):
        return "[" + ", ".join(render_value(item) for item in value.items) + "]"
    if value.is_word:
        return str(value.value)
    if isinstance(value.value, str):
        return _quote(value.value)
    return _number(value.value)


def _number(number: int | float) -> str:
    if isinstance(number, int):
        return str(int(number))
    if math.isnan(number):
        raise ValueError("nan cannot be written in a .rules file")
    if math.isinf(number):
        return "1e999" if number > 0 else "-1e999"  # the literal the parser reads as infinity
    return repr(number)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_selector(selector: Selector) -> str:
    text = render_path(selector.path)
    return f"{text} in {render_path(selector.scope)}" if selector.scope is not None else text


def render_path(path: Path) -> str:
    words = [segment.text for segment in path.segments]
    if path.regex is not None:
        # The parser keeps a regex's backslashes and only unescapes \" , so escape just quotes.
        words.insert(0, 're"' + path.regex.replace('"', '\\"') + '"')
    return ".".join(words)


# --- layout: comments and blank lines --------------------------------------------------------

_line_of = attrgetter("line")


@dataclass(eq=False, slots=True)  # identity: two closing braces on one line are still two lines
class _Line:
    """One line of code in the output, the source lines it came from, and its comments."""

    text: str
    start: int
    end: int
    indent: str = ""
    leading: list[Comment] = field(default_factory=list)
    trailing: list[Comment] = field(default_factory=list)
    opens_block: bool = False
    closes_block: bool = False


class _Layout:
    """The code lines of a file with each comment attached to the line it belongs to."""

    def __init__(self, rule_file: RuleFile):
        self.code: list[_Line] = []
        self.registers: list[tuple[Register, _Line, _Line]] = []
        for statement in rule_file.statements:
            self._add(statement)
        self.end_comments: list[Comment] = []
        # Code lines by first source line, so each comment finds its line by bisection
        # (a scan per comment made formatting quadratic: 200,000 statements never finished).
        self.starts = [line.start for line in self.code]
        self.last_end = list(accumulate((line.end for line in self.code), max))
        for comment in sorted(rule_file.comments, key=_line_of):
            self._attach(comment)

    def _add(self, statement: Statement) -> None:
        span = statement.span
        if not isinstance(statement, Register):
            self.code.append(_Line(render_statement(statement), span.line, span.end_line))
            return
        head = _Line(_register_head(statement), span.line, span.line, opens_block=True)
        self.code.append(head)
        for target in statement.targets:
            text, where = render_target(target), target.span
            self.code.append(_Line(text, where.line, where.end_line, indent=INDENT))
        close = _Line("}", span.end_line, span.end_line, closes_block=True)
        self.code.append(close)
        self.registers.append((statement, head, close))

    def _attach(self, comment: Comment) -> None:
        """A trailing comment to the last code on its line; any other to the code after it."""
        holders = self._holders(comment.line)
        if comment.trailing and holders:
            holders[-1].trailing.append(comment)
        elif holders:
            holders[0].leading.append(comment)
        else:
            after = bisect_right(self.starts, comment.line)
            target = self.code[after].leading if after < len(self.code) else self.end_comments
            target.append(comment)

    def _holders(self, line: int) -> list[_Line]:
        """The code lines whose source lines include ``line``, in order.

        Code lines start in source order, so the candidates are those starting at or before
        ``line``; walking back, the walk stops where no earlier line reaches ``line``.
        """
        found = []
        index = bisect_right(self.starts, line) - 1
        while index >= 0 and self.last_end[index] >= line:
            if self.code[index].end >= line:
                found.append(self.code[index])
            index -= 1
        return found[::-1]

    def lines(self) -> list[str]:
        """The output lines, blank lines included, with no blank line at either end."""
        return self.placed_lines()[0]

    def placed_lines(self) -> tuple[list[str], int, int]:
        """The output lines, and the source lines the first came from and the last reaches."""
        self._collapse_empty_blocks()
        out: list[str] = []
        first = last = 0
        for text, start, end, blank_ok in self._entries():
            if out and blank_ok and last > 0 and start - last > 1:
                out.append("")
            first = first or start
            out.append(text)
            last = max(last, end)
        return out, first, last

    def _collapse_empty_blocks(self) -> None:
        """``register KIND T {}`` on one line when nothing stands between its braces."""
        collapsed = set()
        for register, head, close in self.registers:
            if register.targets or close.leading or (head.trailing and close.trailing):
                continue
            head.text, head.end = _empty(register), close.end
            head.trailing += close.trailing
            head.opens_block = False
            collapsed.add(id(close))  # dropped below: one pass, not a list.remove per block
        if collapsed:
            self.code = [line for line in self.code if id(line) not in collapsed]

    def _entries(self) -> Iterator[tuple[str, int, int, bool]]:
        """(text, first source line, last source line, may follow a blank) per output line."""
        after_open = False
        for line in self.code:
            leading = line.leading
            if len(line.trailing) > 1 or len(leading) > 1:
                leading = sorted(leading + line.trailing[:-1], key=_line_of)
            indent = INDENT if line.closes_block else line.indent  # comments inside the block
            for comment in leading:
                where = min(comment.line, line.start)
                yield indent + comment.text, where, where, not after_open
                after_open = False
            text = line.indent + line.text
            if line.trailing:
                text += COMMENT_GAP + line.trailing[-1].text
            end = max(line.end, line.trailing[-1].line) if line.trailing else line.end
            yield text, line.start, end, not (after_open or line.closes_block)
            after_open = line.opens_block
        for comment in self.end_comments:
            yield comment.text, comment.line, comment.line, True
