"""`dsl-compress lint` and `manifest` end to end: exit codes, every output format parsed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_runner import Run, run
from dsl_compress.cli.main import main
from dsl_compress.models import resnet

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "rules"
RESNET = "dsl_compress.models:resnet"
JSON_KEYS = {
    "code",
    "severity",
    "message",
    "file",
    "line",
    "column",
    "end_line",
    "end_column",
    "hint",
}
WARNINGS = (
    "prune layer1.0.conv9.weight sparse_ratio=0.5\n"
    "prune conv1.weight sparse_ratio=0.01 granularity=out_channel\n"
)
# Every model-aware check on the bundled resnet: W301 (with a did-you-mean), W305, W303
# (line 3 is overridden by the type rule of line 4), E214 and E213.
MODEL_AWARE = (
    WARNINGS + "prune layer1.*.conv2.weight sparse_ratio=0.5\n"
    "prune Conv2d.weight in layer1.** sparse_ratio=0.3\n"
    "prune layer2.*.conv1.weight sparse_ratio=0.4 granularity=out_channel\n"
    "align layer2.0.bn2.weight with layer2.0.conv2.weight dims=[0]\n"
    "align layer1.0.bn1.weight with layer2.0.conv1.weight dims=[0]\n"
)
BROKEN = "prune conv1.weight sparse_ratio 0.5\n"
GITHUB_LINE = re.compile(
    r"^::(error|warning|notice) file=[^,:]+,line=\d+,endLine=\d+,col=\d+,endColumn=\d+,"
    r"title=[A-Z]\d{3}::\S.*$"
)
CONCISE_LINE = re.compile(r"^[^:\s]+:\d+:\d+: (error|warning|info)\[[A-Z]\d{3}\] \S.*$")


def usage_error(capsys, *argv) -> str:
    """argparse usage errors exit 2 through SystemExit; the message is on stderr."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in argv])
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working folder holding the rules files, named relative to it as CI does."""
    monkeypatch.chdir(tmp_path)
    Path("warn.rules").write_text(WARNINGS, encoding="utf-8")
    Path("model_aware.rules").write_text(MODEL_AWARE, encoding="utf-8")
    Path("broken.rules").write_text(BROKEN, encoding="utf-8")
    return tmp_path


def findings(capsys, *argv) -> list[dict]:
    result = run(capsys, "lint", *argv, "--format", "json")
    return json.loads(result.out)


# ----- exit status --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rules, model",
    [
        ("resnet_channels.rules", RESNET),
        ("global_backbone.rules", RESNET),
        ("transformer_int8.rules", "dsl_compress.models:transformer"),
    ],
)
def test_clean_file_with_its_model_exits_0_and_prints_nothing(capsys, rules, model):
    result = run(capsys, "lint", RULES_DIR / rules, "--model", model)
    assert result == Run(0, "", "")


@pytest.mark.parametrize("rules", sorted(p.name for p in RULES_DIR.glob("*.rules")))
def test_clean_file_without_model_exits_0_with_at_most_info(capsys, rules):
    result = run(capsys, "lint", RULES_DIR / rules)
    assert result.code == 0
    assert "error" not in result.out and "warning" not in result.out
    assert result.err == ""


def test_file_with_errors_exits_1_and_shows_source_and_help(capsys, here):
    result = run(capsys, "lint", "broken.rules")
    assert result.code == 1
    assert result.out.splitlines()[0] == "broken.rules:1:33: error[E101] unexpected '0'"
    assert "  1 | prune conv1.weight sparse_ratio 0.5" in result.out
    assert "help: expected '='" in result.out
    assert result.out.rstrip().endswith("Found 1 error.")


@pytest.mark.parametrize("name", ["missing.rules", "missing.json"])
def test_missing_input_is_an_input_error_exit_2(capsys, here, name):
    result = run(capsys, "lint", name, "--mode", "prune", "--format", "concise")
    assert result.code == 2
    assert result.out.startswith(f"{name}: error[E205] ")
    assert name in result.out.split("] ", 1)[1]


def test_missing_input_among_others_still_reports_their_findings_and_exits_2(capsys, here):
    result = run(capsys, "lint", "broken.rules", "missing.rules", "--format", "concise")
    assert result.code == 2
    assert [line.split(": ")[0] for line in result.out.splitlines()] == [
        "broken.rules:1:33",
        "missing.rules",
    ]


def test_unreadable_rules_file_is_an_input_error_exit_2(capsys, here, monkeypatch):
    Path("secret.rules").write_text("prune fc.weight sparse_ratio=0.5\n", encoding="utf-8")
    real = Path.read_bytes

    def refuse(path: Path) -> bytes:
        if path.name == "secret.rules":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    result = run(capsys, "lint", "secret.rules", "--format", "concise")
    assert result.code == 2
    assert result.out.startswith("secret.rules: error[E205] cannot read rules file")
    assert "Permission denied" in result.out


@pytest.mark.parametrize("fail_on, code", [(None, 1), ("error", 0), ("warning", 1)])
def test_warnings_fail_unless_fail_on_error(capsys, here, fail_on, code):
    extra = ["--fail-on", fail_on] if fail_on else []
    result = run(capsys, "lint", "warn.rules", "--model", RESNET, *extra)
    assert result.code == code
    assert "warning[W301]" in result.out and "warning[W305]" in result.out
    assert "error" not in result.out
    assert result.out.rstrip().endswith("Found 2 warnings.")


def test_several_files_are_all_checked_in_order(capsys, here):
    result = run(capsys, "lint", "warn.rules", "broken.rules", "--model", RESNET)
    assert result.code == 1
    files = [d["file"] for d in findings(capsys, "warn.rules", "broken.rules", "--model", RESNET)]
    assert files == ["broken.rules", "warn.rules", "warn.rules"]


# ----- formats ------------------------------------------------------------------------------------


def test_json_format_has_every_key_with_1_based_spans(capsys, here):
    found = findings(capsys, "warn.rules", "broken.rules", "--model", RESNET)
    assert [d["code"] for d in found] == ["E101", "W301", "W305"]
    for diag in found:
        assert JSON_KEYS <= set(diag), diag
        assert diag["line"] >= 1 and diag["column"] >= 1
        assert (diag["end_line"], diag["end_column"]) > (diag["line"], diag["column"])
    broken, w301, w305 = found
    assert broken["severity"] == "error" and broken["hint"] == "expected '='"
    assert (broken["line"], broken["column"], broken["end_line"], broken["end_column"]) == (
        1,
        33,
        1,
        34,
    )
    first_line = WARNINGS.splitlines()[0]
    assert w301 == {
        **w301,
        "severity": "warning",
        "file": "warn.rules",
        "line": 1,
        "column": first_line.index("layer1") + 1,  # the selector
        "end_line": 1,
        "end_column": first_line.index(" sparse_ratio") + 1,
    }
    assert w301["hint"].startswith("did you mean 'layer1.0.conv")
    assert (w305["line"], w305["column"]) == (2, WARNINGS.splitlines()[1].index("sparse_ratio") + 1)


def test_json_format_of_a_clean_file_is_an_empty_array(capsys):
    result = run(
        capsys, "lint", RULES_DIR / "resnet_channels.rules", "--model", RESNET, "--format", "json"
    )
    assert result.code == 0
    assert json.loads(result.out) == []


def test_sarif_format_is_sarif_2_1_0(capsys, here):
    result = run(capsys, "lint", "model_aware.rules", "--model", RESNET, "--format", "sarif")
    assert result.code == 1
    sarif = json.loads(result.out)
    assert sarif["version"] == "2.1.0"
    assert "sarif" in sarif["$schema"] and "2.1.0" in sarif["$schema"]
    assert len(sarif["runs"]) == 1
    driver = sarif["runs"][0]["tool"]["driver"]
    assert driver["name"] == "dsl-compress"
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids))
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["name"]
    results = sarif["runs"][0]["results"]
    assert sorted({r["ruleId"] for r in results}) == sorted(rule_ids)
    assert sorted(r["ruleId"] for r in results) == ["E213", "E214", "W301", "W303", "W305"]
    for item in results:
        assert item["level"] in {"error", "warning", "note"}
        assert item["message"]["text"]
        assert driver["rules"][item["ruleIndex"]]["id"] == item["ruleId"]
        location = item["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == "model_aware.rules"
        region = location["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
        assert (region["endLine"], region["endColumn"]) > (
            region["startLine"],
            region["startColumn"],
        )
    levels = {r["ruleId"]: r["level"] for r in results}
    assert levels["E213"] == levels["E214"] == "error" and levels["W301"] == "warning"


def test_sarif_of_a_clean_file_has_a_run_with_no_results(capsys):
    argv = ["lint", RULES_DIR / "resnet_channels.rules", "--model", RESNET, "--format", "sarif"]
    result = run(capsys, *argv)
    assert result.code == 0
    sarif = json.loads(result.out)
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"] == []


def test_github_format_prints_workflow_commands(capsys, here):
    result = run(capsys, "lint", "model_aware.rules", "--model", RESNET, "--format", "github")
    assert result.code == 1
    lines = result.out.splitlines()
    assert len(lines) == 5
    for line in lines:
        assert GITHUB_LINE.match(line), line
        assert "file=model_aware.rules," in line
    assert lines[0].startswith("::warning file=model_aware.rules,line=1,")
    assert "%0Ahelp: did you mean" in lines[0]  # the hint rides in the escaped message
    assert sum(line.startswith("::error ") for line in lines) == 2


def test_concise_format_is_one_line_per_finding(capsys, here):
    result = run(capsys, "lint", "model_aware.rules", "--model", RESNET, "--format", "concise")
    assert result.code == 1
    lines = result.out.splitlines()
    assert len(lines) == 5
    for line in lines:
        assert CONCISE_LINE.match(line), line
    assert (
        lines[0]
        == "model_aware.rules:1:7: warning[W301] this statement matches no module of the model"
    )


# ----- --model and --manifest ---------------------------------------------------------------------


def test_model_and_manifest_give_the_same_findings(capsys, here):
    assert run(capsys, "manifest", "--model", RESNET, "-o", "m.json").code == 0
    for fmt in ("json", "sarif", "github", "concise", "full"):
        by_model = run(capsys, "lint", "model_aware.rules", "--model", RESNET, "--format", fmt)
        by_manifest = run(
            capsys, "lint", "model_aware.rules", "--manifest", "m.json", "--format", fmt
        )
        assert by_model == by_manifest, fmt
    found = findings(capsys, "model_aware.rules", "--manifest", "m.json")
    assert [(d["code"], d["line"]) for d in found] == [
        ("W301", 1),
        ("W305", 2),
        ("W303", 3),
        ("E214", 6),
        ("E213", 7),
    ]
    assert "did you mean 'layer1.0.conv" in found[0]["hint"]


def test_without_model_model_aware_checks_are_not_run(capsys, here):
    codes = {d["code"] for d in findings(capsys, "model_aware.rules")}
    assert not codes & {"W301", "W303", "W305", "E213", "E214"}


# ----- usage and input errors: exit 2 -------------------------------------------------------------


def test_unknown_format_is_a_usage_error(capsys, here):
    err = usage_error(capsys, "lint", "warn.rules", "--format", "nope")
    assert "invalid choice: 'nope'" in err


def test_unknown_fail_on_is_a_usage_error(capsys, here):
    assert "invalid choice" in usage_error(capsys, "lint", "warn.rules", "--fail-on", "info")


def test_model_and_manifest_together_is_a_usage_error(capsys, here):
    err = usage_error(capsys, "lint", "warn.rules", "--model", RESNET, "--manifest", "m.json")
    assert "not allowed" in err


def test_no_rules_is_a_usage_error(capsys, here):
    assert "required" in usage_error(capsys, "lint")


@pytest.mark.parametrize(
    "option, value, pattern",
    [
        ("--model", "no_such_module:make", r"error\[L101\].*no module named 'no_such_module'"),
        ("--manifest", "missing.json", r"missing\.json: error\[L104\] no manifest file"),
    ],
)
def test_bad_model_or_manifest_exits_2_with_one_line(capsys, here, option, value, pattern):
    result = run(capsys, "lint", "warn.rules", option, value)
    assert result.code == 2 and result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), result.err


def test_manifest_that_is_not_a_manifest_exits_2(capsys, here):
    Path("m.json").write_text('{"modules": 3}', encoding="utf-8")
    result = run(capsys, "lint", "warn.rules", "--manifest", "m.json")
    assert result.code == 2 and "error[L104]" in result.err


def test_lint_in_a_process_exit_codes(tmp_path):
    (tmp_path / "warn.rules").write_text(WARNINGS, encoding="utf-8")
    (tmp_path / "broken.rules").write_text(BROKEN, encoding="utf-8")
    env = {**os.environ, "NO_COLOR": "1"}
    command = [sys.executable, "-m", "dsl_compress", "lint"]
    expected = {
        ("warn.rules", "--model", RESNET): 1,
        ("warn.rules", "--model", RESNET, "--fail-on", "error"): 0,
        ("broken.rules",): 1,
        ("warn.rules", "--format", "nope"): 2,
    }
    for argv, code in expected.items():
        done = subprocess.run(
            [*command, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == code, (argv, done.stderr)
        assert "Traceback" not in done.stderr
        assert "\x1b[" not in done.stdout + done.stderr


# ----- manifest -----------------------------------------------------------------------------------


def test_manifest_records_module_names_types_and_parameter_shapes(capsys, tmp_path):
    path = tmp_path / "m.json"
    assert run(capsys, "manifest", "--model", RESNET, "-o", path) == Run(0, "", "")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    modules = {m["name"]: m for m in manifest["modules"]}
    model = resnet()
    assert list(modules) == [name for name, _ in model.named_modules()]
    for name, module in model.named_modules():
        assert modules[name]["type"] == type(module).__name__
        expected = {k: list(v.shape) for k, v in module.named_parameters(recurse=False)}
        assert modules[name]["parameters"] == {**expected, **modules[name]["parameters"]}
        assert {k for k, v in modules[name]["parameters"].items() if v is not None} == set(expected)
    assert modules["layer1.0.conv1"]["parameters"]["weight"] == [8, 8, 3, 3]
    assert modules["layer1.0.bn1"]["buffers"]["running_mean"] == [8]
    assert modules["fc"] == {**modules["fc"], "type": "Linear"}
    assert "inputs" not in modules["fc"]


def test_manifest_with_example_input_records_io_shapes(capsys, tmp_path):
    torch.save(torch.randn(2, 1, 3, 16, 16), tmp_path / "example.pt")  # two batches of one
    path = tmp_path / "m.json"
    argv = ["manifest", "--model", RESNET, "-o", path, "--example-input", tmp_path / "example.pt"]
    assert run(capsys, *argv).code == 0
    modules = {m["name"]: m for m in json.loads(path.read_text(encoding="utf-8"))["modules"]}
    assert modules[""]["inputs"] == [[1, 3, 16, 16]] and modules[""]["outputs"] == [1, 10]
    assert modules["conv1"]["outputs"] == [1, 8, 16, 16]
    assert modules["layer2.0.conv1"]["outputs"] == [1, 16, 8, 8]
    assert modules["fc"]["inputs"] == [[1, 16]] and modules["fc"]["outputs"] == [1, 10]
    assert modules["relu"]["calls"] == 1  # the shared ReLU module of the stem


def test_manifest_with_an_input_the_model_rejects_exits_2_and_writes_nothing(capsys, tmp_path):
    torch.save(torch.randn(2, 3, 16, 16), tmp_path / "example.pt")  # batches of [3, 16, 16]
    argv = ["manifest", "--model", RESNET, "-o", tmp_path / "m.json"]
    result = run(capsys, *argv, "--example-input", tmp_path / "example.pt")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "error[X803]" in lines[0] and "forward()" in lines[0]
    assert os.listdir(tmp_path) == ["example.pt"]


def test_manifest_into_a_missing_folder_exits_2(capsys, tmp_path):
    result = run(capsys, "manifest", "--model", RESNET, "-o", tmp_path / "no" / "m.json")
    assert result.code == 2 and "error[L105]" in result.err
    assert os.listdir(tmp_path) == []


def test_manifest_needs_model_and_output(capsys):
    assert "--model" in usage_error(capsys, "manifest", "-o", "m.json")
    assert "--output" in usage_error(capsys, "manifest", "--model", RESNET)
