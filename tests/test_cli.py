"""`dsl-compress` explain, compile, fmt, example, help, version and colour, end to end.

apply is tested in test_cli_apply.py, lint and manifest in test_cli_lint.py.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dsl_compress
from cli_runner import Run, exit_of, run, write
from dsl_compress.codes import CODES

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "rules"
CHANNELS = RULES_DIR / "resnet_channels.rules"
RESNET = "dsl_compress.models:resnet"
ANSI = "\x1b["
MESSY = (
    "let   ratio=0.5\n"
    "prune   layer*.*.conv1.weight    sparse_ratio=ratio   granularity=out_channel\n"
    "\n\n\n"
    "quantize fc.weight quant_dtype=int8   # int8 head\n"
)
FORMATTED = (
    "let ratio = 0.5\n"
    "prune layer*.*.conv1.weight sparse_ratio=ratio granularity=out_channel\n"
    "\n"
    "quantize fc.weight quant_dtype=int8  # int8 head\n"
)
BROKEN = "prune conv1.weight sparse_ratio 0.5\n"
WARNINGS = "prune layer1.0.conv9.weight sparse_ratio=0.5\n"


def process(cwd: Path, *argv, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dsl_compress", *map(str, argv)],
        cwd=cwd,
        env=env if env is not None else {**os.environ, "NO_COLOR": "1"},
        timeout=300,
        **kwargs,
    )


def blocks(text: str) -> dict[str, list[str]]:
    """explain's output by its first line ('module.target (mode)')."""
    return {b.splitlines()[0]: b.splitlines()[1:] for b in text.strip().split("\n\n")}


# ----- explain RULES ------------------------------------------------------------------------------


def test_explain_rules_shows_matches_winners_reasons_and_final_settings(capsys):
    argv = ["explain", CHANNELS, "--model", RESNET, "--target", "layer1.0.*"]
    result = run(capsys, *argv)
    assert result.code == 0 and result.err == ""
    found = blocks(result.out)
    assert list(found) == [
        "layer1.0.conv1.weight (prune)",
        "layer1.0.bn1.weight (prune)",
        "layer1.0.bn1.bias (prune)",
        "layer1.0.conv2.weight, layer1.0.bn2.weight, layer1.0.bn2.bias (no settings)",
    ]
    assert found[list(found)[-1]] == ["  no statement selects these 3"]
    conv = found["layer1.0.conv1.weight (prune)"]
    assert conv[0] == f"  matched by: {CHANNELS}:8:1"
    assert f"  sparse_ratio = 0.5 from {CHANNELS}:8:29 (the only statement that sets it)" in conv
    assert any(line.startswith(f"  metric = 'l1' from {CHANNELS}:8:") for line in conv)
    assert conv[-1].startswith("  final: sparse_ratio=0.5, granularity='out_channel'")
    assert conv[-1].endswith("metric=l1")
    bias = found["layer1.0.bn1.bias (prune)"]
    assert bias[0] == f"  matched by: {CHANNELS}:12:1"
    assert bias[1].startswith("  align = {'module_name': 'layer1.0.bn1', 'target_name': 'weight'")


def test_explain_rules_without_target_covers_every_planned_tensor(capsys):
    result = run(capsys, "explain", CHANNELS, "--model", RESNET)
    assert result.code == 0
    assert len(blocks(result.out)) == 12


def test_explain_says_why_the_more_specific_statement_wins(capsys, here):
    write(
        "o.rules",
        "prune Conv2d.weight sparse_ratio=0.3\nprune layer1.0.conv1.weight sparse_ratio=0.6\n",
    )
    result = run(capsys, "explain", "o.rules", "--model", RESNET, "--target", "layer1.0.conv1")
    assert result.code == 0
    lines = blocks(result.out)["layer1.0.conv1.weight (prune)"]
    assert lines[0] == "  matched by: o.rules:1:1, o.rules:2:1"
    assert lines[1] == (
        "  sparse_ratio = 0.6 from o.rules:2:29 "
        "(more specific than every other statement that sets it)"
    )
    assert lines[2] == "      not 0.3 from o.rules:1:21 (type)"
    assert lines[-1].startswith("  final: sparse_ratio=0.6")


