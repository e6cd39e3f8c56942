"""`lint --fix` and `--diff`, and the structured fixes each did-you-mean producer attaches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli_runner import exit_of, run, write
from dsl_compress.diagnostics import Fix, Span
from dsl_compress.models import resnet
from dsl_compress.tools.lint import lint
from dsl_compress.tools.lint_fix import apply_fixes

RESNET = "dsl_compress.models:resnet"
# Fixable: a keyword, a type's case, a let name, a key, a granularity, a quoted scheme.
# Not fixable: 'unt8' (uint8 or int8?), 'int9' (no name close enough to be sure).
MIXED = (
    "let ratio = 0.5\n"
    "prnue Conv2D.weight sparse_ratio=ratoi\n"
    "prune Linear.weight sparse_ratio=0.5 granularity=out_chanel metrc=l1\n"
    'quantize Linear.weight quant_scheme="symetric" quant_dtype=unt8\n'
    "quantize Conv2d.weight quant_dtype=int9\n"
)
MIXED_FIXED = (
    "let ratio = 0.5\n"
    "prune Conv2d.weight sparse_ratio=ratio\n"
    "prune Linear.weight sparse_ratio=0.5 granularity=out_channel metric=l1\n"
    'quantize Linear.weight quant_scheme="symmetric" quant_dtype=unt8\n'
    "quantize Conv2d.weight quant_dtype=int9\n"
)


def findings(out: str) -> list[tuple[str, int]]:
    return [(d["code"], d["line"]) for d in json.loads(out)]


def spanned(text: str, span: Span) -> str:
    """The text a one-line span covers."""
    assert span.line == span.end_line
    return text.split("\n")[span.line - 1][span.column - 1 : span.end_column - 1]


# ----- lint --fix ----------------------------------------------------------------------------------


def test_fix_applies_every_unambiguous_fix_and_reports_what_is_left(capsys, here):
    write("mixed.rules", MIXED)
    done = run(capsys, "lint", "mixed.rules", "--fix", "--format", "json")
    assert Path("mixed.rules").read_text(encoding="utf-8") == MIXED_FIXED
    assert findings(done.out) == [("E203", 4), ("E203", 5)]
    assert done.code == 1
    assert "applied 6 fix(es) in 1 file(s)" in done.err
    assert not list(here.glob(".mixed.rules.*"))  # no staging file left behind


def test_fix_of_everything_exits_0(capsys, here):
    write("typos.rules", "prune Linear.weight sparse_ratio=0.5 metrc=l1\n")
    done = run(capsys, "lint", "typos.rules", "--fix")
    assert (done.code, done.out) == (0, "")
    assert Path("typos.rules").read_text() == "prune Linear.weight sparse_ratio=0.5 metric=l1\n"
    assert run(capsys, "lint", "typos.rules").code == 0


def test_fix_reaches_what_a_syntax_error_hid(capsys, here):
    """The keyword's fix lets the statement parse; the next pass fixes its key."""
    write("hidden.rules", "prnue Linear.weight sparse_ratio=0.5 metrc=l1\n")
    before = run(capsys, "lint", "hidden.rules", "--format", "json")
    assert findings(before.out) == [("E101", 1)]
    assert run(capsys, "lint", "hidden.rules", "--fix").code == 0
    assert Path("hidden.rules").read_text() == "prune Linear.weight sparse_ratio=0.5 metric=l1\n"


def test_fix_keeps_a_byte_order_mark_and_crlf(capsys, here):
    Path("bom.rules").write_bytes(b"\xef\xbb\xbfprune Linear.weight metrc=l1\r\n")
    assert run(capsys, "lint", "bom.rules", "--fix").code == 0
    assert Path("bom.rules").read_bytes() == b"\xef\xbb\xbfprune Linear.weight metric=l1\r\n"


def test_fix_edits_the_included_file_that_holds_the_finding(capsys, here):
    write("main.rules", 'include "base.rules"\nprune Linear.weight sparse_ratio=0.5\n')
    write("base.rules", "quantize Linear.weight quant_schem=affine\n")
    done = run(capsys, "lint", "main.rules", "--fix")
    assert done.code == 0
    assert Path("base.rules").read_text() == "quantize Linear.weight quant_scheme=affine\n"
    assert Path("main.rules").read_text().startswith('include "base.rules"\n')


