"""Fuzzing the text stages and the command: whatever the bytes, parse, compile (with and without
a model), format and the CLI's lint/fmt end in a result or a CompressionError, never a traceback;
format is idempotent, keeps every comment and the meaning.

The ``ci`` profile (the default) tries few examples so the suite stays fast; set
``DSL_COMPRESS_FUZZ=long`` (or run ``bench/fuzz.py``) for thousands.
"""

from __future__ import annotations

import functools
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dsl_compress.diagnostics import CompressionError
from dsl_compress.language.format import format_rules
from dsl_compress.language.parse import parse_rule_file
from dsl_compress.resolve.ruleset import parse as parse_rules
from cli_runner import run

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "rules").glob("*.rules"))

# capsys is read out after each command, so sharing it between examples is sound.
SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "fuzz-ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=SUPPRESSED,
)
settings.register_profile(
    "fuzz-long",
    max_examples=3000,
    deadline=None,
    suppress_health_check=SUPPRESSED,
)
FUZZ = settings.get_profile("fuzz-" + os.environ.get("DSL_COMPRESS_FUZZ", "ci"))

# The grammar's terminals (grammar/rules.lark), as words a token soup is made of.
KEYWORDS = ["let", "include", "prune", "quantize", "distill", "align", "with", "exclude"]
KEYWORDS += ["from", "except", "register", "in"]
WORDS = ["Conv2d", "Linear", "conv1", "fc", "weight", "bias", "_input_", "_output_", "**", "*"]
WORDS += ["conv*", "{weight,bias}", "sparse_ratio", "quant_dtype", "int8", "granularity"]
WORDS += ["out_channel", "dims", "lambda", "metric", "l1", "group", 're"conv[0-9]"', "p1"]
SYMBOLS = ["=", ".", ",", ";", "{", "}", "[", "]", "\n", "\r\n", "\\\n", "# note\n", " ", "\t"]
NUMBERS = ["0", "0.5", "1", "-1", "1e999", "-0.0", "1e-5", ".5", "+3", "9" * 120, "0." + "1" * 99]
STRINGS = ['"a.rules"', '"x\\"y"', '"', '"\\\\"', '"\u00e9\u2028"']
TERMINALS = KEYWORDS + WORDS + SYMBOLS + NUMBERS + STRINGS


@functools.lru_cache(maxsize=None)
def example_texts() -> tuple[str, ...]:
    return tuple(path.read_text(encoding="utf-8") for path in EXAMPLES)


def shuffled_examples(seed: int, rounds: int) -> list[str]:
    """Each bundled example with its lines shuffled, ``rounds`` times."""
    rng = random.Random(seed)
    found = []
    for text in example_texts():
        lines = text.splitlines(keepends=True)
        found += ["".join(rng.sample(lines, len(lines))) for _ in range(rounds)]
    return found


@functools.lru_cache(maxsize=None)
def model():
    from dsl_compress.models import cnn

    return cnn()


def token_soups() -> st.SearchStrategy[str]:
    separators = st.sampled_from([" ", "", "\n", " ", "  "])
    pairs = st.tuples(st.sampled_from(TERMINALS), separators).map("".join)
    return st.lists(pairs, max_size=40).map("".join)


@st.composite
def mutated_examples(draw) -> str:
    """A bundled example with a few random cuts, copies, insertions and swaps."""
    text = draw(st.sampled_from(example_texts()))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(1, 6))):
        at, span = rng.randrange(len(text) + 1), rng.randrange(1, 40)
        action = rng.randrange(4)
        if action == 0:
            text = text[:at] + text[at + span :]
        elif action == 1:
            text = text[:at] + text[at : at + span] * 2 + text[at + span :]
        elif action == 2:
            text = text[:at] + rng.choice(TERMINALS) + text[at:]
        else:
            j = rng.randrange(len(text) + 1)
            text = text[:at] + text[j : j + span] + text[at:]
    return text


