"""The .rules syntax tree: one frozen dataclass per construct, each with a span left out of equality."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from dsl_compress.diagnostics import Span
from dsl_compress.vocab import Mode

NO_SPAN = Span(None, 0, 0, 0, 0)


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Literal:
    """A number, a string, or a bare word (out_channel, int8, true, none, or a let name)."""

    value: int | float | str
    is_word: bool = False
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ListValue:
    items: tuple["Value", ...]
    span: Span = _span()


Value = Union[Literal, ListValue]


@dataclass(frozen=True, slots=True)
class Setting:
    """``key=value`` on a statement or a registered target."""

    key: str
    value: Value
    span: Span = _span()

    @property
    def key_span(self) -> Span:
        """The span of the key alone (the setting's span starts with it)."""
        span = self.span
        return Span(span.file, span.line, span.column, span.line, span.column + len(self.key))


@dataclass(frozen=True, slots=True)
class Segment:
    """One dotted segment of a name pattern: a glob word, or a {a,b} set of alternatives."""

    options: tuple[str, ...]
    braced: bool = False
    span: Span = _span()

    @property
    def text(self) -> str:
        return "{" + ",".join(self.options) + "}" if self.braced else self.options[0]


@dataclass(frozen=True, slots=True)
class Path:
    """A dotted glob pattern, or a whole-name regex with an optional trailing segment."""

    segments: tuple[Segment, ...]
    regex: str | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Selector:
    """What a statement applies to; ``scope`` is the ``in PATTERN`` narrowing, if any."""

    path: Path
    scope: Path | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Let:
    name: str
    value: Value
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Include:
    path: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Compress:
    """``prune|quantize|distill SELECTOR key=value... [except SELECTOR, ...]``."""

    mode: Mode
    selector: Selector
    settings: tuple[Setting, ...]
    excepts: tuple[Selector, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Align:
    """``align A.t with B.u dims=[...]``: A's mask follows B's, wildcards of A substituted into B."""

    selector: Selector
    partner: Selector
    settings: tuple[Setting, ...]
    excepts: tuple[Selector, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Exclude:
    selector: Selector
    mode: Mode | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class RegisterTarget:
    name: str
    settings: tuple[Setting, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Register:
    """``register prune|quantize|distill TypeName { target key=value...; ... }``."""

    mode: Mode
    type_name: str
    targets: tuple[RegisterTarget, ...]
    span: Span = _span()


Statement = Union[Let, Include, Compress, Align, Exclude, Register]


@dataclass(frozen=True, slots=True)
class Comment:
    """A ``#`` comment, kept for the formatter; ``trailing`` when code precedes it on its line."""

    text: str
    line: int
    trailing: bool


@dataclass(frozen=True, slots=True)
class RuleFile:
    """One parsed .rules file: its statements in order, and its comments."""

    statements: tuple[Statement, ...]
    path: str | None = field(default=None, compare=False)
    comments: tuple[Comment, ...] = field(default=(), compare=False)