def test_explain_says_why_the_later_of_equal_statements_wins(capsys, here):
    write("eq.rules", "prune conv1.weight sparse_ratio=0.3\nprune conv1.weight sparse_ratio=0.6\n")
    result = run(capsys, "explain", "eq.rules", "--model", RESNET, "--target", "conv1.weight")
    assert result.code == 0
    lines = blocks(result.out)["conv1.weight (prune)"]
    assert "(the latest of the most specific statements that set it)" in lines[1]
    assert lines[1].startswith("  sparse_ratio = 0.6 from eq.rules:2:")
    assert lines[2].startswith("      not 0.3 from eq.rules:1:")


def test_explain_target_matching_nothing_is_an_input_error_with_a_suggestion(capsys):
    result = run(capsys, "explain", CHANNELS, "--model", RESNET, "--target", "layr1.0.conv1.weight")
    assert result.code == 2 and result.out == ""
    (line,) = result.err.strip().splitlines()
    assert line.startswith("--target: error[L106] --target 'layr1.0.conv1.weight' matches no")
    assert "did you mean 'layer1.0.conv1.weight'" in line


def test_explain_target_star_stays_within_one_segment_as_in_rules(capsys):
    """The issue's `layer2.*` reached layer2.0.downsample.0.weight; in rules it names the blocks
    layer2.0 and layer2.1, which hold no tensor of their own."""
    result = run(capsys, "explain", CHANNELS, "--model", RESNET, "--target", "layer2.*")
    assert result.code == 2 and result.out == ""
    assert "matches 2 module(s) (layer2.0, layer2.1), none with a parameter" in result.err
    assert "write 'layer2.**' for every tensor below" in result.err
    below = run(capsys, "explain", CHANNELS, "--model", RESNET, "--target", "layer2.**")
    planned = [b for b in blocks(below.out) if b.endswith("(prune)")]
    assert below.code == 0
    assert sorted(planned) == [
        f"layer2.{i}.{m}.{t} (prune)"
        for i in (0, 1)
        for m, t in (("bn1", "bias"), ("bn1", "weight"), ("conv1", "weight"))
    ]


def test_explain_target_says_which_statement_left_a_tensor_without_settings(capsys, here):
    write(
        "x.rules",
        "prune Conv2d.weight sparse_ratio=0.5 except layer1.*.conv2\n"
        "exclude fc\nexclude bn1 from prune\nprune **.bn1.weight sparse_ratio=0.5\n",
    )
    found = {}
    for target in ("fc.weight", "layer1.0.conv2.weight", "bn1.weight", "bn1.bias"):
        result = run(capsys, "explain", "x.rules", "--model", RESNET, "--target", target)
        assert result.code == 0 and result.err == ""
        (found[target],) = blocks(result.out).items()
    assert found["fc.weight"] == (
        "fc.weight (no settings)",
        ["  excluded by x.rules:2:1 (exclude fc)"],
    )
    assert found["layer1.0.conv2.weight"][1] == [
        "  removed by 'except layer1.*.conv2' of the prune statement at x.rules:1:1"
    ]
    assert found["bn1.weight"][1] == ["  excluded from prune by x.rules:3:1 (exclude bn1)"]
    assert found["bn1.bias"] == (
        "bn1.bias (no settings)",
        ["  excluded from prune by x.rules:3:1 (exclude bn1)"],
    )


def test_explain_target_takes_any_selector_of_the_language(capsys):
    result = run(
        capsys,
        "explain",
        CHANNELS,
        "--model",
        RESNET,
        "--target",
        "BatchNorm2d.bias in layer1.{0,1}.*",
    )
    assert list(blocks(result.out)) == [
        "layer1.0.bn1.bias (prune)",
        "layer1.1.bn1.bias (prune)",
        "layer1.0.bn2.bias, layer1.1.bn2.bias (no settings)",
    ]
    broken = run(capsys, "explain", CHANNELS, "--model", RESNET, "--target", "layer1..conv1")
    assert broken.code == 2 and broken.err.startswith(
        "--target: error[E101] unexpected '.' at column 8"
    )


def test_explain_rules_needs_a_model(capsys):
    result = run(capsys, "explain", CHANNELS)
    assert result.code == 2 and result.out == ""
    assert "--model" in result.err and len(result.err.strip().splitlines()) == 1


