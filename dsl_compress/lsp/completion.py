"""Completion from the text before the cursor (a half-typed statement does not parse):
statement keywords, the keys a statement's kind takes and their allowed values, module types
and dotted module names from the manifest segment by segment, and let names."""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from lsprotocol import types

from dsl_compress.language.statement_split import split_statements, string_end
from dsl_compress.lsp.hover import key_row
from dsl_compress.lsp.selection import has_target, parameters
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.schema.key_sets import statement_keys
from dsl_compress.schema.keys import Statement
from dsl_compress.schema.registry import DEFAULT_REGISTRY
from dsl_compress.vocab import INPUT_PREFIX, OUTPUT_PREFIX, Mode

KEYWORDS = ("let", "include", "prune", "quantize", "distill", "align", "exclude", "register")
KINDS = tuple(m.value for m in Mode)
# The words after which a selector is written.
_SELECTOR_AFTER = frozenset({"with", "except", "in"})
_REGISTER_OPEN = re.compile(
    r"^\s*register\s+(prune|quantize|distill)\s+\w+\s*\{(?P<body>.*)$", re.S
)
Kind = types.CompletionItemKind


def complete(
    before: str, lets: Iterable[str], index: ModelIndex | None
) -> list[types.CompletionItem]:
    """What may be written at the end of ``before`` (the document's text up to the cursor)."""
    statement = current_statement(before)
    if statement is None:
        return []
    register = _REGISTER_OPEN.match(statement)
    if register is not None:
        return _in_register(Mode(register[1]), register["body"], lets)
    words, current = _words(statement)
    if not words:
        return _items(KEYWORDS, Kind.Keyword)
    head = words[0]
    if head in ("prune", "quantize", "distill", "align"):
        mode = Mode.PRUNE if head == "align" else Mode(head)
        kind = Statement.ALIGN if head == "align" else Statement.COMPRESS
        return _in_statement(mode, kind, words, current, lets, index)
    if head == "exclude":
        return _in_exclude(words, current, index)
    if head == "register":
        return _items(KINDS, Kind.Keyword) if len(words) == 1 else []
    if head == "let" and "=" in words[1:] + [current]:
        return _items(lets, Kind.Variable)
    return []


def current_statement(before: str) -> str | None:
    """The text of the statement the cursor is in, up to it ('' for a fresh one); None in a
    comment."""
    chunks = list(split_statements(before))
    if not chunks:
        return ""
    last = chunks[-1]
    end_line = last.line + last.text.count("\n")
    tail = last.text.rsplit("\n", 1)[-1]
    end_column = len(tail) + (last.column if end_line == last.line else 1)
    lines = before.split("\n")
    if (end_line, end_column) != (len(lines), len(lines[-1]) + 1):
        return ""
    return None if in_comment_or_string(tail) else last.text


def in_comment_or_string(line: str) -> bool:
    """Whether a line ends inside a comment or a string (where nothing is completed): a '#'
    outside a string, or a string left open, strings read as the splitter reads them."""
    i = 0
    while i < len(line):
        if line[i] == "#":
            return True
        if line[i] == '"':
            end = string_end(line, i)
            if end >= len(line) and not (end - 1 > i and line[end - 1] == '"'):
                return True
            i = end
            continue
        i += 1
    return False


def _words(statement: str) -> tuple[list[str], str]:
    """The finished words of a statement and the word being typed ('' after a space)."""
    words = statement.split()
    if not statement or statement[-1].isspace():
        return words, ""
    return words[:-1], words[-1]


def _in_statement(
    mode: Mode,
    kind: Statement,
    words: list[str],
    current: str,
    lets: Iterable[str],
    index: ModelIndex | None,
) -> list[types.CompletionItem]:
    if "=" in current:
        return _values(current.split("=", 1)[0], mode, lets)
    if len(words) == 1 or words[-1] in _SELECTOR_AFTER or words[-1].endswith(","):
        return _selectors(current, mode, index)
    more = ["with"] if kind is Statement.ALIGN and "with" not in words else []
    return [*_keys(mode, kind), *_items([*more, "except", "in"], Kind.Keyword)]


