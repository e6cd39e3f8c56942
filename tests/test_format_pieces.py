"""Formatting a file a piece at a time gives what formatting it whole gives: the same text, or
the same syntax errors; pieces start at statement lines and cover the file exactly."""

from __future__ import annotations

import random
import sys
from pathlib import Path as FilePath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl_compress.diagnostics import CompressionError
from dsl_compress.language import format as formatter
from dsl_compress.language import worker_pool
from dsl_compress.language.parse import parse_rule_file
from dsl_compress.language.statement_split import pieces_of, split_pieces, split_statements
from test_formatter import PLAIN_CHARS, messy_spelling, rule_files
from test_fuzz import FUZZ, TEXTS, shuffled_examples

ROOT = FilePath(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from rules_workloads import rules_text  # noqa: E402

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True)
SOURCES = sorted((ROOT / "tests" / "data").rglob("*.rules")) + sorted(
    (ROOT / "rules").rglob("*.rules")
)


def formatted(text: str, piece_statements: int, monkeypatch) -> str | tuple:
    """format_rules with pieces of ``piece_statements``: the text, or its errors."""
    monkeypatch.setattr(formatter, "PIECE_STATEMENTS", piece_statements)
    try:
        return formatter.format_rules(text, "x.rules")
    except CompressionError as exc:
        return tuple((d.code, d.message, d.span, d.hint) for d in exc.diagnostics)


def check_pieces_agree(text: str, monkeypatch) -> None:
    whole = formatted(text, 10**9, monkeypatch)
    for size in (1, 2, 3):
        assert formatted(text, size, monkeypatch) == whole, size


def test_a_piece_starts_where_a_statement_starts_and_the_pieces_cover_the_text():
    text = "prune a x=1\n# c\n\nprune b;prune c  # d\nlet x = [1,\n2]\nregister prune T {\n p\n}\n"
    text += "prune e;  # after a semicolon\nprune f\n"
    pieces = list(split_pieces(text, 1))
    assert "".join(p.text for p in pieces) == text
    assert [(p.line, p.column) for p in pieces] == [(1, 1), (2, 1), (4, 1), (4, 9), (5, 1)] + [
        (7, 1),
        (10, 1),
        (11, 1),
    ]
    starts = {(c.line, c.column) for c in split_statements(text)}
    assert all((p.line, p.column) in starts for p in pieces)
    assert [p.text for p in split_pieces(text, 10**9)] == [text]
    assert [p.text for p in split_pieces("", 1)] == [""]


def test_a_file_of_one_line_is_cut_after_its_semicolons(monkeypatch):
    statements = [line.split("  #")[0] for line in rules_text(300).splitlines()[1:]]
    one_line = "; ".join(statements) + "  # the end\n"
    assert len(list(split_pieces(one_line, 50))) > 4
    check_pieces_agree(one_line, monkeypatch)
    check_pieces_agree(one_line.replace("; ", ";  # gap\n", 7), monkeypatch)


def test_each_piece_has_the_files_line_numbers(monkeypatch):
    text = "prune a x=1\n\n\nprune b.weight y=2  # why\n"
    monkeypatch.setattr(formatter, "PIECE_STATEMENTS", 1)
    (last,) = parse_rule_file(list(split_pieces(text, 1))[1].text, "x.rules", 4).statements
    assert (last.span.line, last.span.column) == (4, 1)
    assert formatter.format_rules(text) == "prune a x=1\n\nprune b.weight y=2  # why\n"
    with pytest.raises(CompressionError) as caught:
        formatter.format_rules("prune a x=1\n\nprune b y=\nprune c z=[\n")
    assert [d.span.line for d in caught.value.diagnostics] == [3, 4]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_repository_files_format_alike_in_pieces(source: FilePath, monkeypatch):
    check_pieces_agree(source.read_text(encoding="utf-8"), monkeypatch)


def test_a_generated_large_file_formats_alike_in_pieces(monkeypatch):
    check_pieces_agree(rules_text(600), monkeypatch)


@FUZZ
@given(TEXTS)
def test_fuzzed_texts_format_alike_in_pieces(text: str):
    with pytest.MonkeyPatch.context() as monkeypatch:
        check_pieces_agree(text, monkeypatch)


@FUZZ
@given(TEXTS)
def test_lints_pieces_from_chunks_are_fmts_pieces_from_the_text(text: str):
    """lint cuts pieces from the statement chunks it also reads; fmt from where they start."""
    for size in (1, 2, 5):
        from_chunks = list(pieces_of(text, split_statements(text), size))
        assert from_chunks == list(split_pieces(text, size))


@PROPERTY
@given(rule_files(PLAIN_CHARS | st.sampled_from(['"', "\\"])), st.randoms())
def test_messy_files_format_alike_in_pieces(tree, rng: random.Random):
    messy = messy_spelling(formatter.format_file(tree), rng)
    with pytest.MonkeyPatch.context() as monkeypatch:
        check_pieces_agree(messy, monkeypatch)


def test_the_examples_shuffled_format_alike_in_pieces(monkeypatch):
    for text in shuffled_examples(seed=7, rounds=20):
        check_pieces_agree(text, monkeypatch)


# ----- fmt --jobs: pieces formatted in worker processes ------------------------------------------


def test_fmt_jobs_formats_in_processes_as_in_one(capsys, tmp_path, monkeypatch):
    from cli_runner import run

    monkeypatch.setattr(formatter, "PIECE_STATEMENTS", 7)
    monkeypatch.setattr(worker_pool, "PARALLEL_CHARACTERS", 1)
    messy = "".join(
        f"# about {i}\nprune  conv{i}.weight   sparse_ratio=0.{i % 9 + 1}  # why {i}\n\n\n"
        for i in range(60)
    )
    outputs = []
    for jobs in ("1", "2", "3"):
        path = tmp_path / f"jobs{jobs}.rules"
        path.write_text(messy, encoding="utf-8")
        assert run(capsys, "fmt", "--jobs", jobs, path).code == 0
        outputs.append(path.read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1] == outputs[2] == formatter.format_rules(messy, None)
    assert outputs[0] != messy and outputs[0].count("# why") == 60


def test_fmt_jobs_reports_the_syntax_errors_of_every_piece(capsys, tmp_path, monkeypatch):
    from cli_runner import run

    monkeypatch.setattr(formatter, "PIECE_STATEMENTS", 2)
    monkeypatch.setattr(worker_pool, "PARALLEL_CHARACTERS", 1)
    lines = [f"prune conv{i}.weight sparse_ratio=0.5" for i in range(12)]
    lines[3], lines[10] = "prune conv3.weight sparse_ratio=", "prune [oops"
    path = tmp_path / "broken.rules"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = path.read_bytes()
    done = run(capsys, "fmt", "--jobs", "2", path)
    assert done.code == 2 and path.read_bytes() == before
    assert f"{path}:4:" in done.out + done.err and f"{path}:11:" in done.out + done.err


def test_fmt_jobs_must_be_a_positive_count(capsys):
    from cli_runner import exit_of

    code, _, err = exit_of(capsys, "fmt", "--jobs", "0", "x.rules")
    assert code == 2 and "at least 1" in err