def test_explain_a_broken_rules_file_exits_2(capsys, here):
    write("broken.rules", BROKEN)
    result = run(capsys, "explain", "broken.rules", "--model", RESNET)
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("broken.rules:1:33: error[E101]")


# ----- explain CODE -------------------------------------------------------------------------------


def test_explain_code_prints_what_why_example_fix(capsys):
    result = run(capsys, "explain", "W305")
    assert result.code == 0 and result.err == ""
    text = result.out
    assert text.startswith("W305 (ratio-prunes-nothing)\n")
    sections = [line for line in text.splitlines() if line and not line.startswith(" ")]
    assert sections[1:] == ["What it checks:", "Why:", "Example:", "Fix:"]
    assert CODES["W305"].summary in text and CODES["W305"].fix in text
    assert "    prune conv1.weight sparse_ratio=0.1 granularity=out_channel" in text


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_can_be_explained(capsys, code):
    result = run(capsys, "explain", code)
    assert result.code == 0, result.err
    assert result.out.startswith(f"{code} ({CODES[code].name})")
    assert "What it checks:" in result.out and "Fix:" in result.out


def test_explain_unknown_code_exits_2_with_one_line_and_a_hint(capsys):
    result = run(capsys, "explain", "Z999")
    assert result.code == 2 and result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1
    assert "error[X803] unknown diagnostic code 'Z999'" in lines[0]
    assert "(codes look like" in lines[0]


def test_explain_near_miss_code_suggests_the_closest(capsys):
    result = run(capsys, "explain", "W306")
    assert result.code == 2
    assert "did you mean 'W305'" in result.err


def test_explain_unknown_code_names_no_fake_location(capsys):
    result = run(capsys, "explain", "Z999")
    assert result.code == 2
    assert not result.err.startswith("<input>")


@pytest.mark.parametrize("subject, code", [("w305", "W305"), ("matches-nothing", "W301")])
def test_explain_code_accepts_lowercase_and_names(capsys, subject, code):
    result = run(capsys, "explain", subject)
    assert code in result.out + result.err
    assert "--model" not in result.err


# ----- compile ------------------------------------------------------------------------------------


def test_compile_config_list_on_stdout_and_to_a_file(capsys, here):
    result = run(capsys, "compile", CHANNELS)
    assert result.code == 0
    # Without a model the aligns cannot be exported: said on stderr, stdout stays pure JSON.
    assert result.err.count("info[W304] align statements are expanded only with a model") == 2
    lists = json.loads(result.out)
    assert set(lists) == {"prune", "quantize", "distill"}
    (config,) = lists["prune"]
    assert config["target_settings"]["weight"] == {
        "sparse_ratio": 0.5,
        "granularity": "out_channel",
    }
    assert re.search(config["op_names_re"][0], "layer1.0.conv1")
    to_file = run(capsys, "compile", CHANNELS, "-o", "cl.json")
    assert (to_file.code, to_file.out) == (0, "")
    assert json.loads(Path("cl.json").read_text(encoding="utf-8")) == lists


def test_compile_config_list_with_a_model_names_every_module(capsys):
    result = run(capsys, "compile", CHANNELS, "--model", RESNET, "--format", "config-list")
    assert result.code == 0
    lists = json.loads(result.out)
    names = {name for config in lists["prune"] for name in config["op_names"]}
    blocks_ = ("layer1.0", "layer1.1", "layer2.0", "layer2.1")
    assert names == {f"{b}.{m}" for b in blocks_ for m in ("conv1", "bn1")}


def test_compile_registry(capsys, here):
    result = run(capsys, "compile", RULES_DIR / "custom_module.rules", "--format", "registry")
    assert result.code == 0
    registry = json.loads(result.out)
    assert set(registry) == {"prune", "quantize", "distill"}
    assert set(registry["prune"]["CustomizedModule"]) == {"p1", "p2", "_output_"}
    assert registry["prune"]["CustomizedModule"]["p1"]["granularity"] == [1, -1]
    assert set(registry["quantize"]["CustomizedModule"]) == {"_input_", "p1", "p2", "_output_"}
    argv = ["compile", RULES_DIR / "custom_module.rules", "--format", "registry", "-o", "r.json"]
    assert run(capsys, *argv) == Run(0, "", "")
    assert json.loads(Path("r.json").read_text(encoding="utf-8")) == registry


