"""Selectors of .rules statements: which modules and targets they match, and how specific they are."""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass, replace
from typing import Iterator, NamedTuple

from dsl_compress.diagnostics import CompressionError, Diagnostic, error
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.resolve.pattern_cost import (
    PatternTooCostly,
    compiled_regex,
    deadline,
    name_matcher,
)
from dsl_compress.language.syntax import Path, Segment, Selector
from dsl_compress.vocab import expand_bare_target

_TYPE_WORD = re.compile(r"[A-Z][A-Za-z0-9_]*$")
_TARGET_WORD = re.compile(r"(weight|bias|_input_\w*|_output_\w*)$")
_BRACE_SET = re.compile(r"(\{[^}]*\})")

# Specificity levels (CSS-like): exact name > pattern or regex > type; `in` adds a type bonus.
EXACT, PATTERN, TYPE = 3, 2, 1


class Match(NamedTuple):
    """A module a selector matched, and what its wildcards captured (for align partners)."""

    module: str
    captures: tuple[str, ...]


@dataclass(frozen=True)
class CompiledSelector:
    """A selector ready to match module names: the module part, the targets, the specificity."""

    type_name: str | None
    # Regular expressions as text, compiled on first match: a rule file checked without a
    # model never pays for compiling thousands of them.
    name_pattern: str | None
    scope_pattern: str | None
    targets: tuple[str, ...] | None
    specificity: tuple[int, int]
    source: Selector
    exact_name: str | None = None
    # Literal text every matching name starts with (of the name pattern, and of the `in` scope).
    prefix: str = ""
    scope_prefix: str = ""

    @property
    def type_wide(self) -> bool:
        """Whether it selects every module of one type: no name pattern, no scope."""
        return self.type_name is not None and self.scope_pattern is None

    def with_source(self, source: Selector) -> CompiledSelector:
        """This matcher for ``source``, a selector equal to its own but for spans (a plain
        copy: the dataclass's ``replace`` costs more than the compile it saves)."""
        twin = object.__new__(CompiledSelector)
        twin.__dict__.update(self.__dict__, source=source)
        return twin

    def names(self, index: ModelIndex) -> list[str]:
        """The matched modules' names (see matches), without what the wildcards captured;
        CompressionError (E224) where the pattern takes too long to match."""
        if self.exact_name is not None:
            return [m.module for m in self.matches(index)]
        names = self._candidates(index)
        until = deadline(len(names))
        with self._bounded():
            for pattern in (self.scope_pattern, self.name_pattern):
                if pattern is not None:
                    match = name_matcher(pattern)
                    names = [name for name in names if match(name, until) is not None]
        return index.first_names(names)

    def matches(self, index: ModelIndex) -> list[Match]:
        """Matches in model order; aliases collapse onto the first name of each module;
        CompressionError (E224) where the pattern takes too long to match."""
        if self.exact_name is not None:
            names = [self.exact_name] if self.exact_name in index.modules else []
            return self._matches(names, index.canonical)
        with self._bounded():
            return self._matches(self._candidates(index), index.canonical)

    def _matches(self, names: list[str], canonical: dict) -> list[Match]:
        until = deadline(len(names))
        found: dict[str, Match] = {}
        scope = None if self.scope_pattern is None else name_matcher(self.scope_pattern)
        regex = None if self.name_pattern is None else name_matcher(self.name_pattern)
        for name in names:
            if scope is not None and scope(name, until) is None:
                continue
            captures: tuple[str, ...] = ()
            if regex is not None:
                hit = regex(name, until)
                if hit is None:
                    continue
                captures = tuple(g or "" for g in hit.groups())
            first = canonical[name]
            if first not in found:
                found[first] = Match(first, captures)
        return list(found.values())

    @contextlib.contextmanager
    def _bounded(self) -> Iterator[None]:
        """PatternTooCostly as the E224 error of this selector."""
        try:
            yield
        except PatternTooCostly as exc:
            raise CompressionError([too_costly(self.source, exc)]) from None

    def _candidates(self, index: ModelIndex) -> list[str]:
        """Names that can match, in model order: those under the longest literal prefix (of
        the selector's type, if it has one)."""
        prefix = max(self.prefix, self.scope_prefix, key=len)
        if self.type_name is not None and not prefix:
            return index.by_type.get(self.type_name, [])
        return index.with_prefix(prefix, self.type_name)


def is_type_word(segment: Segment) -> bool:
    return not segment.braced and is_type_name(segment.text)


def is_type_name(word: str) -> bool:
    """A CamelCase word: a module type when it stands alone as a selector's first segment."""
    return bool(_TYPE_WORD.match(word))


def split_target(
    path: Path, target_words: frozenset[str], takes_target: bool
) -> tuple[Path, tuple[str, ...] | None]:
    """Separate the module part from a trailing target segment, if the last segment is one.

    A last segment that is one {a,b} set names targets; any other names targets when every
    word its sets expand to is one (``_input_{0,1}``), and is a module-name segment otherwise
    (``{q,k}_proj``).
    """
    segments = path.segments
    if not takes_target or not segments or (len(segments) == 1 and path.regex is None):
        return path, None
    last = segments[-1]
    named = tuple(dict.fromkeys(word for o in last.options for word in brace_expansions(o)))
    if last.braced or all(_TARGET_WORD.match(w) or w in target_words for w in named):
        if "*" not in last.text:
            return Path(segments[:-1], path.regex, path.span), expand_targets(named)
    return path, None