def nestings() -> st.SearchStrategy[str]:
    depth = st.integers(0, 80)
    return st.tuples(depth, st.sampled_from(["[", "{", "[1,"])).map(
        lambda d: f"let x = {d[1] * d[0]}1{']' * d[0]}\nprune Conv2d.weight dims={d[1] * d[0]}"
    )


def huge_numbers() -> st.SearchStrategy[str]:
    digits = st.integers(1, 6000).map(lambda n: "7" * n)
    forms = st.sampled_from(["{}", "0.{}", "{}e5", "1e{}", "-{}"])
    return st.tuples(forms, digits).map(
        lambda f: f"prune Conv2d.weight sparse_ratio={f[0].format(f[1])}"
    )


def odd_line_endings() -> st.SearchStrategy[str]:
    endings = st.sampled_from(["\n", "\r\n", "\r", "\x0b", "\x0c", "\u2028", "\x85", "\\\n", ""])
    return st.tuples(st.sampled_from(example_texts()), endings).map(
        lambda t: t[0].replace("\n", t[1])
    )


TEXTS = st.one_of(
    token_soups(),
    mutated_examples(),
    nestings(),
    huge_numbers(),
    odd_line_endings(),
    st.text(max_size=200),
)


def encodings() -> st.SearchStrategy[bytes]:
    """Rules text in odd encodings, and random bytes."""
    codecs = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "utf-32"])
    encoded = st.tuples(TEXTS, codecs).map(lambda t: t[0].encode(t[1], errors="replace"))
    return st.one_of(st.binary(max_size=300), encoded)


def meaning(text: str, with_model: bool):
    """What the text compiles to, without spans: the config_lists, or the error codes."""
    try:
        compiled = parse_rules(text, "f.rules").compile(model() if with_model else None)
    except CompressionError as exc:
        return ("error", sorted(exc.codes))
    lists = compiled.config_list if not with_model else {}
    plan = compiled.plan.to_config_list if with_model else None
    if plan is not None:
        from dsl_compress.vocab import Mode

        lists = {mode.value: plan(mode) for mode in Mode}
    codes = sorted(d.code for d in compiled.diagnostics)
    return ("ok", lists, compiled.registry, codes)


def formatted(text: str) -> str | None:
    try:
        return format_rules(text, "f.rules")
    except CompressionError:
        return None


@FUZZ
@given(TEXTS)
@example("let x = " + "[" * 100_000 + "]" * 100_000)
@example("prune Conv2d.weight sparse_ratio=" + "9" * 5000)
@example('include "/etc/passwd"')
def test_parse_and_compile_raise_nothing_but_compression_error(tmp_path_factory, text):
    for with_model in (False, True):
        meaning(text, with_model)  # any other exception fails the test


@FUZZ
@given(TEXTS)
def test_format_is_idempotent_and_keeps_comments_and_meaning(text):
    once = formatted(text)
    if once is None:
        return
    assert formatted(once) == once
    comments = Counter(c.text for c in parse_rule_file(text).comments)
    assert Counter(c.text for c in parse_rule_file(once).comments) == comments
    for with_model in (False, True):
        assert meaning(once, with_model) == meaning(text, with_model)


@FUZZ
@given(encodings(), st.sampled_from(["lint", "fmt", "fmt --check", "compile"]))
def test_the_command_exits_0_1_or_2_without_a_traceback(tmp_path_factory, capsys, data, command):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "f.rules"
    path.write_bytes(data)
    result = run(capsys, *command.split(), path)
    text = result.out + result.err
    assert result.code in (0, 1, 2), text
    assert "Traceback" not in text and "I901" not in text, text


@pytest.mark.parametrize("command", ["lint", "fmt"])
@FUZZ
@given(mutated_examples())
def test_the_command_on_mutated_examples_with_a_model(tmp_path_factory, capsys, command, text):
    path = tmp_path_factory.mktemp("fuzz") / "f.rules"
    path.write_text(text, encoding="utf-8")
    extra = ["--model", "dsl_compress.models:cnn"] if command == "lint" else ["--check"]
    result = run(capsys, command, path, *extra)
    assert result.code in (0, 1, 2)
    assert "Traceback" not in result.out + result.err and "I901" not in result.err
