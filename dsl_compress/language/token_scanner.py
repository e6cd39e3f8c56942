"""Token scanners per LALR state, built from Lark's terminal definitions as its contextual lexer builds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Mapping

from lark.lexer import PatternRE, PatternStr, TerminalDef


class UnsupportedGrammar(Exception):
    """The grammar uses a Lark feature that the fast path does not reproduce exactly."""


@dataclass(frozen=True)
class StateScanner:
    """One state's terminals as one regex, in Lark's order; ``keywords`` retypes a match.

    ``keywords[NAME]["prune"] == "PRUNE"``: a keyword string that a regex terminal also
    matches is found through that terminal, as Lark's ``UnlessCallback`` does.
    """

    match: Callable
    keywords: Mapping[str, Mapping[str, str]]
    special: frozenset[str]


@dataclass(frozen=True)
class ScannerTable:
    """The scanners of every parser state and what the lexer does with each terminal."""

    by_state: Mapping[int, StateScanner]
    ignored: frozenset[str]
    newline_types: frozenset[str]
    collected: frozenset[str]


def build_scanners(
    lexer_conf,
    accepts: Mapping[int, Collection[str]],
    always_accept: Collection[str],
    special: Collection[str] = (),
) -> ScannerTable:
    """Scanners for every state; ``accepts`` are the symbols of each state's parse-table row.

    A scanner's ``special`` types need more than a shift: ignored, holding newlines, retyped
    by a keyword, or named in ``special`` (what the post-lexer looks at).
    """
    if lexer_conf.use_bytes:
        raise UnsupportedGrammar("byte input")
    extra = set(lexer_conf.ignore) | set(always_accept)
    newline_types = frozenset(
        t.name for t in lexer_conf.terminals if _may_hold_newline(t.pattern.to_regexp())
    )
    special_types = newline_types | extra | set(special)
    shared: dict[frozenset, StateScanner] = {}
    by_state = {}
    for state, symbols in accepts.items():
        key = frozenset(symbols)
        if key not in shared:
            names = (key | extra) & lexer_conf.terminals_by_name.keys()
            terminals = [lexer_conf.terminals_by_name[n] for n in names]
            shared[key] = _scanner(terminals, lexer_conf, special_types)
        by_state[state] = shared[key]
    return ScannerTable(
        by_state,
        frozenset(lexer_conf.ignore),
        newline_types,
        frozenset(lexer_conf.callbacks),
    )


def _scanner(terminals: list[TerminalDef], lexer_conf, special: frozenset) -> StateScanner:
    terminals = sorted(terminals, key=_lark_order)
    keywords, embedded = _keywords(terminals, lexer_conf)
    kept = [t for t in terminals if t not in embedded]
    alternation = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in kept)
    regex = lexer_conf.re_module.compile(alternation, lexer_conf.g_regex_flags)
    return StateScanner(regex.match, keywords, frozenset(special | keywords.keys()))


def _lark_order(terminal: TerminalDef) -> tuple:
    """Which terminal wins at a position: Lark's BasicLexer sorts its alternatives so."""
    pattern = terminal.pattern
    return (-terminal.priority, -pattern.max_width, -len(pattern.value), terminal.name)


def _keywords(terminals: list[TerminalDef], lexer_conf) -> tuple[dict, set]:
    """Strings a regex terminal matches whole, per regex terminal (Lark's ``_create_unless``)."""
    re_, flags = lexer_conf.re_module, lexer_conf.g_regex_flags
    strings = [t for t in terminals if isinstance(t.pattern, PatternStr)]
    keywords: dict[str, dict[str, str]] = {}
    embedded = set()
    for regex in (t for t in terminals if isinstance(t.pattern, PatternRE)):
        for string in (s for s in strings if s.priority == regex.priority):
            text = string.pattern.value
            found = re_.match(regex.pattern.to_regexp(), text, flags)
            if not found or found.group(0) != text:
                continue
            if string.pattern.flags or flags:
                raise UnsupportedGrammar(f"keyword {string.name} has regex flags")
            keywords.setdefault(regex.name, {}).setdefault(text, string.name)
            if string.pattern.flags <= regex.pattern.flags:
                embedded.add(string)
    return keywords, embedded


def _may_hold_newline(regexp: str) -> bool:
    """Lark's test for terminals whose tokens it scans for line breaks."""
    return (
        "\n" in regexp
        or "\\n" in regexp
        or "\\s" in regexp
        or "[^" in regexp
        or ("(?s" in regexp and "." in regexp)
    )
