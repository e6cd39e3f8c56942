"""config_list JSON text read with the span of every value, so that a problem at
``config_list[2].sparse_ratio`` is shown at its file:line:col."""

from __future__ import annotations

import bisect
import json
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
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        span = Span(file, exc.lineno, exc.colno, exc.lineno, exc.colno + 1)
        message = f"'{file or '<string>'}' is not JSON: {exc.msg}"
        raise CompressionError([Diagnostic("C101", Severity.ERROR, message, span=span)]) from None
    scanner = _Scanner(text, file)
    scanner.value(scanner.skip(0), (), None)
    return LocatedJson(data, scanner.spans)


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
