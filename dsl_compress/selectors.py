"""Selectors of .rules statements: which modules and targets they match, and how specific they are."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from dsl_compress.diagnostics import Diagnostic, error
from dsl_compress.selection import ModelIndex
from dsl_compress.syntax import Path, Segment, Selector

_TYPE_WORD = re.compile(r"[A-Z][A-Za-z0-9_]*$")
_TARGET_WORD = re.compile(r"(weight|bias|_input_\w*|_output_\w*)$")

# Specificity levels (CSS-like): exact name > pattern or regex > type; `in` adds a type bonus.
EXACT, PATTERN, TYPE = 3, 2, 1


@dataclass(frozen=True)
class Match:
    """A module a selector matched, and what its wildcards captured (for align partners)."""

    module: str
    captures: tuple[str, ...]


@dataclass(frozen=True)
class CompiledSelector:
    """A selector ready to match module names: the module part, the targets, the specificity."""

    type_name: str | None
    name_regex: re.Pattern | None
    scope_regex: re.Pattern | None
    targets: tuple[str, ...] | None
    specificity: tuple[int, int]
    source: Selector
    exact_name: str | None = None

    def matches(self, index: ModelIndex) -> list[Match]:
        """Matches in model order; aliases collapse onto the first name of each module."""
        if self.exact_name is not None:
            names: Iterable[str] = [self.exact_name] if self.exact_name in index.modules else []
        elif self.type_name is not None:
            names = (n for n, t in index.type_names.items() if t == self.type_name)
        else:
            names = index.modules
        found: dict[str, Match] = {}
        for name in names:
            match = self._match(name)
            if match is not None and index.canonical[name] not in found:
                found[index.canonical[name]] = Match(index.canonical[name], match)
        return list(found.values())

    def _match(self, name: str) -> tuple[str, ...] | None:
        if self.scope_regex is not None and not self.scope_regex.fullmatch(name):
            return None
        if self.name_regex is None:
            return ()
        hit = self.name_regex.fullmatch(name)
        return None if hit is None else tuple(g or "" for g in hit.groups())


def is_type_word(segment: Segment) -> bool:
    return not segment.braced and bool(_TYPE_WORD.match(segment.text))


def split_target(
    path: Path, target_words: frozenset[str], takes_target: bool
) -> tuple[Path, tuple[str, ...] | None]:
    """Separate the module part from a trailing target segment, if the last segment is one."""
    segments = path.segments
    if not takes_target or not segments or (len(segments) == 1 and path.regex is None):
        return path, None
    last = segments[-1]
    if last.braced or all(_TARGET_WORD.match(o) or o in target_words for o in last.options):
        if "*" not in last.text:
            return Path(segments[:-1], path.regex, path.span), expand_targets(last.options)
    return path, None


def expand_targets(options: tuple[str, ...]) -> tuple[str, ...]:
    """NNI's bare prefixes name the first input/output."""
    return tuple(o + "0" if o in ("_input_", "_output_") else o for o in options)


def compile_selector(
    selector: Selector, target_words: frozenset[str], takes_target: bool = True
) -> tuple[CompiledSelector | None, list[Diagnostic]]:
    """A matcher for one selector, or the diagnostics that say why it cannot be one."""
    module_path, targets = split_target(selector.path, target_words, takes_target)
    try:
        scope = _glob_regex(selector.scope.segments) if selector.scope else None
        if selector.scope is not None and selector.scope.regex is not None:
            scope = re.compile(selector.scope.regex)
    except re.error as exc:
        return None, [_bad_regex(exc)]
    segments = module_path.segments
    if module_path.regex is not None:
        try:
            regex = re.compile(module_path.regex)
        except re.error as exc:
            return None, [_bad_regex(exc)]
        return CompiledSelector(None, regex, scope, targets, (PATTERN, 0), selector), []
    if len(segments) == 1 and is_type_word(segments[0]):
        level = (PATTERN, 1) if scope is not None else (TYPE, 1)
        return CompiledSelector(segments[0].text, None, scope, targets, level, selector), []
    if _is_plain(segments):
        name = ".".join(s.text for s in segments)
        level = (EXACT, 0)
        return CompiledSelector(None, None, scope, targets, level, selector, exact_name=name), []
    return CompiledSelector(None, _glob_regex(segments), scope, targets, (PATTERN, 0), selector), []


def _bad_regex(exc: re.error) -> Diagnostic:
    return error("E210", f"invalid regular expression: {exc}", subject=None, hint=None)


def _is_plain(segments: tuple[Segment, ...]) -> bool:
    return all(not s.braced and not set("*{") & set(s.text) for s in segments)


def _glob_regex(segments: tuple[Segment, ...]) -> re.Pattern:
    """`*` within a segment, `**` zero or more whole segments, {a,b} alternatives; all captured."""
    parts: list[str] = []
    for i, segment in enumerate(segments):
        dot = r"\." if i else ""
        if segment.text == "**":
            parts.append(
                f"(?:{dot}(.*))?" if i else r"(?:(.*)\.)?" if len(segments) > 1 else "(.*)"
            )
            continue
        if i and segments[i - 1].text == "**" and i - 1 == 0:
            dot = ""
        parts.append(dot + _segment_regex(segment))
    return re.compile("".join(parts))


def _segment_regex(segment: Segment) -> str:
    options = [_word_regex(o) for o in segment.options]
    return (
        options[0] if len(options) == 1 and not segment.braced else "(?:" + "|".join(options) + ")"
    )


def _word_regex(word: str) -> str:
    """A glob word: `*` captures within the segment, `{a,b}` inside a word is an alternative."""
    pieces = re.split(r"(\{[^}]*\})", word)
    out = []
    for piece in pieces:
        if piece.startswith("{"):
            out.append("(?:" + "|".join(_word_regex(o) for o in piece[1:-1].split(",")) + ")")
        else:
            out.append("".join("([^.]*)" if c == "*" else re.escape(c) for c in piece))
    return "".join(out)


def render_partner(path: Path, captures: tuple[str, ...]) -> str | None:
    """The partner module name: the path with A's captures put into its wildcards, in order.

    Returns None when the partner has more wildcards than A captured.
    """
    values = iter(captures)
    pieces: list[str] = []
    for segment in path.segments:
        if segment.braced or "{" in segment.text:
            return None
        if segment.text == "**":
            value = next(values, None)
            if value is None:
                return None
            if value:
                pieces.append(value)
            continue
        text = ""
        for char in segment.text:
            if char == "*":
                value = next(values, None)
                if value is None:
                    return None
                text += value
            else:
                text += char
        pieces.append(text)
    return ".".join(pieces)
