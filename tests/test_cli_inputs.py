"""What every command that reads rules takes: .rules files and NNI config_lists, with --model or
--manifest; a missing input is exit 2; argument errors show the subcommand's usage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli_runner import exit_of, run
from dsl_compress.diagnostics import CompressionError
from dsl_compress.resolve.config_input import plan_from_config_list
from dsl_compress.models import resnet

ROOT = Path(__file__).resolve().parents[1]
NNI_PRUNE = ROOT / "rules" / "nni" / "resnet_prune_block_conv1.json"
RESNET = "dsl_compress.models:resnet"
# Two configs with one value problem each: a ratio out of range, a misspelt key.
BAD_VALUES = (
    "[\n"
    '  {"op_types": ["Conv2d"], "sparse_ratio": 2},\n'
    '  {"op_names": ["fc"], "sparsity_ratio": 0.5}\n'
    "]\n"
)
# Valid configs, but one names a module resnet lacks.
UNKNOWN_NAME = (
    "[\n"
    '  {"op_types": ["Conv2d"], "sparse_ratio": 0.5, "granularity": "out_channel"},\n'
    '  {"op_names": ["fc", "fc9"], "sparse_ratio": 0.5}\n'
    "]\n"
)
CLEAN = '[{"op_names": ["fc"], "sparse_ratio": 0.5}]\n'
BY_MODE = {
    "prune": [{"op_names": ["fc"], "sparse_ratio": 0.5}],
    "quantize": [{"op_names": ["fc"], "quant_dtype": "int9"}],
}


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working folder with config_lists and a resnet manifest, named relative to it."""
    monkeypatch.chdir(tmp_path)
    Path("bad_values.json").write_text(BAD_VALUES, encoding="utf-8")
    Path("unknown_name.json").write_text(UNKNOWN_NAME, encoding="utf-8")
    Path("clean.json").write_text(CLEAN, encoding="utf-8")
    Path("by_mode.json").write_text(json.dumps(BY_MODE, indent=2), encoding="utf-8")
    assert run_quiet("manifest", "--model", RESNET, "-o", "manifest.json") == 0
    return tmp_path


def run_quiet(*argv) -> int:
    from dsl_compress.cli.main import main

    return main([str(a) for a in argv])


def place_of(text: str, needle: str, file: str) -> str:
    """'file:line:col' of the first ``needle`` in ``text``, 1-based, as the linter reports it."""
    before = text[: text.index(needle)]
    return f"{file}:{before.count(chr(10)) + 1}:{len(before) - before.rfind(chr(10))}"


def lint_json(capsys, *argv) -> tuple[int, list[dict]]:
    result = run(capsys, "lint", *argv, "--format", "json")
    return result.code, json.loads(result.out)


def where(finding: dict) -> str:
    return f"{finding['file']}:{finding['line']}:{finding['column']}"


# ----- item 5: lint reads config_lists --------------------------------------------------------


def test_lint_config_list_locates_value_errors_at_their_json_file_line_col(capsys, here):
    code, found = lint_json(capsys, "bad_values.json", "--mode", "prune")
    assert code == 1
    assert [(f["code"], where(f)) for f in found] == [
        ("C104", place_of(BAD_VALUES, '"sparse_ratio"', "bad_values.json")),
        ("C102", place_of(BAD_VALUES, '"sparsity_ratio"', "bad_values.json")),
    ]
    assert "did you mean 'sparse_ratio'" in found[1]["hint"]


def test_lint_config_list_that_is_not_json_is_a_located_finding(capsys, here):
    Path("broken.json").write_text('[{"op_types": ["Conv2d"],\n', encoding="utf-8")
    code, found = lint_json(capsys, "broken.json", "--mode", "prune")
    assert code == 1
    assert [(f["code"], f["file"], f["line"]) for f in found] == [("C101", "broken.json", 2)]


def test_lint_config_list_without_mode_names_the_option_and_exits_2(capsys, here):
    result = run(capsys, "lint", "clean.json", "--format", "concise")
    assert result.code == 2
    assert result.out.startswith("clean.json: error[X803] an NNI config_list needs a mode")
    code, found = lint_json(capsys, "clean.json")
    assert found[0]["hint"] == "give --mode prune|quantize|distill"