def test_compile_plan_needs_a_model(capsys, here):
    result = run(capsys, "compile", CHANNELS, "--format", "plan", "-o", "plan.json")
    assert result.code == 2 and result.out == ""
    assert "--model" in result.err
    assert not Path("plan.json").exists()


def test_compile_plan_with_a_model(capsys, here):
    result = run(capsys, "compile", CHANNELS, "--model", RESNET, "--format", "plan")
    assert result.code == 0
    plan = json.loads(result.out)
    assert len(plan) == 12
    conv = next(e for e in plan if (e["module"], e["target"]) == ("layer1.0.conv1", "weight"))
    assert conv["mode"] == "prune" and conv["setting"]["sparse_ratio"] == 0.5
    assert conv["origin"] == f"{CHANNELS}:8:1"
    argv = ["compile", CHANNELS, "--model", RESNET, "--format", "plan", "-o", "plan.json"]
    assert run(capsys, *argv) == Run(0, "", "")
    assert json.loads(Path("plan.json").read_text(encoding="utf-8")) == plan


def test_compile_broken_file_exits_2_and_writes_nothing(capsys, here):
    write("broken.rules", BROKEN)
    result = run(capsys, "compile", "broken.rules", "-o", "out.json")
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("broken.rules:1:33: error[E101]")
    assert not Path("out.json").exists()


def test_compile_unknown_format_is_a_usage_error(capsys):
    code, _, err = exit_of(capsys, "compile", CHANNELS, "--format", "yaml")
    assert code == 2 and "invalid choice" in err


# ----- fmt ----------------------------------------------------------------------------------------


def test_fmt_rewrites_in_place_and_is_stable(capsys, here):
    path = write("messy.rules", MESSY)
    result = run(capsys, "fmt", "messy.rules")
    assert result == Run(0, "", "reformatted messy.rules\n")
    assert path.read_text(encoding="utf-8") == FORMATTED
    assert run(capsys, "fmt", "messy.rules") == Run(0, "", "")
    assert run(capsys, "fmt", "--check", "messy.rules") == Run(0, "", "")
    assert path.read_text(encoding="utf-8") == FORMATTED


def test_fmt_keeps_the_meaning(capsys, here):
    write("messy.rules", MESSY)
    argv = ["--model", RESNET, "--format", "plan"]
    before = json.loads(run(capsys, "compile", "messy.rules", *argv).out)
    assert run(capsys, "fmt", "messy.rules").code == 0
    after = json.loads(run(capsys, "compile", "messy.rules", *argv).out)
    for entry in before + after:  # lines and columns move when spaces go; settings must not
        del entry["origin"], entry["key_origins"]
    assert before == after


def test_fmt_check_exits_1_and_writes_nothing(capsys, here):
    path = write("messy.rules", MESSY)
    result = run(capsys, "fmt", "--check", "messy.rules")
    assert result == Run(1, "", "would reformat messy.rules\n")
    assert path.read_text(encoding="utf-8") == MESSY


def test_fmt_diff_prints_a_unified_diff_exits_1_and_writes_nothing(capsys, here):
    path = write("messy.rules", MESSY)
    result = run(capsys, "fmt", "--diff", "messy.rules")
    assert result.code == 1
    assert result.err == "would reformat messy.rules\n"
    lines = result.out.splitlines()
    assert lines[:2] == ["--- messy.rules", "+++ messy.rules (formatted)"]
    assert lines[2].startswith("@@ ")
    assert "-let   ratio=0.5" in lines and "+let ratio = 0.5" in lines
    assert "+quantize fc.weight quant_dtype=int8  # int8 head" in lines
    assert path.read_text(encoding="utf-8") == MESSY


def test_fmt_clean_files_exit_0_quietly(capsys, here):
    write("clean.rules", FORMATTED)
    result = run(capsys, "fmt", "--check", "clean.rules", CHANNELS)
    assert result == Run(0, "", "")
    assert run(capsys, "fmt", "--diff", "clean.rules") == Run(0, "", "")


def test_bundled_example_rules_are_fmt_clean(capsys):
    result = run(capsys, "fmt", "--check", *sorted(RULES_DIR.glob("*.rules")))
    assert result == Run(0, "", "")


