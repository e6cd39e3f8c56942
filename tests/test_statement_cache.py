"""An editor's incremental parse (StatementCache) gives exactly the full parse of every edited
text, spans and comments included, while parsing again only the statements an edit changed."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_compress.diagnostics import CompressionError, Span
from dsl_compress.language import parse as parsing
from dsl_compress.language.parse import StatementCache, parse_rule_file
from dsl_compress.tools.lint import lint_text

TEXT = """\
# a header comment
let ratio = 0.5
prune conv1.weight sparse_ratio=ratio  # trailing
quantize Linear.weight quant_dtype=int8 granularity=[1, 32]
align bn1.weight with conv1.weight dims=[0]
register quantize Foo { weight granularity=out_channel }
exclude head.**
"""


def _spans(node) -> list:
    """Every span in a parsed tree, in field order (spans take no part in equality)."""
    if isinstance(node, Span):
        return [node]
    if dataclasses.is_dataclass(node):
        return [s for f in dataclasses.fields(node) for s in _spans(getattr(node, f.name))]
    if isinstance(node, (tuple, list)):
        return [s for item in node for s in _spans(item)]
    return []


def _full(text: str):
    try:
        return parse_rule_file(text, "a.rules"), None
    except CompressionError as exc:
        return None, [(d.code, d.span, d.message) for d in exc.diagnostics]


def _cached(cache: StatementCache, text: str):
    try:
        return cache.parse(text, "a.rules"), None
    except CompressionError as exc:
        return None, [(d.code, d.span, d.message) for d in exc.diagnostics]


def _assert_same(cache: StatementCache, text: str) -> None:
    (expected, errors), (got, got_errors) = _full(text), _cached(cache, text)
    assert got_errors == errors
    if expected is not None:
        assert got.statements == expected.statements
        assert _spans(got.statements) == _spans(expected.statements)
        assert got.comments == expected.comments


EDITS = st.lists(
    st.tuples(
        st.integers(0, len(TEXT)),
        st.integers(0, 6),
        st.sampled_from(["", "x", "0", ";", "\n", "[", "]", "#", '"', " ", "prune ", "=1"]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(EDITS)
def test_every_edit_parses_as_the_whole_file_parses(edits):
    cache, text = StatementCache(), TEXT
    _assert_same(cache, text)
    for at, removed, inserted in edits:
        at = min(at, len(text))
        text = text[:at] + inserted + text[at + removed :]
        _assert_same(cache, text)


@pytest.fixture
def parsed(monkeypatch):
    """The statement chunks parsed (not re-used) after the fixture starts recording."""
    found = []
    original = parsing.parse_chunk
    monkeypatch.setattr(
        parsing, "parse_chunk", lambda chunk, path: found.append(chunk) or original(chunk, path)
    )
    return found


def test_an_edit_parses_its_own_statement_again_only(parsed):
    cache = StatementCache()
    cache.parse(TEXT, "a.rules")
    parsed.clear()
    edited = TEXT.replace("quant_dtype=int8", "quant_dtype=int4")
    cache.parse(edited, "a.rules")
    assert [chunk.text for chunk in parsed] == [
        "quantize Linear.weight quant_dtype=int4 granularity=[1, 32]"
    ]


@pytest.mark.parametrize("edit", [("int8", "int9"), ("conv1", "Conv2D"), ("0.5", "five")])
def test_lint_with_the_cache_reports_what_lint_reports(edit):
    cache = StatementCache()
    lint_text(TEXT, "a.rules", cache=cache)
    edited = TEXT.replace(*edit)
    found = lint_text(edited, "a.rules", cache=cache)
    expected = lint_text(edited, "a.rules")
    assert [(d.code, d.span, d.message) for d in found] == [
        (d.code, d.span, d.message) for d in expected
    ]


def test_an_escaped_line_break_does_not_carry_an_open_string_into_the_next_line():
    """A string never crosses a line, a backslash before the break included: the next
    statement stands on its own line, and an error after it is placed on its line."""
    text = 'let a = "abc\\\nprune x.weight sparse_ratio=0.5\nprune Foo.weight sparse_ratio=\n'
    with pytest.raises(CompressionError) as caught:
        parse_rule_file(text, "a.rules")
    assert [(d.code, d.span.line) for d in caught.value.diagnostics] == [("E102", 1), ("E103", 3)]


def test_statements_a_line_break_moved_are_moved_not_parsed(parsed):
    cache = StatementCache()
    cache.parse(TEXT, "a.rules")
    parsed.clear()
    edited = "\n\n" + TEXT
    _assert_same(cache, edited)
    assert parsed == []
