"""Parsing text by driving Lark's LALR tables in one loop, building syntax nodes in the reduce actions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from lark import Lark
from lark.grammar import Rule
from lark.parsers.lalr_analysis import Shift

from dsl_compress.diagnostics import Span
from dsl_compress.token_scanner import ScannerTable, build_scanners
from dsl_compress.tree_builder import PLAIN, SPANNED

END = "$END"


class FastPathError(Exception):
    """The text is not parsed here; the Lark parser decides what is wrong with it."""


@dataclass(frozen=True)
class Reduction:
    """Reducing by one grammar rule: pop ``size`` entries, build, go to ``goto[state below]``."""

    size: int
    goto: Mapping[int, int]
    build: Callable
    spanned: bool


@dataclass(frozen=True)
class BracketNewlines:
    """The post-lexer's rule: a ``newline`` token between ``open`` and ``close`` is dropped."""

    open: str
    close: str
    newline: str


@dataclass(frozen=True)
class ParseTables:
    """Lark's LALR tables as plain dicts (shift: the next state; reduce: a tuple), and scanners."""

    start: int
    end: int
    actions: Mapping[int, Mapping[str, Any]]
    scanners: ScannerTable
    brackets: BracketNewlines


def build_tables(lark: Lark, brackets: BracketNewlines) -> ParseTables:
    """Tables from a Lark LALR parser built with a contextual lexer and no tree transformer."""
    conf = lark.parse_interactive("").parser_state.parse_conf
    states = conf.parse_table.states
    if max(states) > STATE_MASK:
        raise FastPathError(f"{len(states)} parser states do not fit in {STATE_BITS} bits")
    gotos: dict[str, dict[int, int]] = {}
    for state, row in states.items():
        for symbol, (action, arg) in row.items():
            if action is Shift and not symbol.isupper():
                gotos.setdefault(symbol, {})[state] = arg
    reductions: dict[Rule, tuple] = {}
    actions = {}
    for state, row in states.items():
        actions[state] = {
            symbol: arg if action is Shift else _reduction(arg, gotos, reductions)
            for symbol, (action, arg) in row.items()
            if symbol.isupper() or symbol == END
        }
    accepts = {state: list(row) for state, row in states.items()}
    specials = (brackets.open, brackets.close, brackets.newline)
    scanners = build_scanners(lark.lexer_conf, accepts, (brackets.newline,), specials)
    return ParseTables(conf.start_state, conf.end_state, actions, scanners, brackets)


def _reduction(rule: Rule, gotos: dict, done: dict) -> tuple:
    if rule not in done:
        build, spanned = _builder(rule)
        done[rule] = (len(rule.expansion), gotos[rule.origin.name], build, spanned)
    return done[rule]


def _builder(rule: Rule) -> tuple[Callable | None, bool]:
    """What reducing by ``rule`` makes, shaped as Lark's parse-tree builder shapes it.

    None: the children list itself (a '_' rule, spliced into its parent later).
    """
    if rule.options.keep_all_tokens:
        raise FastPathError(f"rule {rule.origin.name} keeps all tokens")
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
        raise FastPathError(f"no action builds a {name!r} node")

    return missing


def _same(kids: list) -> list:
    return kids


def _children(include: list, size: int) -> Callable[[list], list] | None:
    """Lark's child filter: '_' terminals left out, '_' rules spliced in; None: all kept as is."""
    if len(include) == size and not any(expand for _, expand in include):
        return None

    def filtered(kids: list) -> list:
        out: list = []
        for i, expand in include:
            if not expand:
                out.append(kids[i])
            elif out:
                out += kids[i]
            else:  # a left-recursive list grows in place, as in Lark: no copy per item
                out = kids[i]
        return out

    return filtered


def _expand_single(children: Callable, action: Callable) -> Callable:
    """A ``?rule`` without alias and with one child is that child."""

    def expand_single(kids: list, *span: Span) -> Any:
        kids = children(kids)
        return kids[0] if len(kids) == 1 else action(kids, *span)

    return expand_single