def test_fix_with_a_manifest_fixes_a_target_typo(capsys, here):
    assert run(capsys, "manifest", "--model", RESNET, "-o", "m.json").code == 0
    write("aware.rules", "prune layer1.0.conv1.weigth sparse_ratio=0.5\n")
    plain = run(capsys, "lint", "aware.rules", "--format", "json")
    assert plain.code == 0  # without the model the typo cannot be seen
    done = run(capsys, "lint", "aware.rules", "--manifest", "m.json", "--fix")
    assert done.code == 0
    assert Path("aware.rules").read_text() == "prune layer1.0.conv1.weight sparse_ratio=0.5\n"


def test_a_failed_write_leaves_the_original(capsys, here, monkeypatch):
    write("mixed.rules", MIXED)

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dsl_compress.io.atomic.os.replace", refuse)
    done = run(capsys, "lint", "mixed.rules", "--fix")
    assert done.code == 2
    assert "L105" in done.err and "No space left on device" in done.err
    assert Path("mixed.rules").read_text(encoding="utf-8") == MIXED
    assert sorted(p.name for p in here.iterdir()) == ["mixed.rules"]


# ----- lint --diff ---------------------------------------------------------------------------------


def test_diff_prints_the_changes_and_writes_nothing(capsys, here):
    path = write("mixed.rules", MIXED)
    stamp = os.stat(path).st_mtime_ns
    done = run(capsys, "lint", "mixed.rules", "--diff")
    assert done.code == 1
    assert done.out.startswith("--- mixed.rules\n+++ mixed.rules (fixed)\n")
    assert "-prnue Conv2D.weight sparse_ratio=ratoi\n" in done.out
    assert "+prune Conv2d.weight sparse_ratio=ratio\n" in done.out
    assert "-quantize Conv2d.weight" not in done.out
    assert "would apply 6 fix(es) in 1 file(s); 2 finding(s) would be left" in done.err
    assert path.read_text(encoding="utf-8") == MIXED and os.stat(path).st_mtime_ns == stamp


def test_diff_exits_1_with_fixes_only_and_0_when_clean(capsys, here):
    write("typo.rules", "prune Linear.weight metrc=l1\n")
    assert run(capsys, "lint", "typo.rules", "--diff").code == 1
    write("clean.rules", "prune Linear.weight metric=l1\n")
    assert run(capsys, "lint", "clean.rules", "--diff") == (0, "", "")
    write("unfixable.rules", "quantize Linear.weight quant_dtype=int9\n")
    done = run(capsys, "lint", "unfixable.rules", "--diff")
    assert (done.code, done.out) == (1, "")


def test_diff_shows_the_included_file(capsys, here):
    write("main.rules", 'include "base.rules"\n')
    write("base.rules", "quantize Linear.weight quant_schem=affine\n")
    done = run(capsys, "lint", "main.rules", "--diff")
    assert (
        "--- base.rules\n" in done.out
        and "+quantize Linear.weight quant_scheme=affine\n" in done.out
    )
    assert Path("base.rules").read_text() == "quantize Linear.weight quant_schem=affine\n"


def test_fix_and_diff_together_is_a_usage_error(capsys, here):
    write("a.rules", MIXED)
    code, _, err = exit_of(capsys, "lint", "a.rules", "--fix", "--diff")
    assert code == 2 and "not allowed with" in err


# ----- overlapping fixes ---------------------------------------------------------------------------


def _fix(line: int, column: int, end: int, new: str) -> Fix:
    return Fix(Span("f", line, column, line, end), new, f"make it {new}")


def test_overlapping_fixes_wait_for_the_next_pass():
    text = "abcdef\nxyz\n"
    fixes = [_fix(1, 1, 5, "W"), _fix(1, 3, 7, "Q"), _fix(2, 2, 3, "Y")]
    assert apply_fixes(text, fixes) == ("Wef\nxYz\n", 2)


def test_the_same_fix_twice_is_applied_once():
    text = "prune Conv2D.weight\n"
    fixes = [_fix(1, 7, 13, "Conv2d"), _fix(1, 7, 13, "Conv2d")]
    assert apply_fixes(text, fixes) == ("prune Conv2d.weight\n", 1)


def test_a_fix_outside_the_text_or_changing_nothing_is_skipped():
    text = "ab\n"
    assert apply_fixes(text, [_fix(5, 1, 2, "x"), _fix(1, 1, 3, "ab")]) == (text, 0)


