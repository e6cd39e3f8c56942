"""The formatter: golden files, stability, equivalence, and round trips of random syntax trees."""

from __future__ import annotations

import random
import re
from pathlib import Path as FilePath

import pytest

import golden
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_compress.diagnostics import CompressionError
from dsl_compress.language.format import format_file, format_rules
from dsl_compress.vocab import Mode
from dsl_compress.language.parse import KEYWORDS, parse_rule_file
from dsl_compress.language.syntax import (
    Align,
    Compress,
    Exclude,
    Include,
    Let,
    ListValue,
    Literal,
    Path,
    Register,
    RegisterTarget,
    RuleFile,
    Segment,
    Selector,
    Setting,
)

FMT = FilePath(__file__).resolve().parent / "data" / "fmt"
CASES = sorted(p for p in FMT.glob("*.rules") if not p.name.endswith(".expected.rules"))
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)


def expected_path(case: FilePath) -> FilePath:
    return case.with_name(case.name.removesuffix(".rules") + ".expected.rules")


def comment_texts(text: str) -> list[str]:
    return sorted(c.text for c in parse_rule_file(text).comments)


# --- golden files --------------------------------------------------------------------------


def test_there_are_golden_cases():
    assert len(CASES) >= 6


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_golden(case: FilePath):
    golden.check(format_rules(case.read_text(encoding="utf-8"), str(case)), expected_path(case))


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_golden_is_stable_and_equivalent(case: FilePath):
    source = case.read_text(encoding="utf-8")
    formatted = format_rules(source)
    assert format_rules(formatted) == formatted
    assert parse_rule_file(formatted) == parse_rule_file(source)
    assert comment_texts(formatted) == comment_texts(source)


# --- direct cases ----------------------------------------------------------------------------


def test_broken_file_raises_the_parsers_error():
    text = "prune fc.weight sparse_ratio=\nalign bn.weight conv.weight\n"
    with pytest.raises(CompressionError) as raised:
        format_rules(text, "broken.rules")
    with pytest.raises(CompressionError) as parsed:
        parse_rule_file(text, "broken.rules")
    assert str(raised.value) == str(parsed.value)


def test_empty_and_blank_files_format_to_nothing():
    assert format_rules("") == ""
    assert format_rules("\n \n;;\n") == ""


def test_format_file_prints_a_tree_built_in_code():
    weight = Selector(Path((Segment(("fc",)), Segment(("weight",)))))
    tree = RuleFile(
        (
            Compress(Mode.PRUNE, weight, (Setting("sparse_ratio", Literal(float("inf"))),)),
            Register(Mode.QUANTIZE, "T", (RegisterTarget("p1", ()),)),
        )
    )
    text = "prune fc.weight sparse_ratio=1e999\nregister quantize T {\n  p1\n}\n"
    assert format_file(tree) == text
    assert parse_rule_file(text) == tree


def test_nan_cannot_be_written():
    let = Let("x", Literal(float("nan")))
    with pytest.raises(ValueError, match="nan"):
        format_file(RuleFile((let,)))


def test_trailing_comment_after_a_form_feed_stays_trailing():
    text = "let a = 1\f\nlet b = 2  # about b\n"
    assert format_rules(text) == "let a = 1\nlet b = 2  # about b\n"


# --- random syntax trees ---------------------------------------------------------------------

NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True)
KEY = NAME.filter(lambda word: word not in KEYWORDS)  # `in=1` after a selector reads as a scope
RESERVED_IN_SELECTORS = {"with", "from", "in", "except"}
PATTERN = st.one_of(
    st.just("**"),
    st.from_regex(r"[A-Za-z0-9_*]{1,5}", fullmatch=True).filter(
        lambda word: word not in RESERVED_IN_SELECTORS
    ),
)
PLAIN_CHARS = st.sampled_from(list("aZ0 _.,;#{}[]=*é\t'"))
STRING_CHARS = st.one_of(PLAIN_CHARS, st.sampled_from(['"', "\\", "\r", "\x85", "\u2028"]))


def strings(chars: st.SearchStrategy[str] = STRING_CHARS) -> st.SearchStrategy[str]:
    return st.lists(chars, max_size=8).map("".join)


def regexes() -> st.SearchStrategy[str]:
    """Regex texts the parser can produce: every run of backslashes before a quote is even."""
    escape = st.sampled_from(list("\\.d()sw+")).map(lambda c: "\\" + c)
    return st.lists(st.one_of(PLAIN_CHARS, escape, st.just('"')), max_size=6).map("".join)


def values(chars: st.SearchStrategy[str]) -> st.SearchStrategy:
    numbers = st.one_of(
        st.integers(-(10**12), 10**12),
        st.floats(allow_nan=False),
        st.sampled_from([0.5, 1e-05, -0.25, 1e16, 2.0]),
    )
    leaf = st.one_of(
        numbers.map(Literal),
        NAME.map(lambda word: Literal(word, True)),
        strings(chars).map(Literal),
    )
    return st.recursive(leaf, lambda inner: st.lists(inner, max_size=3).map(_list), max_leaves=6)


def _list(items: list) -> ListValue:
    return ListValue(tuple(items))


def selectors() -> st.SearchStrategy[Selector]:
    segment = st.one_of(
        PATTERN.map(lambda word: Segment((word,))),
        st.lists(PATTERN, min_size=1, max_size=3, unique=True).map(_braced),
        brace_words().map(lambda word: Segment((word,))),
    )
    glob = st.lists(segment, min_size=1, max_size=4).map(lambda s: Path(tuple(s)))
    regex = st.builds(lambda r, s: Path(tuple(s), r), regexes(), st.lists(segment, max_size=1))
    path = st.one_of(glob, regex)
    return st.builds(Selector, path, st.one_of(st.none(), path))