def test_api_mode_hint_speaks_of_the_mode_argument(here):
    with pytest.raises(CompressionError) as caught:
        plan_from_config_list(resnet(), "clean.json")
    assert caught.value.diagnostics[0].hint.startswith("pass mode=")
    assert "--mode" not in caught.value.diagnostics[0].hint


def test_lint_config_list_object_by_mode_needs_no_mode_and_locates_per_mode(capsys, here):
    text = Path("by_mode.json").read_text(encoding="utf-8")
    code, found = lint_json(capsys, "by_mode.json")
    assert code == 1
    assert [(f["code"], where(f)) for f in found] == [
        ("C106", place_of(text, '"quant_dtype"', "by_mode.json"))
    ]


@pytest.mark.parametrize("target", [("--model", RESNET), ("--manifest", "manifest.json")])
def test_lint_config_list_against_a_model_reports_resolution_errors(capsys, here, target):
    code, found = lint_json(capsys, "unknown_name.json", "--mode", "prune", *target)
    assert code == 1
    assert [(f["code"], where(f)) for f in found] == [
        ("S201", place_of(UNKNOWN_NAME, '"op_names"', "unknown_name.json"))
    ]
    assert "fc9" in found[0]["message"]


@pytest.mark.parametrize("target", [(), ("--model", RESNET), ("--manifest", "manifest.json")])
def test_lint_clean_config_list_exits_0(capsys, here, target):
    code, found = lint_json(capsys, "clean.json", NNI_PRUNE, "--mode", "prune", *target)
    assert code == 0
    assert {f["severity"] for f in found} <= {"info"}  # T403: the convs have no bias to prune


def test_lint_config_list_model_checks_are_located_at_the_config(capsys, here):
    # 0.01 of fc's 10 output channels prunes none: W305, placed at the config that set it.
    text = '[\n  {"op_names": ["fc"], "sparse_ratio": 0.01, "granularity": "out_channel"}\n]\n'
    Path("tiny.json").write_text(text, encoding="utf-8")
    code, found = lint_json(capsys, "tiny.json", "--mode", "prune", "--model", RESNET)
    assert code == 1  # a warning fails lint by default
    assert [(f["code"], where(f)) for f in found] == [
        ("W305", place_of(text, '{"op_names"', "tiny.json"))
    ]


# ----- item 5: compile, explain and fmt of config_lists ---------------------------------------


def test_compile_config_list_without_a_model_checks_it_and_prints_it_by_mode(capsys, here):
    result = run(capsys, "compile", "clean.json", "--mode", "prune")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {"prune": json.loads(CLEAN), "quantize": [], "distill": []}
    result = run(capsys, "compile", "bad_values.json", "--mode", "prune")
    assert result.code == 2 and result.out == ""
    assert place_of(BAD_VALUES, '"sparse_ratio"', "bad_values.json") in result.err


def test_compile_config_list_with_a_manifest_gives_the_plan_of_the_model(capsys, here):
    by_model = run(
        capsys, "compile", NNI_PRUNE, "--mode", "prune", "--model", RESNET, "--format", "plan"
    )
    by_manifest = run(
        capsys,
        "compile",
        NNI_PRUNE,
        "--mode",
        "prune",
        "--manifest",
        "manifest.json",
        "--format",
        "plan",
    )
    assert by_model.code == by_manifest.code == 0
    plan = json.loads(by_manifest.out)
    assert plan == json.loads(by_model.out)
    assert {(e["module"], e["target"]) for e in plan} >= {("layer1.0.conv1", "weight")}


def test_explain_config_list_names_the_config_and_where_it_is(capsys, here):
    result = run(capsys, "explain", "clean.json", "--mode", "prune", "--manifest", "manifest.json")
    assert result.code == 0, result.err
    config_at = place_of(CLEAN, '{"op_names"', "clean.json")
    assert result.out.splitlines()[0] == "fc.weight (prune)"
    assert f"matched by: config_list[0] at {config_at}" in result.out
    assert f"sparse_ratio = 0.5 from config_list[0] at {config_at}" in result.out