# One int per parse-stack entry: the LR state in the low STATE_BITS, above them where the
# entry's text starts (line << COLUMN_BITS | column), 0 for an entry that spans no token.
STATE_BITS = 12
STATE_MASK = (1 << STATE_BITS) - 1
COLUMN_BITS = 32
COLUMN_MASK = (1 << COLUMN_BITS) - 1


def drive(text: str, tables: ParseTables, path: str | None) -> tuple[tuple, list]:
    """The statements of ``text`` and its comments as (text, line, column); FastPathError if bad.

    One loop, as Lark's contextual lexer, post-lexer and LALR parser would run together:
    lex the next token with the scanner of the state the last shift left, then reduce
    and shift. Long, because every call saved here is saved per token.
    """
    scanners = tables.scanners
    by_state, ignored = scanners.by_state, scanners.ignored
    newline_types, collected = scanners.newline_types, scanners.collected
    bracket_open, bracket_close = tables.brackets.open, tables.brackets.close
    bracket_newline = tables.brackets.newline
    actions, end_state = tables.actions, tables.end
    stack, values, comments = [tables.start], [], []
    pos, size_text, line, line_start, depth = 0, len(text), 1, 0, 0
    end_line = end_col = 0  # where the last shifted token ends
    state = tables.start
    while True:
        scanner = by_state[state]
        match, special = scanner.match, scanner.special
        while True:
            if pos >= size_text:
                typ, value = END, ""
                break
            m = match(text, pos)
            if m is None:
                raise FastPathError(pos)
            typ = m.lastgroup
            stop = m.end()
            start_line, start_col = line, pos - line_start + 1
            if typ in special:
                if typ in newline_types:
                    newlines = text.count("\n", pos, stop)
                    if newlines:
                        line += newlines
                        line_start = text.rindex("\n", pos, stop) + 1
                if typ in ignored:
                    if typ in collected:
                        comments.append((text[pos:stop], start_line, start_col))
                    pos = stop
                    continue
                keywords = scanner.keywords.get(typ)
                if keywords:
                    typ = keywords.get(text[pos:stop], typ)
                if typ == bracket_open:
                    depth += 1
                elif typ == bracket_close:
                    depth = max(0, depth - 1)
                elif typ == bracket_newline and depth:
                    pos = stop
                    continue
            value = text[pos:stop]
            token_end = line, stop - line_start + 1
            pos = stop
            break
        row = actions[state]
        while True:
            act = row.get(typ)
            if act is None:
                raise FastPathError(pos)
            if act.__class__ is int:
                stack.append(act | (start_line << COLUMN_BITS | start_col) << STATE_BITS)
                values.append(value)
                end_line, end_col = token_end
                state = act
                break
            size, goto, build, spanned = act
            if size == 1:  # the commonest: replace the top entry in place
                kids = values[-1:]
                first = stack[-1] >> STATE_BITS
                below = stack[-2]
            elif size:
                kids = values[-size:]
                first = stack[-size] >> STATE_BITS or _first_start(stack[-size:])
                del values[1 - size :], stack[1 - size :]
                below = stack[-2]
            else:
                kids, first = [], 0
                values.append(None)
                stack.append(0)
                below = stack[-2]
            if build is None:
                node = kids
            elif spanned:
                if not first:
                    raise FastPathError("an empty node has no span")
                start_at = Span(path, first >> COLUMN_BITS, first & COLUMN_MASK, end_line, end_col)
                node = build(kids, start_at)
            else:
                node = build(kids)
            state = goto[below & STATE_MASK]
            stack[-1] = state | first << STATE_BITS
            values[-1] = node
            if state == end_state:
                if typ != END:
                    raise FastPathError("the start rule ends before the text")
                return node, comments
            row = actions[state]


def _first_start(entries: list[int]) -> int:
    """Where the first entry that spans a token starts (0: none does)."""
    return next((e >> STATE_BITS for e in entries if e >> STATE_BITS), 0)
