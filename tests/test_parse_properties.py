"""Properties of the parser over generated text: the statement-by-statement recovery builds what the
whole-file parse builds, spans cover their statements, and any text gives a tree or diagnostics."""

from __future__ import annotations

import dataclasses
import random
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path as FilePath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_compress.codes import CODES
from dsl_compress.diagnostics import CompressionError, Span
from dsl_compress.language.format import format_file
from dsl_compress.language.lark_parser import MAX_LIST_DEPTH
from dsl_compress.language.parse import parse_by_statement, parse_rule_file
from dsl_compress.language.syntax import ListValue, Literal, Segment, Setting
from test_formatter import PLAIN_CHARS, messy_spelling, rule_files

ROOT = FilePath(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from rules_workloads import rules_text  # noqa: E402

SOURCES = sorted((ROOT / "tests" / "data").rglob("*.rules")) + sorted(
    (ROOT / "rules").rglob("*.rules")
)
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)
SYNTAX_CODES = {"E101", "E102", "E103"}


def dump(node) -> object:
    """Everything a node holds, spans and comments included (equality leaves them out)."""
    if dataclasses.is_dataclass(node):
        fields = dataclasses.fields(node)
        return (type(node).__name__, *((f.name, dump(getattr(node, f.name))) for f in fields))
    if isinstance(node, tuple):
        return tuple(dump(item) for item in node)
    return (type(node).__name__, node)


def span_text(text: str, span: Span) -> str:
    """The source a span covers."""
    starts = [0]
    for line in text.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    return text[
        starts[span.line - 1] + span.column - 1 : starts[span.end_line - 1] + span.end_column - 1
    ]


def check_parser(text: str, path: str | None = "x.rules") -> None:
    """A good text: the recovery path builds the same nodes, spans and comments, and each
    statement's span holds text that parses back to that statement. A bad one: diagnostics of
    syntax codes, each pointing into the text."""
    try:
        rule_file = parse_rule_file(text, path)
    except CompressionError as exc:
        check_diagnostics(exc, text)
        return
    assert dump(parse_by_statement(text, path)) == dump(rule_file)
    assert rule_file.path == path and parse_by_statement(text, path).path == path
    for statement in rule_file.statements:
        assert statement.span.file == path
        assert parse_rule_file(span_text(text, statement.span)).statements == (statement,)
    for segment in nodes_in(rule_file.statements, Segment):
        written = span_text(text, segment.span)  # a set may be spelt with spaces: { a , b }
        assert "".join(written.split()) == segment.text, (written, segment)
    for setting in nodes_in(rule_file.statements, Setting):
        check_setting_spans(text, setting)


def nodes_in(node, kind: type) -> list:
    """Every node of ``kind`` in a tree, outermost first (a path segment of a dotted run, one
    token, and a setting written without blanks, one token, each have their own span)."""
    if isinstance(node, kind):
        return [node]
    if isinstance(node, tuple):
        return [found for item in node for found in nodes_in(item, kind)]
    if dataclasses.is_dataclass(node):
        fields = dataclasses.fields(node)
        return [found for f in fields for found in nodes_in(getattr(node, f.name), kind)]
    return []


def check_setting_spans(text: str, setting: Setting) -> None:
    """A setting's span runs from its key to the end of its value; a value's holds the value."""
    written, value = span_text(text, setting.span), setting.value
    value_text = span_text(text, value.span)
    assert written.startswith(setting.key) and written.endswith(value_text), (written, setting)
    between = written[len(setting.key) : len(written) - len(value_text)]
    assert re.sub(r"\\\r?\n", "", between).strip(" \t\f") == "=", (written, setting)
    if isinstance(value, Literal):
        assert parse_rule_file(f"let v = {value_text}").statements[0].value == value


def check_diagnostics(exc: CompressionError, text: str) -> None:
    assert exc.diagnostics
    lines = text.split("\n")
    for diagnostic in exc.diagnostics:
        assert diagnostic.code in SYNTAX_CODES & CODES.keys()
        assert 1 <= diagnostic.span.line <= len(lines)
        assert diagnostic.span.column >= 1 and diagnostic.span.end_column > diagnostic.span.column


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_rules_file_of_the_repository(source: FilePath):
    check_parser(source.read_text(encoding="utf-8"), str(source))


@pytest.mark.parametrize("statements", [0, 1, 2, 50, 2000])
def test_generated_benchmark_rules(statements: int):
    check_parser(rules_text(statements, seed=statements))