@pytest.mark.parametrize(
    "text, pattern",
    [(BROKEN, r"^f\.rules:1:33: error\[E101\]"), (None, r"^f\.rules: error\[E205\]")],
)
def test_fmt_broken_or_missing_file_exits_2(capsys, here, text, pattern):
    if text is not None:
        write("f.rules", text)
    result = run(capsys, "fmt", "f.rules")
    assert result.code == 2 and result.out == ""
    assert re.search(pattern, result.err), result.err
    if text is not None:
        assert Path("f.rules").read_text(encoding="utf-8") == text


def test_fmt_broken_file_among_others(capsys, here):
    for name in ("a.rules", "c.rules"):
        write(name, MESSY)
    write("b.rules", BROKEN)
    result = run(capsys, "fmt", "a.rules", "b.rules", "c.rules")
    assert result.code == 2
    assert "reformatted a.rules" in result.err and "reformatted c.rules" in result.err
    assert Path("c.rules").read_text(encoding="utf-8") == FORMATTED


# ----- example, help, version ---------------------------------------------------------------------


# finalize()'s X804 warning is the defect test_example_in_a_process_prints_no_python_warning shows.
@pytest.mark.filterwarnings("ignore::dsl_compress.diagnostics.CompressionWarning")
def test_example_prints_its_summary(capsys):
    result = run(capsys, "example")
    assert result.code == 0
    assert result.out.splitlines()[0].split() == ["rule", "mode", "tensors", "sparsity", "bits"]
    assert "int8" in result.out and "50.0%" in result.out


