"""config_list JSON text read with the span of every value, so that a problem at
``config_list[2].sparse_ratio`` is shown at its file:line:col."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from dsl_compress.diagnostics import CompressionError, Diagnostic, Severity, Span
from dsl_compress.schema.checks import subject_of

JsonPath = tuple[Union[str, int], ...]

_WHITESPACE = " \t\n\r"


@dataclass(frozen=True)
class LocatedJson:
    """Parsed JSON and, by path from the root, the span of each value (a member's from its key)."""

    data: Any
    spans: Mapping[JsonPath, Span] = field(repr=False)

    def subject_spans(self, root: JsonPath, name: str = "config_list") -> dict[str, Span]:
        """Spans by diagnostic subject (``config_list[0].op_names``) for the list at ``root``."""
        out: dict[str, Span] = {}
        for path, span in self.spans.items():
            if path[: len(root)] == root:
                out[_subject(name, path[len(root) :])] = span
        return out


def parse_located_json(text: str, file: str | None) -> LocatedJson:
    """JSON text with spans; invalid JSON is one C101 diagnostic at the place it breaks."""
    name = file or "<string>"
    deep = too_deep(text)
    if deep is not None:
        span = Span(file, *deep, deep[0], deep[1] + 1)
        message = f"'{name}' nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
        raise CompressionError([Diagnostic("C101", Severity.ERROR, message, span=span)])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        span = Span(file, exc.lineno, exc.colno, exc.lineno, exc.colno + 1)
        message = f"'{name}' is not JSON: {exc.msg}"
        raise CompressionError([Diagnostic("C101", Severity.ERROR, message, span=span)]) from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        message = f"'{name}' holds a value that cannot be read: {exc}"
        raise CompressionError(
            [Diagnostic("C101", Severity.ERROR, message, subject=name)]
        ) from None
    scanner = _Scanner(text, file)
    scanner.value(scanner.skip(0), (), None)
    return LocatedJson(data, scanner.spans)


# Deeper JSON overflows the stack of json.loads (10^5 levels raised RecursionError); a
# config_list, a manifest, a safetensors header or index is a few levels deep.
MAX_JSON_DEPTH = 64
_JSON_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def bounded_json(text: str, **options: Any) -> Any:
    """``json.loads`` for a file from outside: nesting deeper than MAX_JSON_DEPTH is a
    ValueError naming where it starts, like json's own errors (json.loads would overflow the
    stack), so every reader that handles invalid JSON handles it too."""
    deep = too_deep(text)
    if deep is not None:
        raise ValueError(
            f"nests arrays and objects deeper than {MAX_JSON_DEPTH} levels "
            f"at line {deep[0]} column {deep[1]}"
        )
    return json.loads(text, **options)


def too_deep(text: str) -> tuple[int, int] | None:
    """The (line, column) of the first bracket nested deeper than MAX_JSON_DEPTH, or None."""
    depth = 0
    for match in _JSON_BRACKETS.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                at = match.start()
                line_start = text.rfind("\n", 0, at) + 1
                return text.count("\n", 0, at) + 1, at - line_start + 1
        elif char in "]}":
            depth -= 1
    return None


def subject_span(spans: Mapping[str, Span], subject: str | None) -> Span | None:
    """The span of ``subject`` or of the closest enclosing value that has one."""
    while subject:
        if subject in spans:
            return spans[subject]
        cut = max(subject.rfind("."), subject.rfind("["))
        subject = subject[:cut] if cut > 0 else ""
    return None


def _subject(name: str, path: JsonPath) -> str:
    for part in path:
        name = f"{name}[{part}]" if isinstance(part, int) else subject_of(name, part)
    return name


class _Scanner:
    """Walks text that json.loads accepted, recording where each value starts and ends."""

    def __init__(self, text: str, file: str | None):
        self.text, self.file = text, file
        self.line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        self.decoder = json.JSONDecoder()
        self.spans: dict[JsonPath, Span] = {}

    def skip(self, at: int) -> int:
        while at < len(self.text) and self.text[at] in _WHITESPACE:
            at += 1
        return at

    def value(self, at: int, path: JsonPath, start: int | None) -> int:
        """Scan the value at ``at``; record its span from ``start`` (its key) or its own start."""
        char = self.text[at]
        if char == "{":
            end = self._members(at, path)
        elif char == "[":
            end = self._elements(at, path)
        else:
            end = self.decoder.raw_decode(self.text, at)[1]
        self.spans[path] = self._span(at if start is None else start, end)
        return end

    def _members(self, at: int, path: JsonPath) -> int:
        at = self.skip(at + 1)
        while self.text[at] != "}":
            key, after_key = self.decoder.raw_decode(self.text, at)
            colon = self.skip(after_key)
            end = self.value(self.skip(colon + 1), (*path, key), at)
            at = self._next(end, "}")
        return at + 1

    def _elements(self, at: int, path: JsonPath) -> int:
        at, index = self.skip(at + 1), 0
        while self.text[at] != "]":
            end = self.value(at, (*path, index), None)
            at, index = self._next(end, "]"), index + 1
        return at + 1

    def _next(self, end: int, closer: str) -> int:
        at = self.skip(end)
        return at if self.text[at] == closer else self.skip(at + 1)

    def _span(self, start: int, end: int) -> Span:
        line, column = self._position(start)
        end_line, end_column = self._position(end)
        return Span(self.file, line, column, end_line, end_column)

    def _position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1