EDGE_CASES = [
    "",
    "\n\n",
    "# only a comment",
    "let a = 1",  # no final newline
    "let a = 1\r\nlet b = [1,\r\n 2]\r\n",
    "let a = 1 \\\n  # not a comment of a\nlet b = 2\f\n",
    "prune fc.weight \\\r\n  sparse_ratio=0.5  # trailing\n",
    "let l = [\n  1,  # one\n  [2, 3,],\n]\nlet e = []\n",
    'include "a\\"b.rules"; let s = "x\x85y\u2028z"\n',
    'prune re"a\\.b[0-9]*".weight in layer{1,2}.** sparse_ratio=ratio except x.*, y\n',
    "align bn*.weight with conv*.weight dims=[0] except head.*\n",
    "exclude head.* from quantize; exclude tail\n",
    "register prune M {\n  p1 granularity=[1,-1]\n\n  ; _output_ align=p1\n}\n",
    "register quantize M { }\nregister distill M {\n}\n",
    "let prune = in\nlet with = 1.5e-3\nprune inx.withy.fromz sparse_ratio=+.5\n",
    "prune a.*.{b,c}d.** e=-3 f=1e16 g=-0\n",
    "prune Conv2d.weight\tsparse_ratio=0.5\t#\ttab\n",
    "quantize Linear.{weight,_input_,_output_} quant_dtype=int8;;;\n",
    ";\n;\n",
    "# a\n\n# b\nlet x = 1 # c",
]

BAD_CASES = [
    "prune",
    "let = 1",
    "let a = [1, 2",
    "let a = 1]",
    'include "unterminated\n',
    "prune a.weight sparse_ratio=0.5 €\n",
    "align a.weight conv.weight\n",
    "register prune M { p1 }} \n",
    "prune with.weight\n",
    "let a = 1 2\n",
    "exclude a from align\n",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases(text: str):
    check_parser(text)


@pytest.mark.parametrize("text", BAD_CASES)
def test_bad_cases(text: str):
    with pytest.raises(CompressionError):
        parse_rule_file(text)
    check_parser(text)


def test_a_statement_the_whole_file_parse_rejects_may_parse_alone():
    """A carriage return before ';' ends no line for the lexer, but the statement split drops it."""
    (let,) = parse_rule_file("let a = 1\r;\n").statements
    assert (let.name, let.value, let.span) == ("a", Literal(1), Span(None, 1, 1, 1, 10))


def test_deep_lists():
    depth = MAX_LIST_DEPTH
    value = parse_rule_file("let a = " + "[" * depth + "1" + "]" * depth + "\n").statements[0].value
    for _ in range(depth):
        assert isinstance(value, ListValue)
        (value,) = value.items
    assert value == Literal(1)


@pytest.mark.parametrize("depth", [MAX_LIST_DEPTH + 1, 500, 100_000])
def test_lists_deeper_than_the_limit_are_e104_at_the_bracket(depth):
    text = "let ok = 1\nlet a = " + "[" * depth + "1" + "]" * depth + "\n"
    with pytest.raises(CompressionError) as info:
        parse_rule_file(text, "deep.rules")
    (diag,) = info.value.diagnostics
    assert diag.code == "E104"
    assert (diag.span.file, diag.span.line, diag.span.column) == (
        "deep.rules",
        2,
        9 + MAX_LIST_DEPTH,
    )


def test_threads_parse_side_by_side():
    texts = {f"f{i}.rules": rules_text(20, seed=i) for i in range(8)}
    with ThreadPoolExecutor(4) as pool:
        parsed = dict(zip(texts, pool.map(lambda p: parse_rule_file(texts[p], p), texts)))
    for path, rule_file in parsed.items():
        assert {s.span.file for s in rule_file.statements} == {path}
        assert dump(rule_file) == dump(parse_rule_file(texts[path], path))


@PROPERTY
@given(rule_files())
def test_random_trees_printed(tree):
    check_parser(format_file(tree))


@PROPERTY
@given(rule_files(PLAIN_CHARS | st.sampled_from(['"', "\\"])), st.randoms())
def test_random_trees_spelt_messily(tree, rng: random.Random):
    check_parser(messy_spelling(format_file(tree), rng))


# Pieces of text, good and bad, for texts that are mostly not .rules at all.
PIECES = st.sampled_from(
    ["prune", "quantize", "let", "align", "with", "exclude", "from", "in", "except", "register"]
    + ["a", "Conv2d", "_output_", "x1", "*", "**", ".", ",", "=", "[", "]", "{", "}", ";"]
    + ["0", "-1.5", "2e3", '"s"', 're"r\\."', '"', " ", "\t", "\f", "\n", "\r\n", "\\\n"]
    + ["# c\n", "€"]
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(PIECES, max_size=30).map("".join))
def test_random_texts(text: str):
    check_parser(text)
