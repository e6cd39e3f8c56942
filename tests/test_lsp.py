"""The language server over stdio, driven by pygls's LanguageClient: diagnostics as lint gives
them, hover, completion, definition, document symbols and formatting at concrete positions."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pygls")

from lsprotocol import types  # noqa: E402

from dsl_compress.language.format import format_rules  # noqa: E402
from dsl_compress.tools.code_docs import explain_code  # noqa: E402
from dsl_compress.tools.lint import lint  # noqa: E402
from tests.lsp_session import run_session  # noqa: E402

RULES = """\
# E201 is what a misspelt type gives
let ratio = 0.5
prune Conv2D.weight sparse_ratio=ratio granularity=out_chanel
quantize   Linear.weight quant_dtype=int8
include "base.rules"
"""
BASE = "exclude head.**\n"


def _at(text: str, needle: str, offset: int = 0) -> tuple[int, int]:
    """The 0-based line and character of ``needle`` (plus ``offset``) in ``text``."""
    index = text.index(needle) + offset
    line = text.count("\n", 0, index)
    return line, index - (text.rfind("\n", 0, index) + 1)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "a.rules").write_text(RULES, encoding="utf-8")
    (tmp_path / "base.rules").write_text(BASE, encoding="utf-8")
    return tmp_path


def _lint_ranges(path: Path) -> set[tuple]:
    """What `lint` reports, as LSP ranges (0-based; our spans are 1-based)."""
    found = lint([str(path)]).diagnostics
    return {
        (d.code, d.span.line - 1, d.span.column - 1, d.span.end_line - 1, d.span.end_column - 1)
        for d in found
        if d.span is not None
    }


def _ranges(found: list[types.Diagnostic]) -> set[tuple]:
    return {
        (
            d.code,
            d.range.start.line,
            d.range.start.character,
            d.range.end.line,
            d.range.end.character,
        )
        for d in found
    }


def test_an_open_file_gets_lints_diagnostics_with_its_codes_ranges_and_hints(project):
    async def body(session):
        uri = session.open(project / "a.rules")
        return await session.diagnostics(uri)

    found = run_session(project, body)
    assert _ranges(found) == _lint_ranges(project / "a.rules")
    by_code = {d.code: d for d in found}
    assert {"E201", "E203"} <= set(by_code)
    assert by_code["E201"].severity == types.DiagnosticSeverity.Error
    assert _at(RULES, "Conv2D") == (
        by_code["E201"].range.start.line,
        by_code["E201"].range.start.character,
    )
    assert "help: did you mean 'Conv2d'" in by_code["E201"].message
    assert by_code["E201"].source == "dsl-compress"


def test_an_edit_is_checked_again_and_the_latest_version_wins(project):
    fixed = RULES.replace("Conv2D", "Conv2d").replace("out_chanel", "out_channel")

    async def body(session):
        uri = session.open(project / "a.rules")
        await session.diagnostics(uri, lambda found: bool(found))
        session.change(uri, RULES.replace("Conv2D", "Conv9d"))
        session.change(uri, fixed)
        return await session.diagnostics(uri, lambda found: not found)

    assert run_session(project, body) == []


def test_hover_on_a_key_says_its_meaning_allowed_values_and_default(project):
    async def body(session):
        uri = session.open(project / "a.rules")
        on_granularity = await session.hover(uri, *_at(RULES, "granularity", 2))
        on_dtype = await session.hover(uri, *_at(RULES, "quant_dtype", 1))
        return on_granularity, on_dtype

    on_granularity, on_dtype = run_session(project, body)
    assert "**granularity** (a prune statement): the blocks masked as one" in on_granularity
    assert "'out_channel'" in on_granularity and "default: default" in on_granularity
    assert "**quant_dtype** (a quantize statement)" in on_dtype
    assert "default: unset (int8)" in on_dtype


def test_hover_on_a_code_in_a_comment_or_on_a_diagnostic_explains_the_code(project):
    async def body(session):
        uri = session.open(project / "a.rules")
        await session.diagnostics(uri, lambda found: bool(found))
        in_comment = await session.hover(uri, *_at(RULES, "E201", 1))
        on_finding = await session.hover(uri, *_at(RULES, "out_chanel", 3))
        return in_comment, on_finding

    in_comment, on_finding = run_session(project, body)
    assert explain_code("E201") in in_comment
    assert explain_code("E203") in on_finding


def test_completion_offers_keywords_keys_values_types_and_let_names(project):
    text = RULES + "\nprune Linear.weight granularity=\nquantize Linear.weight \npr"
    lines = text.split("\n")

    async def body(session):
        uri = session.open(project / "a.rules", text)
        end = len(lines) - 1
        return {
            "keyword": await session.completion(uri, end, 2),
            "value": await session.completion(uri, end - 2, len(lines[end - 2])),
            "key": await session.completion(uri, end - 1, len(lines[end - 1])),
            "type": await session.completion(uri, *_at(text, "Linear.weight gran")),
        }

    found = run_session(project, body)
    assert {"prune", "quantize", "distill", "let", "include"} <= set(found["keyword"])
    assert {"default", "out_channel", "in_channel", "per_channel", "ratio"} <= set(found["value"])
    assert {"quant_dtype", "quant_scheme", "granularity"} <= set(found["key"])
    assert "sparse_ratio" not in found["key"]
    assert {"Linear", "Conv2d"} <= set(found["type"])


def test_definition_of_a_let_name_and_of_an_include(project):
    async def body(session):
        uri = session.open(project / "a.rules")
        of_let = await session.definition(uri, *_at(RULES, "=ratio", 2))
        of_include = await session.definition(uri, *_at(RULES, "base.rules"))
        return uri, of_let, of_include

    uri, of_let, of_include = run_session(project, body)
    assert of_let.uri == uri
    start = of_let.range.start
    assert (start.line, start.character) == _at(RULES, "ratio =")
    assert of_include.uri == (project / "base.rules").resolve().as_uri()


def test_definition_of_a_let_reaches_into_included_files(project):
    (project / "lets.rules").write_text('include "deeper.rules"\nlet shallow = 0.1\n')
    (project / "deeper.rules").write_text("# the deepest\nlet deep = 0.25\n")
    text = 'include "lets.rules"\nprune conv1.weight sparse_ratio=deep\n'
    (project / "c.rules").write_text(text)

    async def body(session):
        uri = session.open(project / "c.rules")
        unsaved = text.replace("=deep", "=shallow")
        session.change(uri, unsaved)
        found = await session.definition(uri, *_at(unsaved, "=shallow", 2))
        missing = await session.definition(uri, *_at(unsaved, "conv1"))
        return found, missing

    found, missing = run_session(project, body)
    assert found.uri == (project / "lets.rules").resolve().as_uri()
    assert (found.range.start.line, found.range.start.character) == (1, 4)
    assert missing is None

    async def deeper(session):
        uri = session.open(project / "c.rules")
        return await session.definition(uri, *_at(text, "=deep", 2))

    found = run_session(project, deeper)
    assert found.uri == (project / "deeper.rules").resolve().as_uri()
    assert (found.range.start.line, found.range.start.character) == (1, 4)


def test_one_symbol_per_statement(project):
    async def body(session):
        return await session.symbols(session.open(project / "a.rules"))

    found = run_session(project, body)
    assert [s.range.start.line for s in found] == [1, 2, 3, 4]
    assert found[0].name == "let ratio = 0.5"
    assert found[2].name.startswith("quantize Linear.weight")
    assert found[3].name == 'include "base.rules"'


def test_formatting_is_fmt_and_an_unparsable_file_gets_no_edits(project):
    broken = "prune Conv2d.weight sparse_ratio=\n"

    async def body(session):
        edits = await session.formatting(session.open(project / "a.rules"))
        none = await session.formatting(session.open(project / "broken.rules", broken))
        return edits, none

    edits, none = run_session(project, body)
    assert len(edits) == 1 and edits[0].new_text == format_rules(RULES)
    assert edits[0].new_text != RULES
    assert none == []


def _applied(text: str, edit: types.TextEdit) -> str:
    lines = text.splitlines(keepends=True)
    start, end = edit.range.start, edit.range.end
    offset = sum(len(line) for line in lines[: start.line]) + start.character
    stop = sum(len(line) for line in lines[: end.line]) + end.character
    return text[:offset] + edit.new_text + text[stop:]


def test_a_diagnostic_with_one_replacement_offers_it_as_a_quick_fix(project):
    async def body(session):
        uri = session.open(project / "a.rules")
        found = await session.diagnostics(uri)
        by_code = {d.code: d for d in found}
        offered = {
            code: await session.code_actions(uri, [by_code[code]]) for code in ("E201", "E203")
        }
        return uri, offered, await session.code_actions(uri, [])

    uri, offered, none = run_session(project, body)
    assert none == []
    fixed = RULES
    for code, old, new in (("E201", "Conv2D", "Conv2d"), ("E203", "out_chanel", "out_channel")):
        (action,) = offered[code]
        assert action.kind == types.CodeActionKind.QuickFix and action.is_preferred
        assert action.title == f"replace '{old}' with '{new}'"
        (edit,) = action.edit.changes[uri]
        line, character = _at(RULES, old)
        assert (edit.range.start.line, edit.range.start.character) == (line, character)
        assert edit.range.end.character == character + len(old) and edit.new_text == new
        fixed = _applied(fixed, edit)
    (project / "fixed.rules").write_text(fixed, encoding="utf-8")
    codes = {d.code for d in lint([str(project / "fixed.rules")]).diagnostics}
    assert not codes & {"E201", "E203"}


def test_no_completion_inside_a_string_and_no_definition_inside_a_comment(project):
    text = 'let ratio = 0.5\nquantize Linear.weight quant_scheme="sym # x\n# uses ratio here\n'
    (project / "s.rules").write_text(text)

    async def body(session):
        uri = session.open(project / "s.rules")
        in_string = await session.completion(uri, *_at(text, "# x", 2))
        in_comment = await session.definition(uri, *_at(text, "ratio here", 2))
        return in_string, in_comment

    in_string, in_comment = run_session(project, body)
    assert in_string == [] and in_comment is None