# ----- the fixes in json and sarif, and the text marks ---------------------------------------------


def test_json_carries_each_fix_as_an_edit(capsys, here):
    write("mixed.rules", MIXED)
    found = json.loads(run(capsys, "lint", "mixed.rules", "--format", "json").out)
    (keyword,) = [d for d in found if d["code"] == "E101"]
    assert keyword["fixes"] == [
        {
            "title": "replace 'prnue' with 'prune'",
            "replacement": "prune",
            "file": "mixed.rules",
            "line": 2,
            "column": 1,
            "end_line": 2,
            "end_column": 6,
        }
    ]
    assert all(d["fixes"] == [] for d in found if d["code"] != "E101")


def test_sarif_fixes_are_artifact_changes_with_replacements(capsys, here):
    write("typos.rules", "prune Linear.weight sparse_ratio=0.5 granularity=out_chanel\n")
    log = json.loads(run(capsys, "lint", "typos.rules", "--format", "sarif").out)
    (result,) = log["runs"][0]["results"]
    (fix,) = result["fixes"]
    assert fix["description"] == {"text": "replace 'out_chanel' with 'out_channel'"}
    (change,) = fix["artifactChanges"]
    assert change["artifactLocation"] == {"uri": "typos.rules"}
    (replacement,) = change["replacements"]
    region = replacement["deletedRegion"]
    assert replacement["insertedContent"] == {"text": "out_channel"}
    line = Path("typos.rules").read_text().split("\n")[region["startLine"] - 1]
    assert region["endLine"] == region["startLine"]
    assert line[region["startColumn"] - 1 : region["endColumn"] - 1] == "out_chanel"


def test_sarif_result_without_a_fix_has_no_fixes(capsys, here):
    write("bad.rules", "quantize Linear.weight quant_dtype=int9\n")
    log = json.loads(run(capsys, "lint", "bad.rules", "--format", "sarif").out)
    assert ["fixes" in r for r in log["runs"][0]["results"]] == [False]


def test_text_marks_fixable_findings(capsys, here):
    write("mixed.rules", MIXED.replace("prnue", "prune"))
    full = run(capsys, "lint", "mixed.rules").out
    assert "mixed.rules:2:7: error[E201] [*] unknown module type 'Conv2D'" in full
    assert "mixed.rules:5:36: error[E203] quant_dtype 'int9'" in full  # not fixable: no mark
    assert full.rstrip().endswith("Found 7 errors.\n[*] 5 fixable with --fix.")
    concise = run(capsys, "lint", "mixed.rules", "--format", "concise").out.splitlines()
    assert sum("[*]" in line for line in concise) == 5 and len(concise) == 7


# ----- each producer's fix covers exactly the offending token --------------------------------------


def only_fix(text: str, code: str, model=None, name: str = "p.rules") -> tuple[str, Fix]:
    write(name, text)
    (diag,) = [d for d in lint([name], model).diagnostics if d.code == code]
    (fix,) = diag.fixes
    return spanned(text, fix.span), fix


@pytest.mark.parametrize(
    "text, code, old, new",
    [
        ("quantise Linear.weight quant_dtype=int8\n", "E101", "quantise", "quantize"),
        ("prune Conv2D.weight sparse_ratio=0.5\n", "E201", "Conv2D", "Conv2d"),
        ("let ratio = 0.5\nprune Linear.weight sparse_ratio=ratoi\n", "E204", "ratoi", "ratio"),
        ("prune Linear.weight sparse_ratoi=0.5\n", "E202", "sparse_ratoi", "sparse_ratio"),
        ("prune Linear.weight granularity=out_chanel\n", "E203", "out_chanel", "out_channel"),
        ('prune Linear.weight granularity="out_chanel"\n', "E203", '"out_chanel"', '"out_channel"'),
        ("prune Linear.weight metric=fpmg\n", "E203", "fpmg", "fpgm"),
        ("prune Linear.weight apply_method=bypas\n", "E203", "bypas", "bypass"),
        ("quantize Linear.weight quant_scheme=afine\n", "E203", "afine", "affine"),
        ("quantize Linear.weight quant_dtype=imt8\n", "E203", "imt8", "int8"),
        ("register prune Blk { w granularty=out_channel }\n", "E202", "granularty", "granularity"),
        ("register prune Blk { w granularity=per_chanel }\n", "E203", "per_chanel", "per_channel"),
    ],
)
def test_each_fix_spans_the_offending_token(here, text, code, old, new):
    covered, fix = only_fix(text, code)
    assert (covered, fix.replacement) == (old, new)
    assert fix.title == f"replace {old!r} with {new!r}"