def brace_expansions(word: str) -> tuple[str, ...]:
    """The words a glob word's {a,b} sets stand for, in order, as a shell expands them."""
    words = [""]
    for piece in _BRACE_SET.split(word):
        options = piece[1:-1].split(",") if piece.startswith("{") else [piece]
        words = [done + option for done in words for option in options]
    return tuple(words)


def expand_targets(options: tuple[str, ...]) -> tuple[str, ...]:
    """NNI's bare prefixes name the first input/output."""
    return tuple(expand_bare_target(o) for o in options)


def compile_selector(
    selector: Selector, target_words: frozenset[str], takes_target: bool = True
) -> tuple[CompiledSelector | None, list[Diagnostic]]:
    """A matcher for one selector, or the diagnostics that say why it cannot be one."""
    module_path, targets = split_target(selector.path, target_words, takes_target)
    scope = _path_pattern(selector.scope) if selector.scope else None
    for written in (selector.scope.regex if selector.scope else None, module_path.regex):
        if written is not None:
            try:
                compiled_regex(written)
            except re.error as exc:
                return None, [_bad_regex(exc)]
    scoped = {"scope_prefix": _path_prefix(selector.scope) if selector.scope else ""}
    segments = module_path.segments
    if module_path.regex is not None:
        prefix = regex_prefix(module_path.regex)
        selected = CompiledSelector(None, module_path.regex, scope, targets, (PATTERN, 0), selector)
        return replace(selected, prefix=prefix, **scoped), []
    if len(segments) == 1 and is_type_word(segments[0]):
        level = (PATTERN, 1) if scope is not None else (TYPE, 1)
        selected = CompiledSelector(segments[0].text, None, scope, targets, level, selector)
        return replace(selected, **scoped), []
    if _is_plain(segments):
        name = ".".join(s.text for s in segments)
        level = (EXACT, 0)
        return CompiledSelector(None, None, scope, targets, level, selector, exact_name=name), []
    pattern = glob_pattern(segments)
    selected = CompiledSelector(None, pattern, scope, targets, (PATTERN, 0), selector)
    return replace(selected, prefix=glob_prefix(segments), **scoped), []


class SelectorCache:
    """compile_selector once per distinct selector in one check: selectors equal but for their
    spans (``Conv2d.weight`` on many lines) share the work, each result keeping its own source."""

    def __init__(self) -> None:
        self._done: dict[tuple, tuple[CompiledSelector | None, list[Diagnostic]]] = {}

    def compile(
        self, selector: Selector, target_words: frozenset[str], takes_target: bool = True
    ) -> tuple[CompiledSelector | None, list[Diagnostic]]:
        key = (selector, target_words, takes_target)
        done = self._done.get(key)
        if done is None:
            done = self._done[key] = compile_selector(selector, target_words, takes_target)
        compiled, found = done
        if compiled is not None and compiled.source is not selector:
            compiled = compiled.with_source(selector)
        return compiled, list(found)


def _path_pattern(path: Path) -> str:
    return path.regex if path.regex is not None else glob_pattern(path.segments)


def _path_prefix(path: Path) -> str:
    return regex_prefix(path.regex) if path.regex is not None else glob_prefix(path.segments)


def glob_prefix(segments: tuple[Segment, ...]) -> str:
    """The literal text every name a glob matches starts with ('' when it can start anyhow)."""
    prefix = ""
    for segment in segments:
        if segment.text == "**":  # zero segments too: the dot before it is optional
            return prefix[:-1]
        if segment.braced:
            return prefix
        literal = re.split(r"[*{]", segment.text, maxsplit=1)[0]
        if literal != segment.text:
            return prefix + literal
        prefix += segment.text + "."
    return prefix[:-1]


_REGEX_SYNTAX = frozenset(".^$*+?{}[]\\|()")


def regex_prefix(pattern: str) -> str:
    """Literal text every full match of ``pattern`` starts with; '' when unsure (alternation,
    flags, a class or group first). Never longer than the truth: it only narrows candidates."""
    if "|" in pattern:
        return ""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if not escaped or escaped.isalnum() or escaped == "_":
                break
            out.append(escaped)
            i += 2
            continue
        if char in _REGEX_SYNTAX:
            break
        out.append(char)
        i += 1
    if i < len(pattern) and pattern[i] in "*?{" and out:
        out.pop()  # a quantifier makes the last literal optional
    return "".join(out)


def too_costly(selector: Selector, problem: PatternTooCostly) -> Diagnostic:
    """E224: a selector whose pattern could not be matched against the model in bounded time."""
    found = error(
        "E224",
        f"the selector's pattern cannot be matched against the model's module names in "
        f"bounded time: {problem.reason}",
        hint="write it so that a name splits one way only: no repeated group ((a|a)*), fewer "
        "wildcards in one segment, or an exact name",
    )
    return replace(found, span=selector.span)


def _bad_regex(exc: re.error) -> Diagnostic:
    return error("E210", f"invalid regular expression: {exc}", subject=None, hint=None)


def _is_plain(segments: tuple[Segment, ...]) -> bool:
    return all(not s.braced and not set("*{") & set(s.text) for s in segments)


@functools.lru_cache(maxsize=65536)
def glob_pattern(segments: tuple[Segment, ...]) -> str:
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
    return "".join(parts)


def _segment_regex(segment: Segment) -> str:
    options = [_word_regex(o) for o in segment.options]
    return (
        options[0] if len(options) == 1 and not segment.braced else "(?:" + "|".join(options) + ")"
    )


def _word_regex(word: str) -> str:
    """A glob word: `*` captures within the segment, `{a,b}` inside a word is an alternative."""
    pieces = _BRACE_SET.split(word)
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