def _braced(words: list[str]) -> Segment:
    return Segment(tuple(words), True)


def brace_words() -> st.SearchStrategy[str]:
    """One segment of glob words and {a,b} sets run together ({q,k}_proj, x{a,b}y*, {a}{b})."""
    word = st.from_regex(r"[A-Za-z0-9_*]{1,4}", fullmatch=True)
    group = st.lists(word, min_size=1, max_size=3).map(lambda w: "{" + ",".join(w) + "}")
    pieces = st.lists(st.one_of(word, group), min_size=2, max_size=4)
    return pieces.filter(lambda p: any(w.startswith("{") for w in p)).map("".join)


def statements(chars: st.SearchStrategy[str] = STRING_CHARS) -> st.SearchStrategy:
    modes = st.sampled_from(list(Mode))
    settings_ = st.lists(st.builds(Setting, KEY, values(chars)), max_size=3).map(tuple)
    excepts = st.lists(selectors(), max_size=2).map(tuple)
    targets = st.lists(st.builds(RegisterTarget, NAME, settings_), max_size=3).map(tuple)
    return st.one_of(
        st.builds(Let, NAME, values(chars)),
        st.builds(Include, strings(chars)),
        st.builds(Compress, modes, selectors(), settings_, excepts),
        st.builds(Align, selectors(), selectors(), settings_, excepts),
        st.builds(Exclude, selectors(), st.one_of(st.none(), modes)),
        st.builds(Register, modes, NAME, targets),
    )


def rule_files(chars: st.SearchStrategy[str] = STRING_CHARS) -> st.SearchStrategy[RuleFile]:
    return st.lists(statements(chars), max_size=6).map(lambda s: RuleFile(tuple(s)))


@PROPERTY
@given(rule_files())
def test_random_tree_prints_to_text_that_parses_back_to_it(tree: RuleFile):
    text = format_file(tree)
    assert parse_rule_file(text) == tree
    assert format_rules(text) == text


# --- messy spellings of random trees ---------------------------------------------------------

MARK = "#~"  # inserted comments carry this mark, so they can be told apart and removed
# Strings, regexes and segments with a {a,b} set inside ({q,k}_proj): no space goes inside.
PROTECTED = re.compile(
    r'(?:re)?"(?:\\.|[^"\\\n])*"'
    r"|(?=[A-Za-z0-9_*]|\{[^{}\s]*\}[A-Za-z0-9_*{])[A-Za-z0-9_*]*(?:\{[^{}\s]*\}[A-Za-z0-9_*]*)+"
)
SPACES = [" ", "  ", "\t", " \\\n  "]


def messy_spelling(canonical: str, rng: random.Random) -> str:
    """The same file with random spacing, separators, line breaks in lists and comments."""
    out = []
    for line in canonical.splitlines():
        stripped = line.strip()
        out.append(_messy_line(stripped, rng))
        if stripped.endswith("{"):
            out.append(rng.choice([" ", "\n", ";", " ;; "]))
        else:
            out.append(_separator(rng))
    return "".join(out)


def _separator(rng: random.Random) -> str:
    comment = f"  {MARK}t{rng.randrange(100)}" if rng.random() < 0.3 else ""
    full_line = f"{MARK}f{rng.randrange(100)}\n" if rng.random() < 0.2 else ""
    return rng.choice([";", " ; ", comment + "\n", ";" + comment + "\n\n" + full_line, "\n;;\n"])


def _messy_line(line: str, rng: random.Random) -> str:
    protected = PROTECTED.findall(line) + [""]
    pieces, depth = [rng.choice(["", " ", "\t"])], 0
    for part, kept in zip(PROTECTED.split(line), protected):
        for char in part:
            before = depth
            depth += {"[": 1, "]": -1}.get(char, 0)
            pieces.append(_messy_char(char, min(before, depth), rng))
        pieces.append(kept)
    return "".join(pieces)


def _messy_char(char: str, depth: int, rng: random.Random) -> str:
    """Spacing around one character; line breaks and comments only inside [...]."""
    if char == " ":
        return rng.choice(SPACES)
    if char in "=,[]{}":
        inside = ["", " ", "\n  ", f"  {MARK}i{rng.randrange(100)}\n  "]
        space = rng.choice(inside if depth > 0 else ["", " ", "\t"])
        return space + char if rng.random() < 0.5 else char + space
    return char


def without_marked_comments(text: str) -> str:
    lines = [re.sub(r"\s+#~\w+$", "", line) for line in text.splitlines()]
    return "\n".join(line for line in lines if line and not line.strip().startswith(MARK)) + "\n"


@PROPERTY
@given(rule_files(PLAIN_CHARS | st.sampled_from(['"', "\\"])), st.randoms())
def test_messy_spelling_formats_to_the_canonical_text(tree: RuleFile, rng: random.Random):
    canonical = format_file(tree)
    messy = messy_spelling(canonical, rng)
    assert parse_rule_file(messy) == tree
    formatted = format_rules(messy)
    assert format_rules(formatted) == formatted
    assert parse_rule_file(formatted) == tree
    assert comment_texts(formatted) == comment_texts(messy)
    assert without_marked_comments(formatted) == (canonical or "\n")