def test_a_type_typo_is_fixed_with_the_model(here):
    text = "prune Linaer.weight sparse_ratio=0.5\n"
    write("p.rules", text)
    (without,) = [d for d in lint(["p.rules"]).diagnostics if d.code == "E201"]
    assert "did you mean 'Linear'?" in without.hint and without.fixes == ()
    covered, fix = only_fix(text, "E201", resnet())
    assert (covered, fix.replacement) == ("Linaer", "Linear")


def test_a_target_typo_is_fixed_at_the_last_segment(here):
    text = "prune layer1.*.conv1.wieght sparse_ratio=0.5\n"
    covered, fix = only_fix(text, "W301", resnet())
    assert (covered, fix.replacement) == ("wieght", "weight")


def test_a_fix_keeps_within_its_file_when_included(here):
    write("main.rules", 'include "sub.rules"\n')
    write("sub.rules", "prune Linear.weight metrc=l1\n")
    (diag,) = lint(["main.rules"]).diagnostics
    (fix,) = diag.fixes
    assert Path(fix.span.file).resolve() == (here / "sub.rules").resolve()
    assert spanned(Path("sub.rules").read_text(), fix.span) == "metrc"


@pytest.mark.parametrize(
    "text, code",
    [
        ("quantize Linear.weight quant_dtype=unt8\n", "E203"),  # uint8 or int8
        ("prune Linear.weight sparse_rate=0.5\n", "E202"),  # three ratios are close
        ("let g = out_chanel\nprune Linear.weight granularity=g\n", "E203"),  # the let holds it
        ("let out_channel = 1\nprune Linear.weight granularity=out_chanel\n", "E203"),
        ("prune Linear.weight metric=l\n", "E203"),  # too short to tell a typo
        # the statement already sets the key a fix would write
        ("prune Conv2d.weight sparse_ratio=0.5 sparse_rato=0.7\n", "E202"),
        ("register prune Linear { weight link=x }\n", "E202"),  # a distill key, misplaced
    ],
)
def test_no_fix_where_the_replacement_is_not_certain(here, text, code):
    write("p.rules", text)
    found = [d for d in lint(["p.rules"]).diagnostics if d.code == code]
    assert found and all(d.fixes == () for d in found)


def test_one_file_named_two_ways_is_fixed_once(capsys, here):
    write("dup.rules", "prune Linear.weight sparse_rato=0.3\n")
    done = run(capsys, "lint", "dup.rules", "./dup.rules", "--fix")
    assert done.code == 0, done.out
    assert Path("dup.rules").read_text() == "prune Linear.weight sparse_ratio=0.3\n"


def test_an_included_file_read_two_ways_gets_no_fix(capsys, here):
    """Two includers define different lets: the one finding in the shared file has two
    readings, so no certain fix (and --fix changes nothing)."""
    write("a.rules", 'let ratio = 0.5\ninclude "base.rules"\n')
    write("b.rules", 'let ratios = 0.9\ninclude "base.rules"\n')
    write("base.rules", "prune Linear.weight sparse_ratio=rati\n")
    (finding,) = lint(["a.rules", "b.rules"]).diagnostics
    assert finding.code == "E204" and finding.fixes == ()
    run(capsys, "lint", "a.rules", "b.rules", "--fix")
    assert Path("base.rules").read_text() == "prune Linear.weight sparse_ratio=rati\n"


def test_a_read_only_file_is_not_rewritten(capsys, here):
    path = write("ro.rules", "prune Linear.weight sparse_rato=0.3\n")
    path.chmod(0o444)
    done = run(capsys, "lint", "ro.rules", "--fix")
    assert done.code == 2 and "L105" in done.err and "read-only" in done.err
    assert path.read_text() == "prune Linear.weight sparse_rato=0.3\n"


def test_a_diff_of_a_file_without_a_final_line_break_says_so(capsys, here):
    write("n.rules", "prune Linear.weight sparse_rato=0.3")
    done = run(capsys, "lint", "n.rules", "--diff")
    assert "+prune Linear.weight sparse_ratio=0.3\n\\ No newline at end of file\n" in done.out
