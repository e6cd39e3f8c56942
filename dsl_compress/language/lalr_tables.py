"""Lark's LALR tables and contextual scanners as plain lists, with a syntax-node builder per rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

from lark import Lark
from lark.grammar import Rule
from lark.parsers.lalr_analysis import Reduce, Shift

from dsl_compress.diagnostics import Span
from dsl_compress.language.token_scanner import ScannerTable, UnsupportedGrammar, build_scanners
from dsl_compress.language.tree_builder import PLAIN, SPANNED

END = "$END"


class Reduction(NamedTuple):
    """Reducing by one grammar rule: pop ``size`` entries, build, go to ``goto[state below]``.

    ``build`` gets the popped values (and the node's span if ``spanned``); None: the values
    themselves are the node (a '_' rule, spliced into its parent later).
    """

    size: int
    goto: Sequence[int | None]
    build: Callable | None
    spanned: bool


@dataclass(frozen=True)
class BracketNewlines:
    """The post-lexer's rule: a ``newline`` token between ``open`` and ``close`` is dropped."""

    open: str
    close: str
    newline: str


@dataclass(frozen=True)
class ParseTables:
    """Lark's LALR tables as lists indexed by state, with each state's scanner.

    ``rows[state]`` is (match, special, keywords, actions) of the state's scanner (see
    StateScanner) and its actions: a terminal to the next state (shift) or to ``~i``
    (reduce by ``reductions[i]``).
    """

    start: int
    end: int
    rows: Sequence[tuple | None]
    reductions: Sequence[Reduction]
    scanners: ScannerTable
    brackets: BracketNewlines


def build_tables(lark: Lark, brackets: BracketNewlines) -> ParseTables:
    """Tables of a Lark LALR parser with a contextual lexer, ``brackets`` its post-lexer."""
    conf = lark.parse_interactive("").parser_state.parse_conf
    states = conf.parse_table.states
    nonterminals = {rule.origin.name for rule in lark.rules}
    rules = sorted(
        {arg for row in states.values() for action, arg in row.values() if action is Reduce},
        key=str,
    )
    number = {rule: i for i, rule in enumerate(rules)}
    specials = (brackets.open, brackets.close, brackets.newline)
    accepts = {state: list(row) for state, row in states.items()}
    scanners = build_scanners(lark.lexer_conf, accepts, (brackets.newline,), specials)
    rows: list = [None] * (max(states) + 1)
    gotos: dict[str, list] = {name: [None] * len(rows) for name in nonterminals}
    for state, row in states.items():
        actions = {}
        for symbol, (action, arg) in row.items():
            if symbol in nonterminals:
                gotos[symbol][state] = arg
            else:
                actions[symbol] = arg if action is Shift else ~number[arg]
        scanner = scanners.by_state[state]
        rows[state] = (scanner.match, scanner.special, scanner.keywords, actions)
    reductions = [_reduction(rule, gotos[rule.origin.name]) for rule in rules]
    return ParseTables(conf.start_state, conf.end_state, rows, reductions, scanners, brackets)


def _reduction(rule: Rule, goto: list) -> Reduction:
    build, spanned = _builder(rule)
    return Reduction(len(rule.expansion), goto, build, spanned)


def _builder(rule: Rule) -> tuple[Callable | None, bool]:
    """What reducing by ``rule`` makes, shaped as Lark's parse-tree builder shapes it."""
    if rule.options.keep_all_tokens:
        raise UnsupportedGrammar(f"rule {rule.origin.name} keeps all tokens")
    include = [
        (i, not sym.is_term and sym.name.startswith("_"))
        for i, sym in enumerate(rule.expansion)
        if not (sym.is_term and sym.filter_out)
    ]
    children = _children(include, len(rule.expansion))
    name = str(rule.alias or rule.origin.name)
    spanned = name in SPANNED
    action = SPANNED.get(name) or PLAIN.get(name) or _no_action(name)
    if rule.origin.name.startswith("_"):
        return children, False
    if rule.options.expand1 and not rule.alias:
        return _expand_single(children or _same, action), spanned
    if children is None:
        return action, spanned
    if spanned:
        return (lambda kids, span: action(children(kids), span)), True
    return (lambda kids: action(children(kids))), False


def _no_action(name: str) -> Callable:
    def missing(kids: list, *span: Span) -> Any:
        raise UnsupportedGrammar(f"no action builds a {name!r} node")

    return missing


def _same(kids: list) -> list:
    return kids


def _children(include: list, size: int) -> Callable[[list], list] | None:
    """Lark's child filter: '_' terminals left out, '_' rules spliced in; None: all kept as is.

    A '_' rule's value is the list of its children; a left-recursive one (``__x: __x A``)
    grows that list in place, as Lark's filter does, rather than copying it per item.
    """
    kept = [i for i, _ in include]
    expanded = [i for i, expand in include if expand]
    if kept == list(range(size)):
        if not expanded:
            return None
        if expanded == [0]:
            return _grow_by_rest
        if expanded == kept:
            return _splice_all
        if expanded == [size - 1]:
            return _splice_last
    if not kept:
        return lambda kids: []

    def filtered(kids: list) -> list:
        out: list = []
        for i, expand in include:
            if not expand:
                out.append(kids[i])
            elif out:
                out += kids[i]
            else:
                out = kids[i]
        return out

    return filtered


def _grow_by_rest(kids: list) -> list:
    out = kids[0]
    out += kids[1:]
    return out


def _splice_all(kids: list) -> list:
    out = kids[0]
    for more in kids[1:]:
        out += more
    return out


def _splice_last(kids: list) -> list:
    out = kids[:-1]
    out += kids[-1]
    return out


def _expand_single(children: Callable, action: Callable) -> Callable:
    """A ``?rule`` without alias and with one child is that child."""

    def expand_single(kids: list, *span: Span) -> Any:
        kids = children(kids)
        return kids[0] if len(kids) == 1 else action(kids, *span)

    return expand_single
