"""Model-free lint a piece at a time reports what linting the file whole reports: the same
diagnostics (syntax errors, check errors, findings), with lets and register blocks anywhere
in the file; a file that includes another is linted whole."""

from __future__ import annotations

import sys
from pathlib import Path as FilePath

import pytest
from hypothesis import given, settings

from dsl_compress.language import worker_pool
from dsl_compress.tools import lint_pieces
from dsl_compress.tools.lint import lint_text, lint_whole
from test_fuzz import FUZZ, TEXTS, shuffled_examples

ROOT = FilePath(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from rules_workloads import rules_text  # noqa: E402

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True)
SOURCES = sorted((ROOT / "tests" / "data").rglob("*.rules")) + sorted(
    (ROOT / "rules").rglob("*.rules")
)


def report(diagnostics) -> list:
    """Diagnostics as lint orders them, everything they say included."""
    shown = [(d.code, d.severity, d.message, d.span, d.hint, d.fixes) for d in diagnostics]
    return sorted(shown, key=lambda d: (d[3] is not None and (d[3].line, d[3].column), d[:3]))


def in_pieces(text: str, size: int, monkeypatch, path: str = "x.rules") -> list | None:
    monkeypatch.setattr(lint_pieces, "PIECE_STATEMENTS", size)
    found = lint_pieces.lint_in_pieces(text, path)
    return None if found is None else report(found)


def check_agrees(text: str, monkeypatch, path: str = "x.rules") -> None:
    whole = report(lint_whole(text, path))
    for size in (1, 3, 10**9):
        assert in_pieces(text, size, monkeypatch, path) in (whole, None), size
    assert report(lint_text(text, path)) == whole


LATE_CONTEXT = """\
prune conv1.weight sparse_ratio=ratio granularity=out_channel
quantize Linear.weight quant_dtype=bits
prune Custom.p1 sparse_ratio=0.5
prune conv2.weight sparse_ratio=undefined_word
let ratio = 0.5
let bits = int8
register prune Custom { p1 granularity=[1,-1]; _output_ align=p1 dims=[0] }
prune conv3.weight badkey=1
"""


def test_lets_and_templates_written_after_their_use_count_in_every_piece(monkeypatch):
    found = in_pieces(LATE_CONTEXT, 1, monkeypatch)
    # ratio, bits and the Custom template are known in the pieces before them; only the
    # undefined word and the unknown key are findings.
    assert [(d[0], d[3].line) for d in found] == [("E204", 4), ("E202", 8)]
    check_agrees(LATE_CONTEXT, monkeypatch)


def test_warnings_are_dropped_where_an_error_is_reported_as_whole_lint_does(monkeypatch):
    warned = "prune Linear.weight sparse_ratio=0.5 metric=l1 granularity=out_channel\n"
    text = warned * 3 + "prune conv1.weight sparse_ratio=2\n"
    assert report(lint_whole(warned * 3, "x.rules")) == in_pieces(warned * 3, 1, monkeypatch)
    check_agrees(text, monkeypatch)


def test_syntax_errors_of_every_piece_and_nothing_else(monkeypatch):
    text = "prune a.weight badkey=1\nprune b.weight sparse_ratio=\nprune c x=1\nprune [\n"
    found = in_pieces(text, 1, monkeypatch)
    assert [d[3].line for d in found] == [2, 4]
    assert found == report(lint_whole(text, "x.rules"))


def test_a_file_with_an_include_is_linted_whole(monkeypatch, tmp_path):
    (tmp_path / "base.rules").write_text("let ratio = 0.25\n", encoding="utf-8")
    path = str(tmp_path / "top.rules")
    text = 'include "base.rules"\nprune conv1.weight sparse_ratio=ratio badkey=2\n'
    assert in_pieces(text, 1, monkeypatch, path) is None
    whole = report(lint_text(text, path))
    assert [d[2] for d in whole] == ["unknown setting 'badkey' for prune"]  # ratio: included


def test_a_let_the_first_pass_cannot_see_sends_the_file_whole(monkeypatch):
    text = "prune conv1.weight sparse_ratio=r\n\\\nlet r = 0.5\n"  # a let after a `\\`
    assert in_pieces(text, 1, monkeypatch) is None
    assert lint_text(text, "x.rules") == [] == lint_whole(text, "x.rules")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_repository_files_lint_alike_in_pieces(source: FilePath, monkeypatch):
    check_agrees(source.read_text(encoding="utf-8"), monkeypatch, str(source))


def test_a_generated_large_file_lints_alike_in_pieces(monkeypatch):
    text = rules_text(800) + "prune stem.block1.conv0.weight badkey=1 sparse_ratio=2\n"
    check_agrees(text, monkeypatch)


def test_a_file_of_one_line_lints_alike_in_pieces(monkeypatch):
    statements = [line.split("  #")[0] for line in rules_text(200).splitlines()[1:]]
    one_line = "; ".join(LATE_CONTEXT.splitlines() + statements)
    monkeypatch.setattr(lint_pieces, "PIECE_STATEMENTS", 7)
    assert report(lint_pieces.lint_in_pieces(one_line, "x.rules")) == report(
        lint_whole(one_line, "x.rules")
    )
    check_agrees(one_line, monkeypatch)


@FUZZ
@given(TEXTS)
def test_fuzzed_texts_lint_alike_in_pieces(text: str):
    with pytest.MonkeyPatch.context() as monkeypatch:
        check_agrees(text, monkeypatch)


def test_shuffled_examples_lint_alike_in_pieces(monkeypatch):
    for text in shuffled_examples(seed=11, rounds=15):
        check_agrees(text, monkeypatch)


def test_lint_jobs_lints_in_processes_as_in_one(capsys, tmp_path, monkeypatch):
    from cli_runner import run

    monkeypatch.setattr(lint_pieces, "PIECE_STATEMENTS", 5)
    monkeypatch.setattr(worker_pool, "PARALLEL_CHARACTERS", 1)
    text = LATE_CONTEXT * 6 + rules_text(60)
    path = tmp_path / "big.rules"
    path.write_text(text, encoding="utf-8")
    runs = [run(capsys, "lint", "--format", "json", "--jobs", jobs, path) for jobs in "123"]
    assert runs[0] == runs[1] == runs[2] and runs[0].code == 1
    assert runs[0].out.count('"code"') == len(lint_whole(text, str(path)))


def test_an_include_root_that_is_no_folder_is_reported_as_whole_lint_does(tmp_path):
    path = str(tmp_path / "a.rules")
    text = "prune conv1.weight sparse_ratio=0.5\n"
    missing = tmp_path / "nowhere"
    found = lint_text(text, path, include_root=missing)
    assert [d.code for d in found] == ["X803"] and "is not a folder" in found[0].message
    assert report(found) == report(lint_whole(text, path, include_root=missing))


def test_lint_whole_refuses_an_option_it_does_not_know():
    with pytest.raises(TypeError, match="include_roots"):
        lint_whole("prune conv1.weight sparse_ratio=0.5\n", "x.rules", include_roots="/x")
