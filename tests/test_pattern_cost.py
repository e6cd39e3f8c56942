"""Selector patterns are matched in bounded time: a pattern that may backtrack without bound is
matched under a deadline (E224 at the selector), any other by re as it is, with the same result."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import dsl_compress as dc
from dsl_compress.diagnostics import CompressionError
from dsl_compress.language.parse import parse_selector
from dsl_compress.resolve import pattern_cost
from dsl_compress.resolve.pattern_cost import may_backtrack, name_matcher
from dsl_compress.resolve.selectors import glob_pattern

# Each splits a name in exponentially many ways, or in a high power of its length.
BACKTRACKING = [
    "(a|a)*b",
    "(a+)+b",
    "(?:a|aa)*c",
    "(x?){9}x{9}",
    ".*.*.*x",
    "[ab]*[ab]*[ab]*c",
    "a?a?a?a?a?aaaaa",
    r"\(?\(?\(?\(?\(?\(\(\(\(\(",
    "(?x)(a|a) *b",
    "(?s:.)*x",
]
# At most two unbounded repetitions, a few optional parts, no repeated group.
DIRECT = [
    r"model\.layers\.(\d+)\.self_attn\.(q|k|v)_proj",
    r"(?:(.*)\.)?([^.]*)_proj",
    r"(?!head).*\.weight?",
    r"(?P<block>layer\d)\.conv",
    r"encoder\.(?:0|1|2)",
]
GLOBS_DIRECT = ["layers.*.self_attn.{q,k,v}_proj", "**.{q,k}_proj", "conv*", "**.mlp.*_proj"]
GLOBS_BACKTRACKING = ["*a*a*a*.x", "**.layers.*.mlp.*_proj", "**.**.**.x"]


@pytest.mark.parametrize("pattern", BACKTRACKING)
def test_patterns_that_may_backtrack_are_told_apart(pattern: str):
    re.compile(pattern)  # each is a valid pattern
    assert may_backtrack(pattern)


@pytest.mark.parametrize("pattern", DIRECT)
def test_patterns_that_cannot_are_matched_directly(pattern: str):
    assert not may_backtrack(pattern)


def glob(text: str) -> str:
    return glob_pattern(parse_selector(text, "test").path.segments)


@pytest.mark.parametrize("text", GLOBS_DIRECT)
def test_globs_of_one_or_two_wildcards_are_matched_directly(text: str):
    assert not may_backtrack(glob(text))


@pytest.mark.parametrize("text", GLOBS_BACKTRACKING)
def test_globs_of_more_wildcards_are_matched_under_the_deadline(text: str):
    assert may_backtrack(glob(text))


_PIECES = ["a", "b", ".", "a*", "(a|ab)", "(a)", "[ab]+", "a?", "(?:a|b)*", r"\.", "b{1,2}"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6).map("".join),
    st.text(alphabet="ab.", max_size=10),
)
def test_both_matchers_give_what_re_gives(pattern: str, name: str):
    expected = re.fullmatch(pattern, name)
    found = name_matcher(pattern)(name, pattern_cost.deadline(1))
    assert (found is None) == (expected is None)
    if expected is not None:
        assert found.groups() == expected.groups()


def stalling_model() -> nn.Module:
    """A module name on which re"(a|a)*b" tries 2^30 splits before it fails."""
    model = nn.Module()
    model.add_module("a" * 30 + "cb", nn.Linear(2, 2))
    model.fc = nn.Linear(2, 2)
    return model


STALLING_RULES = 'prune fc.weight sparse_ratio=0.5\nprune re"(a|a)*b".weight sparse_ratio=0.5\n'


def test_a_stalling_selector_is_an_error_at_its_span(monkeypatch):
    monkeypatch.setattr(pattern_cost, "MATCH_SECONDS", 0.05)
    monkeypatch.setattr(pattern_cost, "PER_NAME_SECONDS", 0.0)
    with pytest.raises(CompressionError) as caught:
        dc.parse(STALLING_RULES, path="stall.rules").compile(stalling_model())
    (found,) = caught.value.diagnostics
    assert found.code == "E224"
    assert (found.span.file, found.span.line, found.span.column) == ("stall.rules", 2, 7)
    assert "deadline (at module 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaacb')" in found.message


def test_the_deadline_grows_with_the_names_matched(monkeypatch):
    # A legitimate pattern on a model of millions of modules must not pass the deadline that
    # suffices for a small one: each name adds its own allowance.
    monkeypatch.setattr(pattern_cost.time, "monotonic", lambda: 100.0)
    small, large = pattern_cost.deadline(10), pattern_cost.deadline(2_000_000)
    expected = 100.0 + pattern_cost.MATCH_SECONDS + 10 * pattern_cost.PER_NAME_SECONDS
    assert small == pytest.approx(expected)
    assert large - small == pytest.approx((2_000_000 - 10) * pattern_cost.PER_NAME_SECONDS)


def test_lint_and_apply_report_a_stalling_selector_instead_of_hanging(tmp_path):
    rules = tmp_path / "stall.rules"
    rules.write_text(STALLING_RULES, encoding="utf-8")
    model = tmp_path / "stall_model.py"
    model.write_text(
        "from torch import nn\n"
        "def build():\n"
        "    model = nn.Module()\n"
        "    model.add_module('a' * 30 + 'cb', nn.Linear(2, 2))\n"
        "    model.fc = nn.Linear(2, 2)\n"
        "    return model\n",
        encoding="utf-8",
    )
    spec = f"{model}:build"
    for command, status in ((["lint"], 1), (["apply", "--dry-run"], 2)):
        done = subprocess.run(
            [sys.executable, "-m", "dsl_compress", *command, str(rules), "--model", spec],
            capture_output=True,
            text=True,
            timeout=120,  # re alone would take hours
        )
        assert done.returncode == status, done.stderr
        output = done.stdout + done.stderr
        assert f"{rules}:2:7: error[E224]" in output
        assert "Traceback" not in output


def test_a_pattern_the_bounded_matcher_cannot_read_is_refused_not_matched_unbounded(monkeypatch):
    import regex

    def unreadable(*args, **options):
        raise regex.error("unknown construct")

    monkeypatch.setattr(regex, "compile", unreadable)
    name_matcher.cache_clear()
    try:
        with pytest.raises(pattern_cost.PatternTooCostly, match="cannot read it"):
            name_matcher("(a|a)*b")("aab", pattern_cost.deadline(1))
    finally:
        name_matcher.cache_clear()
