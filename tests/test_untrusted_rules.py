"""Rules from strangers: includes stay under their root, no input gives a traceback, and what one
statement may cost and print is capped."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import pytest

import dsl_compress as dc
from dsl_compress.codes import CODES
from dsl_compress.diagnostics import CompressionError, render_all
from dsl_compress import diagnostics as diagnostics_module
from dsl_compress.language.includes import MAX_INCLUDE_DEPTH
from dsl_compress.language.parse import parse_rule_file
from dsl_compress.language.lark_parser import MAX_NUMBER_LENGTH
from dsl_compress.resolve.check import MAX_PER_STATEMENT
from dsl_compress.schema.config_text import MAX_JSON_DEPTH
from dsl_compress.tools.code_docs import COMMAND_EXAMPLES, explain_code
from cli_runner import run

cli_main = importlib.import_module("dsl_compress.cli.main")  # the package exports main()
SECRET = "TOP-SECRET-LINE-7f3a"


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    """A project folder (the include root) beside a secret file outside it."""
    (tmp_path / "secret.txt").write_text(f"{SECRET}\nprune x.weight sparse_ratio=0.5\n")
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "sub" / "base.rules").write_text("prune Conv2d.weight sparse_ratio=0.5\n")
    monkeypatch.chdir(project)
    return project


def _escapes(tree: Path) -> dict[str, str]:
    """Ways out of the root: absolute, '..', a symlink inside the root, /proc, /etc."""
    (tree / "sub" / "link.rules").symlink_to(tree.parent / "secret.txt")
    return {
        "absolute": str(tree.parent / "secret.txt"),
        "dotdot": "../secret.txt",
        "deep dotdot": "sub/../../secret.txt",
        "symlink": "sub/link.rules",
        "proc": "/proc/self/environ",
        "etc": "/etc/passwd",
    }


@pytest.mark.parametrize("way", ["absolute", "dotdot", "deep dotdot", "symlink", "proc", "etc"])
@pytest.mark.parametrize("command", ["lint", "compile"])
def test_an_include_outside_the_root_is_e219_and_shows_none_of_it(tree, capsys, way, command):
    target = _escapes(tree)[way]
    (tree / "main.rules").write_text(f'prune Linear.weight sparse_ratio=0.5\ninclude "{target}"\n')
    result = run(capsys, command, "main.rules")
    assert result.code in (1, 2)
    assert "E219" in result.out + result.err and target in result.out + result.err
    assert SECRET not in result.out + result.err
    assert "root:" not in result.out + result.err  # no line of /etc/passwd


def test_include_root_option_widens_the_root(tree, capsys):
    (tree.parent / "shared.rules").write_text("prune Linear.weight sparse_ratio=0.25\n")
    (tree / "main.rules").write_text('include "../shared.rules"\n')
    assert "E219" in run(capsys, "lint", "main.rules").out
    widened = run(capsys, "lint", "main.rules", "--include-root", tree.parent)
    assert widened.code == 0, widened
    compiled = run(capsys, "compile", "main.rules", "--include-root", tree.parent)
    assert '"sparse_ratio": 0.25' in compiled.out


def test_includes_inside_the_root_still_work(tree):
    (tree / "main.rules").write_text('include "sub/base.rules"\n')
    assert len(dc.load(tree / "main.rules").statements) == 1


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01ELF" + SECRET.encode(), SECRET.encode() + b"\nprune \x00\n", b"\xff\xfe" + b"a" * 9],
    ids=["binary", "nul byte", "not utf-8"],
)
def test_a_file_that_is_not_rules_text_is_never_echoed(tree, capsys, content):
    (tree / "sub" / "blob.rules").write_bytes(content)
    (tree / "main.rules").write_text('include "sub/blob.rules"\n')
    for argv in (["lint", "main.rules"], ["lint", "sub/blob.rules"], ["fmt", "sub/blob.rules"]):
        result = run(capsys, *argv)
        assert result.code in (1, 2)
        assert "E102" in result.out + result.err
        assert SECRET not in result.out + result.err
        excerpts = re.findall(r"^ +\d+ \| (.*)$", result.out + result.err, re.MULTILINE)
        assert all(line.startswith("include ") for line in excerpts), excerpts


# ----- no traceback, whatever the input -------------------------------------------------------


def _inputs(folder: Path) -> dict[str, tuple[str, str]]:
    """name -> (rules file to lint, the code expected); each a class of input seen to crash."""
    loop = folder / "loop"
    loop.mkdir()
    (loop / "a").symlink_to("b")
    (loop / "b").symlink_to("a")
    chain = folder / "chain"
    chain.mkdir()
    for i in range(500):
        (chain / f"c{i}.rules").write_text(f'include "c{i + 1}.rules"\n')
    (chain / "c500.rules").write_text("prune Conv2d.weight sparse_ratio=0.5\n")
    texts = {
        "huge integer": ("prune Conv2d.weight sparse_ratio=" + "9" * 5000, "E104"),
        "huge float": ("let x = 1." + "0" * 5000, "E104"),
        "500 nested [": ("let x = " + "[" * 500 + "]" * 500, "E104"),
        "100000 nested [": ("let x = " + "[" * 100_000 + "]" * 100_000, "E104"),
        "symlink loop": ('include "loop/a"', "E205"),
        "name too long": (f'include "{"a" * 300}.rules"', "E205"),
        "proc mem": ('include "/proc/self/mem"', "E219"),
    }
    out = {}
    for name, (text, code) in texts.items():
        path = folder / (name.replace(" ", "_") + ".rules")
        path.write_text(text + "\n")
        out[name] = (str(path), code)
    out["500-level include chain"] = (str(chain / "c0.rules"), "E104")
    out["file name too long"] = (str(folder / ("b" * 300 + ".rules")), "E205")
    out["a folder"] = (str(folder), "E205")
    return out


@pytest.fixture
def crashers(tmp_path) -> dict[str, tuple[str, str]]:
    return _inputs(tmp_path)


CRASHERS = [
    "huge integer",
    "huge float",
    "500 nested [",
    "100000 nested [",
    "symlink loop",
    "name too long",
    "proc mem",
    "500-level include chain",
    "file name too long",
    "a folder",
]


# The inputs whose problem is in the named file itself, not in a file it includes.
FILE_ITSELF = {"huge integer", "huge float", "500 nested [", "100000 nested ["}
FILE_ITSELF |= {"file name too long", "a folder"}


@pytest.mark.parametrize("name", CRASHERS)
@pytest.mark.parametrize("command", ["lint", "compile", "fmt"])
def test_inputs_that_crashed_are_located_diagnostics(crashers, capsys, name, command):
    path, code = crashers[name]
    result = run(capsys, command, path)
    text = result.out + result.err
    assert "Traceback" not in text and "I901" not in text
    reads_includes = command != "fmt"  # fmt formats the file itself and follows no include
    if reads_includes or name in FILE_ITSELF:
        assert result.code in (1, 2)
        assert f"[{code}]" in text, text
    else:
        assert result.code == 0


def test_e104_is_located_at_the_token(tmp_path):
    path = tmp_path / "n.rules"
    path.write_text("let a = 1\nprune Conv2d.weight sparse_ratio=" + "1" * 101 + "\n")
    with pytest.raises(CompressionError) as info:
        dc.load(path)
    (diag,) = info.value.diagnostics
    assert (diag.code, diag.span.line, diag.span.column) == ("E104", 2, 34)
    assert str(MAX_NUMBER_LENGTH) in diag.message
    ok = tmp_path / "ok.rules"
    ok.write_text("prune Conv2d.weight sparse_ratio=0." + "5" * (MAX_NUMBER_LENGTH - 2) + "\n")
    assert dc.load(ok).compile().diagnostics == ()


@pytest.mark.parametrize("equals", ["=", " = "], ids=["together", "apart"])
def test_a_long_number_in_a_setting_is_e104_at_the_number_once_the_key_is_taken(equals):
    digits = "9" * (MAX_NUMBER_LENGTH + 1)
    with pytest.raises(CompressionError) as info:
        parse_rule_file(f"prune a.weight  k{equals}{digits}\n")
    (diag,) = info.value.diagnostics
    column = len(f"prune a.weight  k{equals}") + 1
    assert (diag.code, diag.span.column, diag.span.end_column) == ("E104", column, column + 1)
    # A key the parser does not take is the error, not the number after it.
    with pytest.raises(CompressionError) as info:
        parse_rule_file(f"prune a.weight except b.weight k{equals}{digits}\n")
    (diag,) = info.value.diagnostics
    assert (diag.code, diag.message, diag.span.column) == ("E101", "unexpected 'k'", 32)


def test_include_depth_limit(tmp_path):
    for i in range(MAX_INCLUDE_DEPTH + 1):
        (tmp_path / f"c{i}.rules").write_text(f'include "c{i + 1}.rules"\n')
    (tmp_path / f"c{MAX_INCLUDE_DEPTH + 1}.rules").write_text(
        "prune Conv2d.weight sparse_ratio=0.5\n"
    )
    with pytest.raises(CompressionError) as info:
        dc.load(tmp_path / "c0.rules")
    assert info.value.codes == ["E104"]
    assert len(dc.load(tmp_path / "c1.rules").statements) == 1  # exactly at the limit


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '[{"op_types": ["Conv2d"], "sparse_ratio": ' + "9" * 5000 + "}]",
    ],
    ids=["deep", "huge integer"],
)
def test_json_inputs_that_crashed_are_diagnostics(tmp_path, capsys, text):
    path = tmp_path / "c.json"
    path.write_text(text)
    rules = tmp_path / "r.rules"
    rules.write_text("prune Conv2d.weight sparse_ratio=0.5\n")
    for argv, code in (
        (["lint", path, "--mode", "prune"], "C101"),
        (["compile", path, "--mode", "prune"], "C101"),
        (["lint", rules, "--manifest", path], "L104"),
    ):
        result = run(capsys, *argv)
        assert result.code in (1, 2) and f"[{code}]" in result.out + result.err
        assert "Traceback" not in result.out + result.err


def test_json_at_the_depth_limit_still_reads(tmp_path):
    from dsl_compress.schema.config_text import parse_located_json

    text = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_located_json(text, "a.json").data is not None
    with pytest.raises(CompressionError):
        parse_located_json("[" + text + "]", "a.json")


class Boom(BaseException):
    """Not an Exception: what a careless model callable might raise."""


def explode():
    raise Boom("model construction went wrong")


def test_base_exception_from_a_model_callable_is_l101(tmp_path, capsys):
    rules = tmp_path / "r.rules"
    rules.write_text("prune Linear.weight sparse_ratio=0.5\n")
    result = run(capsys, "lint", rules, "--model", f"{__name__}:explode")
    assert result.code == 2 and "[L101]" in result.err and "Boom" in result.err


@pytest.mark.parametrize("raised", [RecursionError("deep"), MemoryError(), Boom("x"), KeyError(3)])
def test_the_last_resort_is_one_line_with_i901_and_exit_2(monkeypatch, capsys, raised):
    def broken(args):
        raise raised

    monkeypatch.setitem(cli_main.COMMANDS, "lint", broken)
    result = run(capsys, "lint", "whatever.rules")
    assert result.code == 2 and result.out == ""
    (line,) = result.err.strip().splitlines()
    assert line.startswith("error[I901] internal error in 'dsl-compress lint'")
    assert type(raised).__name__ in line and "report" in line


def test_i901_is_documented_with_the_line_the_command_prints():
    assert CODES["I901"].name == "internal-error"
    text = explain_code("I901")
    assert "Example" in text and "error[I901]" in COMMAND_EXAMPLES["I901"]
    printed = cli_main.internal_error_line(
        RecursionError("maximum recursion depth exceeded"), "lint"
    )
    assert COMMAND_EXAMPLES["I901"].splitlines()[-1] == printed


# ----- what one statement may cost and print --------------------------------------------------


def test_one_statement_shows_at_most_the_cap_then_a_count(tmp_path, capsys):
    keys = " ".join(f"unknown{i}=1" for i in range(2000))
    path = tmp_path / "k.rules"
    path.write_text(f"prune Conv2d.weight {keys}\nprune Linear.weight typo=1\n")
    result = run(capsys, "lint", path, "--format", "json")
    import json

    found = json.loads(result.out)
    first = [d for d in found if d["line"] == 1]
    assert [d["code"] for d in first].count("E202") == MAX_PER_STATEMENT
    (count,) = [d for d in first if d["code"] == "E220"]
    assert f"{2000 - MAX_PER_STATEMENT} more problems" in count["message"]
    assert [d["code"] for d in found if d["line"] == 2] == ["E202"]  # other statements unaffected
    full = run(capsys, "lint", path)
    assert len(full.out) < 40 * 1000  # 21 diagnostics, each excerpt a window of the long line


def test_an_excerpt_is_a_window_of_a_long_line(tmp_path):
    path = tmp_path / "w.rules"
    path.write_text('prune re"' + "a" * 50_000 + '".weight bad=1\n')
    with pytest.raises(CompressionError) as info:
        dc.load(path).compile()
    (text,) = render_all(info.value.diagnostics)
    excerpt, caret = text.splitlines()[1:3]
    assert len(excerpt) < 300 and "bad=1" in excerpt
    assert caret.index("^") - caret.index("|") == excerpt.index("bad=1") - excerpt.index("|")


def test_each_file_is_read_once_to_render_many_diagnostics(tmp_path, monkeypatch):
    path = tmp_path / "many.rules"
    path.write_text("prune Conv2d.weight badkey=1\n" * 300)
    reads = []
    real = diagnostics_module._file_lines
    monkeypatch.setattr(diagnostics_module, "_file_lines", lambda f: reads.append(f) or real(f))
    with pytest.raises(CompressionError) as info:
        dc.load(path).compile()
    assert reads == []  # raising renders nothing
    assert len(str(info.value).splitlines()) >= 300 * 3
    assert reads == [str(path)]


def test_control_characters_are_not_echoed(tmp_path):
    path = tmp_path / "esc.rules"
    path.write_text('prune Conv2d.weight bad="\x1b]0;pwned\x07\x1b[2J"\n')
    with pytest.raises(CompressionError) as info:
        dc.load(path).compile()
    assert "\x1b" not in str(info.value) and "\x07" not in str(info.value)


def test_unreadable_rules_file_is_e205(tmp_path, capsys, monkeypatch):
    path = tmp_path / "r.rules"
    path.write_text("prune Conv2d.weight sparse_ratio=0.5\n")

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    for command in ("lint", "fmt", "compile"):
        result = run(capsys, command, path)
        assert result.code == 2 and "[E205]" in result.err + result.out, result
        assert "Traceback" not in result.err


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs /proc")
def test_proc_self_mem_as_the_rules_file(capsys):
    result = run(capsys, "lint", "/proc/self/mem")
    assert result.code == 2 and "[E205]" in result.out + result.err
