"""Parsing text by driving Lark's LALR tables in one loop, building syntax nodes in the reduce actions."""

from __future__ import annotations

from dsl_compress.diagnostics import Span
from dsl_compress.language.lalr_tables import END, ParseTables

# Beyond these the parse is left to Lark: a stack this deep is nested lists of lists, and
# the stacks met are learnt one by one (see Configurations).
MAX_DEPTH = 100
MAX_CONFIGURATIONS = 20_000
ACCEPT = -1

# Where a stack entry's text starts, as one int: line << COLUMN_BITS | column (0: no token).
COLUMN_BITS = 32
COLUMN_MASK = (1 << COLUMN_BITS) - 1


class FastPathError(Exception):
    """The text is not parsed here; the Lark parser decides what is wrong with it."""


class Configurations:
    """The parser stacks (tuples of LR states) met in one parse, numbered as they come.

    For each: its scanner, and per lookahead terminal the reductions the LR tables make
    then the stack that shifting the terminal leaves. A file repeats a few stack shapes
    (those between statements above all), so the loop looks up one transition per token
    instead of one action and one goto per reduction.
    """

    def __init__(self, tables: ParseTables):
        self.tables = tables
        self.numbers: dict[tuple, int] = {}
        self.stacks: list[tuple] = []
        self.entries: list[tuple] = []  # (match, special, keywords, transitions)

    def number(self, stack: tuple) -> int:
        found = self.numbers.get(stack)
        if found is not None:
            return found
        if len(stack) > MAX_DEPTH or len(self.stacks) >= MAX_CONFIGURATIONS:
            raise FastPathError("too deep or too varied for the fast path")
        match, special, keywords, _ = self.tables.rows[stack[-1]]
        self.numbers[stack] = len(self.stacks)
        self.stacks.append(stack)
        self.entries.append((match, special, keywords, {}))
        return len(self.stacks) - 1

    def learn(self, number: int, terminal: str) -> tuple[tuple, int]:
        """Reductions (size, build, spanned) then the next configuration, or ACCEPT."""
        tables = self.tables
        states, done = list(self.stacks[number]), []
        while True:
            act = tables.rows[states[-1]][3].get(terminal)
            if act is None:
                raise FastPathError(f"{terminal} is not expected here")
            if act >= 0:
                states.append(act)
                step = tuple(done), self.number(tuple(states))
                break
            size, goto, build, spanned = tables.reductions[~act]
            del states[len(states) - size :]
            states.append(goto[states[-1]])
            done.append((size, build, spanned))
            if states[-1] == tables.end:
                if terminal != END:
                    raise FastPathError("the start rule ends before the text")
                step = tuple(done), ACCEPT
                break
        self.entries[number][3][terminal] = step
        return step


def drive(text: str, tables: ParseTables, path: str | None) -> tuple[tuple, list]:
    """The statements of ``text`` and its comments as (text, line, column); FastPathError if bad.

    One loop, as Lark's contextual lexer, post-lexer and LALR parser would run together:
    lex the next token with the scanner of the state the last shift left, then reduce
    and shift. Long, because every operation saved here is saved per token.
    """
    scanners = tables.scanners
    ignored, newline_types, collected = scanners.ignored, scanners.newline_types, scanners.collected
    bracket_open, bracket_close = tables.brackets.open, tables.brackets.close
    bracket_newline = tables.brackets.newline
    configurations = Configurations(tables)
    entries, learn = configurations.entries, configurations.learn
    config = configurations.number((tables.start,))
    values, starts, comments = [], [], []  # starts: where each value's text starts
    columns, mask, accept = COLUMN_BITS, COLUMN_MASK, ACCEPT
    new_object, set_attribute = object.__new__, object.__setattr__
    # A position is line << columns | column; offset turns a text index into the position
    # on the current line. end: where the last shifted token ends.
    pos, line, offset, depth, end = 0, 1, 1 << columns | 1, 0, 0
    while True:
        match, special, keywords, transitions = entries[config]
        while True:
            m = match(text, pos)
            if m is None:
                if pos < len(text):
                    raise FastPathError(pos)
                typ = END
                break
            typ = m.lastgroup
            stop = m.end()
            start = pos + offset
            if typ in special:
                if typ in newline_types:
                    newlines = text.count("\n", pos, stop)
                    if newlines:
                        line += newlines
                        offset = (line << columns) - text.rindex("\n", pos, stop)
                if typ in ignored:
                    if typ in collected:
                        comments.append((text[pos:stop], start >> columns, start & mask))
                    pos = stop
                    continue
                if typ in keywords:
                    typ = keywords[typ].get(text[pos:stop], typ)
                if typ == bracket_open:
                    depth += 1
                elif typ == bracket_close:
                    depth = max(0, depth - 1)
                elif typ == bracket_newline and depth:
                    pos = stop
                    continue
            break
        reductions, config = transitions.get(typ) or learn(config, typ)
        for size, build, spanned in reductions:
            if size == 1:  # the commonest: replace the top entry in place
                kids = values[-1:]
                first = starts[-1]
            elif size:
                kids = values[-size:]
                first = starts[-size] or next((s for s in starts[-size:] if s), 0)
                del values[1 - size :], starts[1 - size :]
            else:
                kids, first = [], 0
                values.append(None)
                starts.append(0)
            if build is None:
                node = kids
            elif spanned:
                if not first:
                    raise FastPathError("an empty node has no span")
                # A Span made as copy and pickle make one, without the frozen __init__'s
                # five guarded setattrs (a tenth of the drive): same class, same fields.
                span = new_object(Span)
                set_attribute(
                    span,
                    "__dict__",
                    {
                        "file": path,
                        "line": first >> columns,
                        "column": first & mask,
                        "end_line": end >> columns,
                        "end_column": end & mask,
                    },
                )
                node = build(kids, span)
            else:
                node = build(kids)
            values[-1] = node
            starts[-1] = first
        if config == accept:
            return values[-1], comments
        values.append(m[0])
        starts.append(start)
        pos = stop
        end = stop + offset
