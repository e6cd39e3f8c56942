"""Lint output formats parsed back (full, concise, json, sarif, github) and `explain CODE`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dsl_compress
from dsl_compress import CompressionError, Diagnostic, Severity
from dsl_compress.codes import CODES
from dsl_compress.diagnostics import Span
from dsl_compress.tools.lint import LintResult, lint
from dsl_compress.models import cnn, resnet, tied_lm, transformer
from dsl_compress.cli.formats import FORMATS, artifact_uri, render
from dsl_compress.tools.code_docs import EXAMPLES, FAMILIES, explain_code

MODELS = {"cnn": cnn, "resnet": resnet, "transformer": transformer, "tied_lm": tied_lm}
JSON_KEYS = {
    "code",
    "name",
    "severity",
    "message",
    "file",
    "line",
    "column",
    "end_line",
    "end_column",
    "hint",
    "fixes",
}
CONCISE = re.compile(
    r"^(?P<file>[^:]+)(?::(?P<line>\d+):(?P<column>\d+))?: "
    r"(?P<severity>error|warning|info)\[(?P<code>[A-Z]\d{3})\] (?P<fixable>\[\*\] )?"
    r"(?P<message>.+)$"
)
WORKFLOW_COMMAND = re.compile(
    r"^::(?P<command>error|warning|notice) (?P<props>[^:]*)::(?P<data>.*)$"
)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def mixed(workdir) -> LintResult:
    """Errors, warnings, an info, a finding without a line, a folder with a space in its name."""
    (workdir / "a.rules").write_text(
        "prune conv1.weight sparse_ratio=0.1 granularity=out_channel metric=l1\n"
        "prune conv9.weight sparse_ratio=0.5\n"
        "prune conv2.weight sparse_ratio=0.5 metric=l2\n"
    )
    (workdir / "b.rules").write_text("prune conv1.weight sparse_ratio=\n")
    (workdir / "my rules").mkdir()
    (workdir / "my rules" / "c.rules").write_text("prune Conv2D.weight sparse_ratio=0.5\n")
    return lint(["a.rules", "b.rules", "my rules/c.rules", "missing.rules"], cnn())


def test_mixed_result_holds_every_kind_of_finding(mixed):
    found = [(d.code, d.severity.value, d.span.line if d.span else None) for d in mixed.diagnostics]
    assert found == [
        ("W304", "info", None),
        ("W305", "warning", 1),
        ("W301", "warning", 2),
        ("E103", "error", 1),
        ("E205", "error", None),
        ("E201", "error", 1),
    ]


# ----- full and concise ---------------------------------------------------------------------------


def test_full_renders_each_diagnostic_with_its_source_then_a_summary(mixed):
    text = render(mixed, "full")
    blocks = text.split("\n\n")
    assert len(blocks) == len(mixed.diagnostics) + 1
    # Conv2D's case slip is the one finding lint --fix can fix.
    assert blocks[-1] == "Found 3 errors, 2 warnings, 1 info message.\n[*] 1 fixable with --fix."
    w305 = blocks[1].split("\n")
    assert w305[0].startswith("a.rules:1:20: warning[W305] conv1.weight: sparse_ratio=0.1")
    assert w305[1] == "  1 | prune conv1.weight sparse_ratio=0.1 granularity=out_channel metric=l1"
    assert w305[2] == "    | " + " " * 19 + "^" * len("sparse_ratio=0.1")
    assert w305[3].startswith("  help: use sparse_ratio >= 0.125")
    assert blocks[4] == "missing.rules: error[E205] no rules file at 'missing.rules'"


def test_full_and_concise_are_empty_when_clean(workdir):
    (workdir / "ok.rules").write_text("prune Conv2d.weight sparse_ratio=0.5\n")
    result = lint(["ok.rules"], cnn())
    assert [render(result, fmt) for fmt in ("full", "concise", "github")] == ["", "", ""]
    assert json.loads(render(result, "json")) == []
    assert json.loads(render(result, "sarif"))["runs"][0]["results"] == []


def test_summary_counts_singular(workdir):
    (workdir / "t.rules").write_text("prune conv1.weight sparse_ratio=\n")
    assert render(lint(["t.rules"]), "full").endswith("\n\nFound 1 error.")


def test_concise_is_one_parsable_line_per_diagnostic(mixed):
    lines = render(mixed, "concise").split("\n")
    assert len(lines) == len(mixed.diagnostics)
    for line, diag in zip(lines, mixed.diagnostics):
        match = CONCISE.match(line)
        assert match, line
        assert (match["code"], match["severity"], match["message"]) == (
            diag.code,
            diag.severity.value,
            diag.message,
        )
        assert bool(match["fixable"]) == bool(diag.fixes)
        if diag.span is not None:
            assert (int(match["line"]), int(match["column"])) == (diag.span.line, diag.span.column)
    assert lines[5] == "my rules/c.rules:1:7: error[E201] [*] unknown module type 'Conv2D'"


# ----- json ---------------------------------------------------------------------------------------


def test_json_is_one_array_of_objects_with_1_based_positions(mixed):
    objects = json.loads(render(mixed, "json"))
    assert isinstance(objects, list) and len(objects) == len(mixed.diagnostics)
    for obj, diag in zip(objects, mixed.diagnostics):
        assert set(obj) == JSON_KEYS
        assert obj["code"] == diag.code and obj["name"] == CODES[diag.code].name
        assert obj["severity"] in ("error", "warning", "info")
        assert isinstance(obj["message"], str) and isinstance(obj["file"], str)
        assert obj["hint"] is None or isinstance(obj["hint"], str)
        positions = [obj[k] for k in ("line", "column", "end_line", "end_column")]
        if diag.span is None:
            assert positions == [None] * 4
        else:
            assert all(isinstance(n, int) and n >= 1 for n in positions)
            assert (obj["end_line"], obj["end_column"]) > (obj["line"], obj["column"])
    w305 = objects[1]
    assert (w305["file"], w305["line"], w305["column"], w305["end_line"], w305["end_column"]) == (
        "a.rules",
        1,
        20,
        1,
        36,
    )
    assert objects[4]["file"] == "missing.rules" and objects[4]["hint"] is None


# ----- sarif --------------------------------------------------------------------------------------

SARIF_LEVELS = {"none", "note", "warning", "error"}
RESULT_KEYS = {"ruleId", "ruleIndex", "level", "message", "locations", "fixes"}
REGION_KEYS = {"startLine", "startColumn", "endLine", "endColumn"}


def check_sarif(doc: dict) -> None:
    """The parts of SARIF 2.1.0 that this tool writes and GitHub code scanning reads."""
    assert doc["$schema"].endswith("sarif-2.1.0.json") and doc["version"] == "2.1.0"
    assert isinstance(doc["runs"], list) and len(doc["runs"]) == 1
    run = doc["runs"][0]
    assert run["columnKind"] in ("utf16CodeUnits", "unicodeCodePoints")
    driver = run["tool"]["driver"]
    assert driver["name"] == "dsl-compress" and driver["version"] == dsl_compress.__version__
    assert driver["informationUri"].startswith("https://")
    ids = [rule["id"] for rule in driver["rules"]]
    assert len(ids) == len(set(ids))
    for rule in driver["rules"]:
        assert rule["name"] == CODES[rule["id"]].name
        for key in ("shortDescription", "fullDescription", "help"):
            assert isinstance(rule[key]["text"], str) and rule[key]["text"]
    for result in run["results"]:
        check_sarif_result(result, ids)


def check_sarif_result(result: dict, ids: list[str]) -> None:
    assert set(result) <= RESULT_KEYS and {"ruleId", "message", "locations"} <= set(result)
    assert ids[result["ruleIndex"]] == result["ruleId"]
    assert result["level"] in SARIF_LEVELS
    assert isinstance(result["message"]["text"], str) and result["message"]["text"]
    (location,) = result["locations"]
    physical = location["physicalLocation"]
    uri = physical["artifactLocation"]["uri"]
    assert isinstance(uri, str) and "\\" not in uri and not uri.startswith("/") and " " not in uri
    region = physical["region"]
    assert set(region) <= REGION_KEYS and isinstance(region["startLine"], int)
    assert all(isinstance(v, int) and v >= 1 for v in region.values())
    if "endLine" in region:
        assert region["endLine"] >= region["startLine"]
        if region["endLine"] == region["startLine"]:
            assert region["endColumn"] > region["startColumn"]


def test_sarif_has_the_structure_of_2_1_0(mixed):
    doc = json.loads(render(mixed, "sarif"))
    check_sarif(doc)
    run = doc["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == sorted(
        {d.code for d in mixed.diagnostics}
    )
    results = run["results"]
    assert [r["ruleId"] for r in results] == [d.code for d in mixed.diagnostics]
    assert [r["level"] for r in results] == [
        "note",
        "warning",
        "warning",
        "error",
        "error",
        "error",
    ]


def test_sarif_locations_and_messages(mixed):
    results = json.loads(render(mixed, "sarif"))["runs"][0]["results"]
    w305 = results[1]
    physical = w305["locations"][0]["physicalLocation"]
    assert physical == {
        "artifactLocation": {"uri": "a.rules"},
        "region": {"startLine": 1, "startColumn": 20, "endLine": 1, "endColumn": 36},
    }
    assert w305["message"]["text"].endswith(
        "\nhelp: use sparse_ratio >= 0.125, or a finer granularity"
    )
    missing = results[4]["locations"][0]["physicalLocation"]
    assert missing == {"artifactLocation": {"uri": "missing.rules"}, "region": {"startLine": 1}}
    spaced = results[5]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert spaced == "my%20rules/c.rules"


def test_artifact_uri_is_relative_with_forward_slashes(workdir, tmp_path_factory):
    assert artifact_uri(str(workdir / "sub" / "x.rules")) == "sub/x.rules"
    assert artifact_uri("sub/x.rules") == "sub/x.rules"
    outside = tmp_path_factory.mktemp("elsewhere") / "y.rules"
    assert artifact_uri(str(outside)) == outside.as_uri()


# ----- github -------------------------------------------------------------------------------------


def unescape(text: str) -> str:
    for code, char in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(code, char)
    return text


def parse_workflow_command(line: str) -> tuple[str, dict[str, str], str]:
    match = WORKFLOW_COMMAND.match(line)
    assert match, line
    props = dict(item.split("=", 1) for item in match["props"].split(","))
    return match["command"], {k: unescape(v) for k, v in props.items()}, unescape(match["data"])


def test_github_annotations(mixed):
    lines = render(mixed, "github").split("\n")
    assert len(lines) == len(mixed.diagnostics)
    parsed = [parse_workflow_command(line) for line in lines]
    assert [c for c, _, _ in parsed] == ["notice", "warning", "warning", "error", "error", "error"]
    command, props, data = parsed[1]
    assert props == {
        "file": "a.rules",
        "line": "1",
        "endLine": "1",
        "col": "20",
        "endColumn": "36",
        "title": "W305",
    }
    assert data.startswith("conv1.weight: sparse_ratio=0.1") and "\nhelp: " in data
    assert parsed[4][1] == {"file": "missing.rules", "title": "E205"}
    assert parsed[5][1]["file"] == "my rules/c.rules"


def test_github_escapes_data_and_properties():
    span = Span("odd,name:1.rules", 2, 3, 2, 9)
    diag = Diagnostic("E207", Severity.ERROR, "got 50%, not 0.5\r\nfix: divide", span=span)
    line = render(LintResult((diag,)), "github")
    assert "\n" not in line and "\r" not in line
    assert line.startswith("::error file=odd%2Cname%3A1.rules,line=2,")
    assert line.endswith("::got 50%25, not 0.5%0D%0Afix: divide")
    _, props, data = parse_workflow_command(line)
    assert props["file"] == "odd,name:1.rules" and data == "got 50%, not 0.5\r\nfix: divide"


def test_github_omits_columns_on_a_span_over_several_lines():
    diag = Diagnostic("W303", Severity.WARNING, "dead", span=Span("t.rules", 2, 5, 4, 2))
    _, props, _ = parse_workflow_command(render(LintResult((diag,)), "github"))
    assert props == {"file": "t.rules", "line": "2", "endLine": "4", "title": "W303"}


def test_unknown_format_is_x803(mixed):
    assert FORMATS == ("full", "concise", "json", "sarif", "github")
    with pytest.raises(CompressionError) as info:
        render(mixed, "sraif")
    assert info.value.codes == ["X803"] and "'sarif'" in info.value.diagnostics[0].hint


# ----- explain CODE -------------------------------------------------------------------------------


def test_explain_a_lint_code_has_what_why_example_and_fix():
    text = explain_code("E213")
    info = CODES["E213"]
    assert text.split("\n")[0] == "E213 (align-size-mismatch)"
    for part in ("What it checks:", info.summary, "Why:", "Example:", "Fix:", info.fix):
        assert part in text
    assert "# with --model dsl_compress.models:cnn" in text
    assert "    align bn1.weight with conv2.weight dims=[0]" in text


@pytest.mark.parametrize("code", ["E201", "W301", "p509", " L101 "])
def test_explain_reads_the_code_table(code):
    key = code.strip().upper()
    text = explain_code(code)
    assert text.startswith(f"{key} ({CODES[key].name})")
    assert CODES[key].summary in text and CODES[key].fix in text


def test_every_code_explains_with_a_family():
    for code in CODES:
        assert code[:2] in FAMILIES, code
        assert "Why:" in explain_code(code)


def test_explain_unknown_code_is_x803_with_did_you_mean():
    with pytest.raises(CompressionError) as info:
        explain_code("W3011")
    assert info.value.codes == ["X803"]
    assert "'W301'" in info.value.diagnostics[0].hint
    with pytest.raises(CompressionError) as info:
        explain_code("matches-nothing")
    assert info.value.diagnostics[0].hint == "did you mean 'W301'?"


@pytest.mark.parametrize("code", sorted(EXAMPLES))
def test_every_example_produces_its_code(workdir, code):
    model, text = EXAMPLES[code]
    (workdir / "a.rules").write_text(text + "\n")
    result = lint(["a.rules"], MODELS[model]() if model else None)
    assert code in [d.code for d in result.diagnostics], render(result, "concise")


# ----- large results: written a diagnostic at a time, as one document would be ------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(JSON_VALUES)
def test_values_are_written_as_json_dumps_indents_them(value):
    from dsl_compress.cli.formats import _indented

    assert _indented(value, "") == json.dumps(value, indent=2)


def one_document(result: LintResult, fmt: str) -> str:
    """What json and sarif were written as before: one json.dumps of the whole document."""
    from dsl_compress.cli.formats import _json_object, _sarif_result, sarif_log

    if fmt == "json":
        return json.dumps([_json_object(d) for d in result.diagnostics], indent=2)
    codes = sorted({d.code for d in result.diagnostics})
    results = [_sarif_result(d, codes.index(d.code)) for d in result.diagnostics]
    return json.dumps(sarif_log(codes, results), indent=2)


@pytest.mark.parametrize("fmt", ["json", "sarif"])
def test_many_findings_are_written_a_diagnostic_at_a_time(workdir, mixed, fmt):
    from dsl_compress.cli.formats import rendered_parts

    many = "".join(
        f"prune conv{i}.weight sparse_ratio=2 badkey={i} metric=l{i % 3}\n" for i in range(40)
    )
    (workdir / "many.rules").write_text(many + "prune Conv2D.weight sparse_ratio=0.5\n")
    key = '"code":' if fmt == "json" else '"ruleId":'
    for result in (lint(["many.rules"]), mixed, LintResult(())):
        parts = list(rendered_parts(result, fmt))
        assert "".join(parts) == one_document(result, fmt)
        per_part = [part.count(key) for part in parts]  # never more than one finding
        assert max(per_part) <= 1 and sum(per_part) == len(result.diagnostics)
    assert any(d.fixes for d in lint(["many.rules"]).diagnostics)


def test_full_is_written_a_diagnostic_at_a_time(mixed):
    from dsl_compress.cli.formats import rendered_parts

    parts = list(rendered_parts(mixed, "full"))
    assert len(parts) == len(mixed.diagnostics) + 1
    assert "".join(parts) == render(mixed, "full") and parts[-1].startswith("\n\nFound ")