def _in_exclude(
    words: list[str], current: str, index: ModelIndex | None
) -> list[types.CompletionItem]:
    if len(words) == 1 or words[-1] == "in":
        return _selectors(current, None, index)
    if words[-1] == "from":
        return _items(KINDS, Kind.Keyword)
    return _items(["from", "in"], Kind.Keyword)


def _in_register(mode: Mode, body: str, lets: Iterable[str]) -> list[types.CompletionItem]:
    """Inside ``register KIND Type { ... }``: after a target's name, the keys it takes."""
    words, current = _words(re.split(r"[;\n]", body)[-1])
    if "=" in current:
        return _values(current.split("=", 1)[0], mode, lets)
    return _keys(mode, Statement.REGISTER) if words else []


def _keys(mode: Mode, kind: Statement) -> list[types.CompletionItem]:
    items = []
    for key in statement_keys(mode, kind):
        row = key_row(key, mode)
        items.append(
            types.CompletionItem(
                label=key,
                kind=Kind.Property,
                insert_text=f"{key}=",
                detail=row.rule.expected if row and row.rule else None,
                documentation=row.meaning if row else None,
            )
        )
    return items


def _values(key: str, mode: Mode, lets: Iterable[str]) -> list[types.CompletionItem]:
    """A key's allowed words (granularity: default, out_channel, ...), then the let names."""
    row = key_row(key, mode)
    choices = row.rule.choices if row is not None and row.rule is not None else ()
    return [*_items(choices, Kind.EnumMember), *_items(lets, Kind.Variable)]


def _selectors(
    current: str, mode: Mode | None, index: ModelIndex | None
) -> list[types.CompletionItem]:
    """The next segment of a selector: at its start the module types and top-level names;
    after ``a.b.`` the segments that follow ``a.b`` in the model, and ``a.b``'s targets."""
    parent, dot, _ = current.rpartition(".")
    if not dot:
        return [*_items(_types(mode, index), Kind.Class), *_items(_next(index, ""), Kind.Module)]
    if index is None:
        return []
    targets = _targets(index, parent) if parent in index.modules else []
    return [*_items(_next(index, parent + "."), Kind.Module), *_items(targets, Kind.Field)]


def _types(mode: Mode | None, index: ModelIndex | None) -> list[str]:
    modes = (mode,) if mode is not None else tuple(Mode)
    registered = {n for m in modes if m is not Mode.DISTILL for n in DEFAULT_REGISTRY[m].names()}
    own = set(index.type_names.values()) if index is not None else set()
    return sorted(registered | own)


def _next(index: ModelIndex | None, prefix: str) -> list[str]:
    """The segments that follow ``prefix`` in the model's module names, in model order."""
    if index is None:
        return []
    names = [n for n in index.modules if n.startswith(prefix) and len(n) > len(prefix)]
    return list(dict.fromkeys(n[len(prefix) :].split(".", 1)[0] for n in names))


def _targets(index: ModelIndex, module: str) -> list[str]:
    named = [*parameters(index, module), INPUT_PREFIX, OUTPUT_PREFIX]
    return [t for t in named if has_target(index, module, t)]


def _items(labels: Iterable[str], kind: types.CompletionItemKind) -> list[types.CompletionItem]:
    return [types.CompletionItem(label=label, kind=kind) for label in labels]


def text_before(lines: Sequence[str], line: int, column: int) -> str:
    """The document's text up to 1-based ``line``:``column`` (the cursor); a cursor past the
    last line stands at the end of the text."""
    if line > len(lines):
        return "\n".join(lines)
    return "\n".join([*lines[: line - 1], lines[line - 1][: column - 1] if lines else ""])