def test_example_in_a_process_prints_no_python_warning(tmp_path):
    done = process(tmp_path, "example", capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stderr == ""


OPTIONS = {
    "example": [],
    "apply": [
        "RULES",
        "--model",
        "--weights",
        "--calib",
        "--out",
        "--mode",
        "--metric",
        "--dry-run",
        "--overwrite",
    ],
    "lint": ["RULES", "--model", "--manifest", "--format", "sarif", "github", "--fail-on"],
    "manifest": ["--model", "--weights", "--output", "--example-input"],
    "explain": ["RULES|CODE", "--model", "--target"],
    "compile": ["RULES", "--model", "--format", "config-list", "registry", "plan", "--output"],
    "fmt": ["RULES", "--check", "--diff"],
    "lsp": ["--manifest", "--debounce"],
}


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_help_of_every_subcommand(capsys, command):
    code, out, err = exit_of(capsys, command, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"usage: dsl-compress {command}")
    for option in OPTIONS[command]:
        assert option in out, option


def test_top_level_help_lists_every_subcommand(capsys):
    code, out, _ = exit_of(capsys, "--help")
    assert code == 0
    for command in OPTIONS:
        assert re.search(rf"^\s+{command}\s+\S", out, re.M), command


def test_version(capsys):
    code, out, _ = exit_of(capsys, "--version")
    assert code == 0
    assert out == f"dsl-compress {dsl_compress.__version__}\n"


def test_no_command_is_a_usage_error(capsys):
    code, _, err = exit_of(capsys)
    assert code == 2 and "COMMAND" in err


def test_help_version_and_usage_errors_in_a_process(tmp_path):
    done = process(tmp_path, "--version", capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.strip() == f"dsl-compress {dsl_compress.__version__}"
    done = process(tmp_path, "fmt", "--help", capture_output=True, text=True)
    assert done.returncode == 0 and "--check" in done.stdout
    done = process(tmp_path, "nope", capture_output=True, text=True)
    assert done.returncode == 2
    assert "invalid choice: 'nope'" in done.stderr and "Traceback" not in done.stderr


# ----- colour -------------------------------------------------------------------------------------


def as_terminal(monkeypatch) -> None:
    """stdout and stderr (capsys's, so called in the test itself) are terminals; no NO_COLOR."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)


def test_colour_on_a_terminal(capsys, here, monkeypatch):
    as_terminal(monkeypatch)
    write("w.rules", WARNINGS)
    result = run(capsys, "lint", "w.rules", "--model", RESNET)
    assert f"{ANSI}1;33mwarning{ANSI}0m[W301]" in result.out
    result = run(capsys, "apply", "missing.rules", "--model", RESNET, "--out", "out")
    assert result.code == 2 and f"{ANSI}1;31merror{ANSI}0m[E205]" in result.err


def test_no_colour_with_no_color_set(capsys, here, monkeypatch):
    as_terminal(monkeypatch)
    monkeypatch.setenv("NO_COLOR", "1")
    write("w.rules", WARNINGS)
    result = run(capsys, "lint", "w.rules", "--model", RESNET)
    assert "warning[W301]" in result.out and ANSI not in result.out
    result = run(capsys, "apply", "missing.rules", "--model", RESNET, "--out", "out")
    assert "error[E205]" in result.err and ANSI not in result.err


def test_no_colour_when_not_a_terminal(capsys, here, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    write("w.rules", WARNINGS)
    result = run(capsys, "lint", "w.rules", "--model", RESNET)
    assert "warning[W301]" in result.out and ANSI not in result.out + result.err
    result = run(capsys, "apply", "missing.rules", "--model", RESNET, "--out", "out")
    assert "error[E205]" in result.err and ANSI not in result.err


def test_lint_redirected_to_a_file_has_no_colour_in_a_process(tmp_path):
    (tmp_path / "w.rules").write_text(WARNINGS, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    controller, terminal_end = pty.openpty()
    try:
        done = process(
            tmp_path,
            "lint",
            "w.rules",
            "--model",
            RESNET,
            env=env,
            stdout=subprocess.PIPE,
            stderr=terminal_end,
            text=True,
        )
    finally:
        os.close(terminal_end)
        os.close(controller)
    assert done.returncode == 1  # warnings fail lint by default
    assert ANSI not in done.stdout
    assert "warning[W301]" in done.stdout


def test_weights_option_is_shared_by_lint_explain_and_compile(capsys, tmp_path):
    from safetensors.torch import save_file

    from dsl_compress.models import resnet

    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in resnet().state_dict().items()}, str(weights))
    for command in (["lint", CHANNELS], ["explain", CHANNELS], ["compile", CHANNELS]):
        result = run(capsys, *command, "--model", RESNET, "--weights", str(weights))
        assert result.code == 0, (command, result.err)
    bad = run(capsys, "compile", CHANNELS, "--model", RESNET, "--weights", str(tmp_path / "no.pt"))
    assert bad.code == 2 and "L102" in bad.err


def test_pre_commit_hooks_run_clean_on_the_bundled_rules(capsys):
    hooks = (Path(__file__).resolve().parents[1] / ".pre-commit-hooks.yaml").read_text()
    entries = re.findall(r"^\s+entry: dsl-compress (.+)$", hooks, re.MULTILINE)
    assert len(entries) == 2
    files = sorted(str(p) for p in RULES_DIR.glob("*.rules"))
    for entry in entries:
        result = run(capsys, *entry.split(), *files)
        assert result.code == 0, (entry, result.out, result.err)


# The least each command needs to parse; the option under test is added with an empty value.
BASE_ARGV = {
    "example": [],
    "apply": ["r.rules", "--model", "m.py:build", "--out", "out"],
    "lint": ["r.rules"],
    "manifest": ["--model", "m.py:build", "-o", "m.json"],
    "explain": ["E101"],
    "compile": ["r.rules"],
    "fmt": ["r.rules"],
    "lsp": [],
    "convert": ["c.json", "-o", "c.rules"],
}


def _options_taking_a_value() -> list[tuple[str, str]]:
    from dsl_compress.cli.args import build_parser

    _, commands = build_parser()
    return [
        (name, action.option_strings[-1])
        for name, command in commands.items()
        for action in command._actions
        if action.option_strings and action.nargs != 0 and action.choices is None
    ]


@pytest.mark.parametrize("command, option", _options_taking_a_value())
def test_an_option_given_an_empty_value_is_a_usage_error(capsys, command, option):
    """An unset shell variable (--manifest "$M") must not read as the option left out."""
    argv = BASE_ARGV[command]
    if option in argv:
        argv = argv[: argv.index(option)] + argv[argv.index(option) + 2 :]
    code, _, err = exit_of(capsys, command, *argv, option, "")
    assert code == 2 and option.lstrip("-") in err and "usage:" in err


@pytest.mark.parametrize(
    "argv", [["lint", ""], ["explain", ""], ["convert", "", "-o", "c.rules"], ["fmt", "a", ""]]
)
def test_a_positional_argument_given_empty_is_a_usage_error(capsys, argv):
    code, _, err = exit_of(capsys, *argv)
    assert code == 2 and "empty string" in err
