"""The fast parse (Lark's tables driven in one loop) against Lark's own parse: same nodes, spans, comments."""

from __future__ import annotations

import dataclasses
import gc
import random
import sys
from pathlib import Path as FilePath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lark.exceptions import UnexpectedInput

from dsl_compress.language import parse as parser
from dsl_compress.diagnostics import CompressionError, Span
from dsl_compress.language.format import format_file
from dsl_compress.language.lalr_driver import MAX_DEPTH, FastPathError
from dsl_compress.language.parse import fast_parse, lark_parse, parse
from test_formatter import PLAIN_CHARS, messy_spelling, rule_files

ROOT = FilePath(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from workloads import rules_text  # noqa: E402

SOURCES = sorted((ROOT / "tests" / "data").rglob("*.rules")) + sorted(
    (ROOT / "rules").rglob("*.rules")
)
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)


def dump(node) -> object:
    """Everything a node holds, spans and comments included (equality leaves them out)."""
    if dataclasses.is_dataclass(node):
        fields = dataclasses.fields(node)
        return (type(node).__name__, *((f.name, dump(getattr(node, f.name))) for f in fields))
    if isinstance(node, tuple):
        return tuple(dump(item) for item in node)
    return (type(node).__name__, node)


def assert_same_as_lark(text: str, path: str | None = "x.rules") -> None:
    """The fast parse equals Lark's where Lark parses the text, and gives up where Lark fails."""
    try:
        expected = lark_parse(text, path)
    except UnexpectedInput:
        with pytest.raises(FastPathError):
            fast_parse(text, path)
        return
    assert dump(fast_parse(text, path)) == dump(expected)


def test_the_tables_build_from_the_shipped_grammar():
    assert parser._tables().reductions


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_rules_file_of_the_repository(source: FilePath):
    assert_same_as_lark(source.read_text(encoding="utf-8"), str(source))


@pytest.mark.parametrize("statements", [0, 1, 2, 50, 2000])
def test_generated_benchmark_rules(statements: int):
    assert_same_as_lark(rules_text(statements, seed=statements))


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


@pytest.mark.parametrize("text", EDGE_CASES + BAD_CASES)
def test_edge_cases(text: str):
    assert_same_as_lark(text)


@pytest.mark.parametrize("text", BAD_CASES)
def test_bad_text_falls_back_to_the_diagnostics_of_lark(text: str):
    with pytest.raises(FastPathError):
        fast_parse(text)
    with pytest.raises(CompressionError):
        parse(text)


def test_a_good_file_never_reaches_lark(monkeypatch):
    def refuse(text):
        raise AssertionError("Lark's parse was used")

    monkeypatch.setattr(parser, "_parse_tree", refuse)
    text = rules_text(100)
    assert parse(text).statements == fast_parse(text).statements


def test_deep_lists_are_left_to_lark():
    text = "let a = " + "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH + "\n"
    with pytest.raises(FastPathError):
        fast_parse(text)
    assert dump(parse(text)) == dump(lark_parse(text))


def test_spans_are_plain_spans():
    """The driver makes its spans without Span.__init__: they must not be told apart."""
    made = fast_parse("prune fc.weight sparse_ratio=0.5\n", "x.rules").statements[0].span
    usual = Span("x.rules", 1, 1, 1, 33)
    assert type(made) is Span
    assert vars(made) == vars(usual)
    assert (made, hash(made), repr(made), str(made)) == (
        usual,
        hash(usual),
        repr(usual),
        str(usual),
    )


def test_the_collector_is_left_as_it_was():
    assert gc.isenabled()
    fast_parse("let a = 1\n")
    assert gc.isenabled()
    gc.disable()
    try:
        fast_parse("let a = 1\n")
        assert not gc.isenabled()
    finally:
        gc.enable()


@PROPERTY
@given(rule_files())
def test_random_trees_printed(tree):
    assert_same_as_lark(format_file(tree))


@PROPERTY
@given(rule_files(PLAIN_CHARS | st.sampled_from(['"', "\\"])), st.randoms())
def test_random_trees_spelt_messily(tree, rng: random.Random):
    assert_same_as_lark(messy_spelling(format_file(tree), rng))


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
    assert_same_as_lark(text)