def test_explain_target_means_the_same_for_a_config_list_as_for_rules(capsys, here):
    """One selector meaning: '*' stays within a segment, and a selector picking nothing is L106."""
    args = ("explain", "clean.json", "--mode", "prune", "--manifest", "manifest.json")
    picked = run(capsys, *args, "--target", "f*.weight")
    assert picked.code == 0, picked.err
    assert picked.out.splitlines()[0] == "fc.weight (prune)"
    crossing = run(capsys, *args, "--target", "layer1.*")  # no dot-crossing glob
    assert "fc.weight" not in crossing.out
    nothing = run(capsys, *args, "--target", "nothing_here.weight")
    assert nothing.code == 2 and "L106" in nothing.err


def test_fmt_skips_a_config_list_with_a_clear_word_and_leaves_it_alone(capsys, here):
    result = run(capsys, "fmt", "--check", "bad_values.json")
    assert result.code == 0
    assert "skipped bad_values.json: fmt formats .rules files only" in result.err
    assert Path("bad_values.json").read_text(encoding="utf-8") == BAD_VALUES


# ----- item 9b: a missing input is exit 2 for every command ---------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("lint", "nope.rules"),
        ("lint", "nope.json", "--mode", "prune"),
        ("compile", "nope.rules"),
        ("compile", "nope.json", "--mode", "prune"),
        ("explain", "nope.rules", "--model", RESNET),
        ("explain", "nope.json", "--mode", "prune", "--manifest", "manifest.json"),
        ("fmt", "nope.rules"),
        ("apply", "nope.json", "--mode", "prune", "--model", RESNET, "--dry-run"),
        ("lint", "clean.json", "--manifest", "nope-manifest.json"),
    ],
)
def test_a_missing_input_exits_2_naming_it(capsys, here, argv):
    result = run(capsys, *argv)
    assert result.code == 2
    missing = next(a for a in argv if a.startswith("nope"))
    assert missing in result.out + result.err


# ----- item 9c: --manifest for compile and explain, the subcommand's usage -------------------------


@pytest.mark.parametrize("command", ["compile", "explain"])
def test_compile_and_explain_take_a_manifest_like_lint(capsys, here, command):
    rules = ROOT / "rules" / "resnet_channels.rules"
    by_model = run(capsys, command, rules, "--model", RESNET)
    by_manifest = run(capsys, command, rules, "--manifest", "manifest.json")
    assert by_model.code == by_manifest.code == 0
    assert by_manifest.out == by_model.out and by_manifest.out


@pytest.mark.parametrize("command", ["compile", "explain", "lint", "apply", "fmt"])
def test_argument_errors_print_the_subcommands_usage(capsys, command):
    code, out, err = exit_of(capsys, command, "x.rules", "--no-such-option")
    assert code == 2 and out == ""
    assert err.startswith(f"usage: dsl-compress {command} ")
    assert f"dsl-compress {command}: error: " in err


def test_model_and_manifest_together_is_a_usage_error_of_compile(capsys):
    code, _, err = exit_of(capsys, "compile", "x.rules", "--model", RESNET, "--manifest", "m.json")
    assert code == 2
    assert (
        "dsl-compress compile: error: argument --manifest: not allowed with argument --model" in err
    )


# ----- item 9d: the README's CI snippet installs what exists ----------------------------------------


def test_readme_ci_snippet_installs_dsl_compress_from_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Linting in CI") :]
    workflow = section[section.index("```yaml") : section.index("```\n", 8)]
    installed = [
        package
        for command in re.findall(r"pip install ([^\n&]+)", workflow)
        for package in command.split()
        if "dsl-compress" in package or package.strip("'\"") == "."
    ]
    assert installed, "the CI snippet installs no dsl-compress"
    assert all(p.strip("'\"").startswith(("git+", ".")) for p in installed), installed
