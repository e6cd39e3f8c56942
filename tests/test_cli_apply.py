"""`dsl-compress apply` end to end: every output file read back, dry runs, NNI input, bad inputs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cli_runner import exit_of, run
from output_files import read_metadata, read_tensors
from dsl_compress.cli.main import main
from dsl_compress.cli.progress import Bars
from dsl_compress.tools.apply_job import OUTPUT_FILES
from dsl_compress.models import cnn, resnet

RULES_DIR = Path(__file__).resolve().parents[1] / "rules"
CHANNELS = RULES_DIR / "resnet_channels.rules"
NNI_PRUNE = RULES_DIR / "nni" / "resnet_prune_block_conv1.json"
RESNET = "dsl_compress.models:resnet"
BLOCKS = ("layer1.0", "layer1.1", "layer2.0", "layer2.1")
# resnet_channels.rules masks each block's conv1 and, aligned to it, bn1 (weight, then bias).
MASKED = {f"{b}.{t}" for b in BLOCKS for t in ("conv1.weight", "bn1.weight", "bn1.bias")}
QUANT_RULES = (
    'include "{channels}"\n'
    "quantize fc.weight quant_dtype=int8 quant_scheme=symmetric\n"
    "quantize fc._input_ quant_dtype=uint8 quant_scheme=affine\n"
)
TRACEBACK = "Traceback (most recent call last)"


def run_process(cwd: Path, *argv) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dsl_compress", *map(str, argv)],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_calib(folder: Path) -> Path:
    """Three calibration batches of two resnet inputs each: [N, batch, 3, 16, 16]."""
    path = folder / "calib.pt"
    torch.save(torch.randn(3, 2, 3, 16, 16, generator=torch.Generator().manual_seed(1)), path)
    return path


def write_quant_rules(folder: Path) -> Path:
    # The included file sits beside quant.rules: includes read under the rules file's folder.
    (folder / CHANNELS.name).write_text(CHANNELS.read_text(encoding="utf-8"), encoding="utf-8")
    path = folder / "quant.rules"
    path.write_text(QUANT_RULES.format(channels=CHANNELS.name), encoding="utf-8")
    return path


def kept_channels(mask: torch.Tensor) -> torch.Tensor:
    """Per output channel: True when the whole channel is kept (and the mask is channel-wise)."""
    rows = mask.reshape(mask.shape[0], -1)
    assert torch.equal(rows.all(1), rows.any(1)), "mask is not channel-wise"
    return rows.all(1)


# ----- a full apply: prune + quantize with calibration --------------------------------------------


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """One `apply` of resnet_channels.rules plus int8/uint8 quantize statements, with --calib."""
    folder = tmp_path_factory.mktemp("apply")
    write_quant_rules(folder)
    write_calib(folder)
    stdout, stderr, cwd = io.StringIO(), io.StringIO(), os.getcwd()
    argv = ["apply", "quant.rules", "--model", RESNET, "--calib", "calib.pt", "--out", "out"]
    os.chdir(folder)  # as a user runs it: paths relative to the working folder
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(argv)
    finally:
        os.chdir(cwd)
    return {"code": code, "out": stdout.getvalue(), "err": stderr.getvalue(), "dir": folder / "out"}


def test_apply_exits_0_and_prints_the_summary_table(applied):
    assert applied["code"] == 0, applied["err"]
    lines = applied["out"].splitlines()
    assert lines[0].split() == ["rule", "mode", "tensors", "sparsity", "bits"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if line[:1] not in "-"}
    assert rows[f"{CHANNELS.name}:8:1"] == ["prune", "4", "50.0%", "-"]
    for line_no in (11, 12):  # the align statements, marked as such
        assert rows[f"{CHANNELS.name}:{line_no}:1"] == ["prune", "(align)", "4", "50.0%", "-"]
    assert rows["quant.rules:2:1"] == ["quantize", "1", "-", "int8"]
    assert rows["quant.rules:3:1"] == ["quantize", "1", "-", "uint8"]
    assert rows["total"] == ["14", "50.0%", "int8/uint8"]
    assert "wrote 5 files" in applied["err"]
    assert TRACEBACK not in applied["err"]


def test_apply_writes_exactly_the_output_files_and_no_staging_left(applied):
    assert sorted(os.listdir(applied["dir"])) == sorted(OUTPUT_FILES)
    assert sorted(os.listdir(applied["dir"].parent)) == [
        "calib.pt",
        "out",
        "quant.rules",
        CHANNELS.name,
    ]


def test_masks_file_holds_bool_channel_masks_keyed_module_target(applied):
    masks = read_tensors(applied["dir"], "masks")
    assert set(masks) == MASKED
    params = dict(resnet().named_parameters())
    for key, mask in masks.items():
        assert mask.dtype == torch.bool, key
        assert mask.shape == params[key].shape, key
    for block in BLOCKS:
        channels = kept_channels(masks[f"{block}.conv1.weight"])
        assert int(channels.sum()) == channels.numel() // 2
        assert torch.equal(masks[f"{block}.bn1.weight"], channels)
        assert torch.equal(masks[f"{block}.bn1.bias"], channels)


def test_model_file_is_finalized_zero_where_masked_and_loads_strictly(applied):
    state = read_tensors(applied["dir"], "model")
    masks = read_tensors(applied["dir"], "masks")
    fresh = resnet()
    fresh.load_state_dict(state, strict=True)
    original = resnet().state_dict()
    for key, mask in masks.items():
        assert torch.count_nonzero(state[key][~mask]) == 0, key
        assert torch.equal(state[key][mask], original[key][mask]), key
    assert not any("parametrizations" in key or "mask" in key for key in state)


def test_quant_file_holds_scale_and_zero_point_per_target(applied):
    quant = read_tensors(applied["dir"], "quant")
    names = {key.rsplit(".", 1)[0] for key in quant}
    assert "fc.weight" in names
    inputs = [name for name in names if name.startswith("fc._input_")]
    assert len(inputs) == 1 and len(names) == 2
    for name in names:
        assert set(k for k in quant if k.startswith(name + ".")) == {
            f"{name}.scale",
            f"{name}.zero_point",
        }
        assert bool((quant[f"{name}.scale"] > 0).all()), name
    assert torch.count_nonzero(quant["fc.weight.zero_point"]) == 0  # symmetric
    metadata = read_metadata(applied["dir"], "quant")
    assert json.loads(metadata["fc.weight"])["quant_dtype"] == "int8"
    assert json.loads(metadata[inputs[0]])["quant_dtype"] == "uint8"


def test_plan_file_names_the_rule_file_line_col_of_every_setting(applied):
    plan = json.loads((applied["dir"] / "plan.json").read_text(encoding="utf-8"))
    quant_rules = "quant.rules"
    by_key = {(e["module"], e["target"]): e for e in plan}
    assert len(by_key) == len(plan) == 14
    for block in BLOCKS:
        conv = by_key[(f"{block}.conv1", "weight")]
        assert conv["mode"] == "prune" and conv["setting"]["sparse_ratio"] == 0.5
        assert conv["origin"] == f"{CHANNELS.name}:8:1"
        assert conv["key_origins"]["sparse_ratio"] == f"{CHANNELS.name}:8:29"
        assert by_key[(f"{block}.bn1", "weight")]["origin"] == f"{CHANNELS.name}:11:1"
        assert by_key[(f"{block}.bn1", "bias")]["origin"] == f"{CHANNELS.name}:12:1"
    fc = by_key[("fc", "weight")]
    assert fc["mode"] == "quantize" and fc["setting"]["quant_dtype"] == "int8"
    assert fc["origin"] == f"{quant_rules}:2:1"
    assert re.fullmatch(rf"{re.escape(quant_rules)}:2:\d+", fc["key_origins"]["quant_dtype"])


def test_config_list_file_has_the_three_kinds_in_nni_format(applied):
    lists = json.loads((applied["dir"] / "config_list.json").read_text(encoding="utf-8"))
    assert set(lists) == {"prune", "quantize", "distill"}
    assert lists["distill"] == []
    pruned = {name for config in lists["prune"] for name in config["op_names"]}
    assert pruned == {f"{b}.{m}" for b in BLOCKS for m in ("conv1", "bn1")}
    assert {name for config in lists["quantize"] for name in config["op_names"]} == {"fc"}
    for config in lists["prune"] + lists["quantize"]:
        assert set(config["target_settings"]) == set(config["target_names"])


# ----- dry run, NNI input, weights, model files ---------------------------------------------------


def test_dry_run_reports_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(capsys, "apply", CHANNELS, "--model", RESNET, "--dry-run")
    assert result.code == 0, result.err
    assert "total" in result.out and "50.0%" in result.out
    assert "wrote" not in result.err
    assert os.listdir(tmp_path) == []


def test_usage_line_says_out_or_dry_run_is_required(capsys):
    code, out, _ = exit_of(capsys, "apply", "--help")
    assert code == 0
    assert "(--out DIR | --dry-run)" in " ".join(out.split())


@pytest.mark.parametrize(
    "extra, error",
    [
        ((), "one of the arguments --out --dry-run is required"),
        (("--dry-run", "--out", "out"), "argument --out: not allowed with argument --dry-run"),
    ],
)
def test_apply_needs_exactly_one_of_out_and_dry_run(capsys, tmp_path, monkeypatch, extra, error):
    monkeypatch.chdir(tmp_path)
    code, out, err = exit_of(capsys, "apply", CHANNELS, "--model", RESNET, *extra)
    assert code == 2 and out == ""
    assert err.startswith("usage: dsl-compress apply ")
    assert f"dsl-compress apply: error: {error}" in err
    assert os.listdir(tmp_path) == []


def test_apply_nni_config_list_json_with_mode_and_metric(capsys, tmp_path):
    out = tmp_path / "out"
    argv = ["apply", NNI_PRUNE, "--model", RESNET, "--mode", "prune", "--metric", "l1"]
    result = run(capsys, *argv, "--out", out)
    assert result.code == 0, result.err
    assert "config_list[0]" in result.out
    masks = read_tensors(out, "masks")
    assert set(masks) == MASKED  # NNI's BatchNorm template aligns bias to weight
    for block in BLOCKS:
        channels = kept_channels(masks[f"{block}.conv1.weight"])
        assert int(channels.sum()) == channels.numel() // 2
        assert torch.equal(masks[f"{block}.bn1.weight"], channels)
        assert torch.equal(masks[f"{block}.bn1.bias"], channels)
    lists = json.loads((out / "config_list.json").read_text(encoding="utf-8"))
    assert len(lists["prune"]) == len(MASKED) and lists["quantize"] == [] == lists["distill"]
    resnet().load_state_dict(read_tensors(out, "model"), strict=True)


def test_written_config_list_json_applies_again_to_the_same_masks(capsys, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    result = run(capsys, "apply", CHANNELS, "--model", RESNET, "--out", first)
    assert result.code == 0, result.err
    argv = ["apply", first / "config_list.json", "--model", RESNET, "--metric", "l1"]
    result = run(capsys, *argv, "--out", second)
    assert result.code == 0, result.err
    before, after = read_tensors(first, "masks"), read_tensors(second, "masks")
    assert set(before) == set(after) == MASKED
    assert all(torch.equal(before[key], after[key]) for key in before)


def scaled_weights(order: str) -> dict[str, torch.Tensor]:
    """resnet weights whose layer1.0.conv1 channel c has L1 norm rising (or falling) with c."""
    state = resnet().state_dict()
    weight = state["layer1.0.conv1.weight"]
    for c in range(weight.shape[0]):
        weight[c] = float(c + 1 if order == "rising" else weight.shape[0] - c)
    return state


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("order", ["rising", "falling"])
def test_weights_file_decides_which_channels_are_pruned(capsys, tmp_path, suffix, order):
    weights = tmp_path / f"weights{suffix}"
    state = scaled_weights(order)
    if suffix == ".safetensors":
        save_file(state, weights)
    else:
        torch.save(state, weights)
    out = tmp_path / "out"
    argv = ["apply", CHANNELS, "--model", RESNET, "--weights", weights, "--out", out]
    result = run(capsys, *argv)
    assert result.code == 0, result.err
    masks = read_tensors(out, "masks")
    low = torch.arange(8) < 4
    expected = ~low if order == "rising" else low  # the four smallest-L1 channels go
    assert torch.equal(kept_channels(masks["layer1.0.conv1.weight"]), expected)
    assert torch.equal(masks["layer1.0.bn1.weight"], expected)
    final = read_tensors(out, "model")["layer1.0.conv1.weight"]
    for c in range(8):
        value = float(c + 1 if order == "rising" else 8 - c) if expected[c] else 0.0
        assert torch.all(final[c] == value), c


def test_model_from_a_python_file_and_calib_from_a_callable(capsys, tmp_path):
    factory = tmp_path / "factory.py"
    factory.write_text(
        "import torch\n"
        "from dsl_compress.models import resnet\n\n"
        "def make():\n    return resnet()\n\n"
        "def batches():\n    return [torch.randn(2, 3, 16, 16) for _ in range(2)]\n",
        encoding="utf-8",
    )
    rules, out = write_quant_rules(tmp_path), tmp_path / "out"
    argv = ["apply", rules, "--model", f"{factory}:make", "--calib", f"{factory}:batches"]
    result = run(capsys, *argv, "--out", out)
    assert result.code == 0, result.err
    assert sorted(os.listdir(out)) == sorted(OUTPUT_FILES)


# ----- bad inputs: exit 2, one clear line, nothing written ----------------------------------------


def _setup_bad(tmp_path: Path, case: str) -> tuple[list, str]:
    """(argv without --out, regex the first stderr line must match) for one bad input."""
    model = ["--model", RESNET]
    if case == "missing rules file":
        return ["apply", tmp_path / "missing.rules", *model], r"missing\.rules.*error\[E205\]"
    if case == "syntax error":
        (tmp_path / "bad.rules").write_text("prune conv1.weight sparse_ratio 0.5\n")
        return ["apply", tmp_path / "bad.rules", *model], r"bad\.rules:1:33: error\[E101\]"
    if case == "unknown model module":
        argv = ["apply", CHANNELS, "--model", "no_such_module:make"]
        return argv, r"error\[L101\].*no module named 'no_such_module'"
    if case == "unknown callable":
        argv = ["apply", CHANNELS, "--model", "dsl_compress.models:nope"]
        return argv, r"error\[L101\].*has no attribute 'nope'"
    if case == "callable not returning a module":
        (tmp_path / "factory.py").write_text("def make():\n    return {'a': 1}\n")
        argv = ["apply", CHANNELS, "--model", f"{tmp_path / 'factory.py'}:make"]
        return argv, r"factory\.py:make.*error\[L101\].*not a torch\.nn\.Module"
    if case == "weights not matching":
        torch.save(cnn().state_dict(), tmp_path / "cnn.pt")
        argv = ["apply", CHANNELS, *model, "--weights", tmp_path / "cnn.pt"]
        return argv, r"cnn\.pt.*error\[L102\].*does not match the model"
    if case == "weights with mismatched shapes":
        state = resnet().state_dict()
        state["fc.weight"] = torch.zeros(3, 16)
        save_file(state, tmp_path / "w.safetensors")
        argv = ["apply", CHANNELS, *model, "--weights", tmp_path / "w.safetensors"]
        return argv, r"w\.safetensors.*error\[L102\].*fc\.weight \(file \[3, 16\], model \[10, 16\]"
    if case == "weights as a pickled model":
        torch.save(resnet(), tmp_path / "whole.pt")
        argv = ["apply", CHANNELS, *model, "--weights", tmp_path / "whole.pt"]
        return argv, r"whole\.pt.*error\[L102\].*pickled"
    if case == "missing weights file":
        argv = ["apply", CHANNELS, *model, "--weights", tmp_path / "nope.pt"]
        return argv, r"nope\.pt.*error\[L102\] no weights file"
    if case == "missing calibration file":
        argv = ["apply", CHANNELS, *model, "--calib", tmp_path / "nope.pt"]
        return argv, r"nope\.pt.*error\[L103\] no calibration file"
    if case == "input quantization without calibration":
        argv = ["apply", write_quant_rules(tmp_path), *model]
        return argv, r"quant\.rules:3:1: error\[Q602\]"
    if case == "align partner without a mask":
        (tmp_path / "a.rules").write_text(
            "align layer1.0.bn1.weight with layer1.0.conv1.weight dims=[0]\n"
        )
        return ["apply", tmp_path / "a.rules", *model], r"a\.rules:1:1: error\[P503\]"
    if case == "config_list without mode":
        return ["apply", NNI_PRUNE, *model], r"error\[X803\].*needs a mode"
    raise AssertionError(case)


SPANLESS = [
    "missing rules file",
    "unknown model module",
    "unknown callable",
    "callable not returning a module",
    "weights not matching",
    "weights with mismatched shapes",
    "weights as a pickled model",
    "missing weights file",
    "missing calibration file",
    "config_list without mode",
]
LOCATED = ["syntax error", "input quantization without calibration", "align partner without a mask"]


@pytest.mark.parametrize("case", SPANLESS + LOCATED)
def test_bad_input_fails_with_exit_2_one_clear_line_and_nothing_written(capsys, tmp_path, case):
    argv, first_line = _setup_bad(tmp_path, case)
    before = sorted(os.listdir(tmp_path))
    result = run(capsys, *argv, "--out", tmp_path / "out")
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert re.search(first_line, lines[0]), lines[0]
    if case in SPANLESS:
        assert len(lines) == 1, result.err
    assert result.out == ""
    assert TRACEBACK not in result.err
    assert sorted(os.listdir(tmp_path)) == before  # no out folder, no staging folder


def test_missing_calibration_hint_names_the_calib_option(capsys, tmp_path):
    argv = ["apply", write_quant_rules(tmp_path), "--model", RESNET, "--out", tmp_path / "out"]
    result = run(capsys, *argv)
    assert result.code == 2
    assert "--calib" in result.err


def _fill(folder: Path) -> None:
    folder.mkdir()
    (folder / "keep.txt").write_text("precious", encoding="utf-8")


def test_non_empty_out_is_refused_without_overwrite_and_left_as_it_was(capsys, tmp_path):
    out = tmp_path / "out"
    _fill(out)
    result = run(capsys, "apply", CHANNELS, "--model", RESNET, "--out", out)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "error[L105]" in lines[0] and "out" in lines[0]
    assert "not empty" in lines[0]
    assert os.listdir(out) == ["keep.txt"]
    assert (out / "keep.txt").read_text(encoding="utf-8") == "precious"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_refused_out_prints_no_summary(capsys, tmp_path):
    _fill(tmp_path / "out")
    result = run(capsys, "apply", CHANNELS, "--model", RESNET, "--out", tmp_path / "out")
    assert result.code == 2
    assert result.out == ""


def test_overwrite_replaces_a_non_empty_out(capsys, tmp_path):
    out = tmp_path / "out"
    _fill(out)
    result = run(capsys, "apply", CHANNELS, "--model", RESNET, "--out", out, "--overwrite")
    assert result.code == 0, result.err
    assert sorted(os.listdir(out)) == sorted(OUTPUT_FILES)
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_out_that_is_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "out").write_text("a file", encoding="utf-8")
    result = run(capsys, "apply", CHANNELS, "--model", RESNET, "--out", tmp_path / "out")
    assert result.code == 2
    assert "error[L105]" in result.err and "not a folder" in result.err
    assert (tmp_path / "out").read_text(encoding="utf-8") == "a file"


def test_progress_bar_only_on_a_terminal(capsys, tmp_path, monkeypatch):
    result = run(capsys, "apply", CHANNELS, "--model", RESNET, "--dry-run")
    assert "\r" not in result.err and "step/s" not in result.err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    result = run(capsys, "apply", CHANNELS, "--model", RESNET, "--out", tmp_path / "out")
    assert result.code == 0
    lines = result.err.split("\n")
    # tqdm's bars: done/total, elapsed<remaining, rate, then the label; each closed on its line.
    pruned = next(line for line in lines if "4/4 [" in line).rsplit("\r", 1)[-1]
    assert re.fullmatch(
        r"100%\|.*\| 4/4 \[\d\d:\d\d<\d\d:\d\d, .*step/s\] layer2.1.conv1.weight", pruned
    )
    written = next(line for line in lines if "6/6 [" in line).rsplit("\r", 1)[-1]
    assert written.endswith("] config_list.json")


def test_calibration_reports_progress_on_a_terminal_only(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_quant_rules(tmp_path)
    write_calib(tmp_path)
    argv = ("apply", "quant.rules", "--model", RESNET, "--calib", "calib.pt", "--dry-run")
    quiet = run(capsys, *argv)
    assert quiet.code == 0 and "calibration" not in quiet.err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    shown = run(capsys, *argv)
    assert shown.code == 0
    batches = len(torch.load(tmp_path / "calib.pt"))
    bar = next(line for line in shown.err.split("\n") if "calibration" in line)
    assert f" 0/{batches} [" in bar  # drawn from the start
    assert bar.rsplit("\r", 1)[-1].startswith("100%|") and bar.endswith("] calibration")


def test_a_bar_is_closed_before_an_error_is_said(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_quant_rules(tmp_path)
    torch.save([torch.randn(2, 3, 32, 32), torch.randn(2, 5)], tmp_path / "calib.pt")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    argv = ("apply", "quant.rules", "--model", RESNET, "--calib", "calib.pt", "--dry-run")
    result = run(capsys, *argv)
    assert result.code == 2
    said = result.err.split("\n")
    error = next(i for i, line in enumerate(said) if "[L103]" in line)
    # The bar, closed where the run stopped, ends its own line; the error starts the next.
    assert " 1/2 [" in said[error - 1] and said[error - 1].endswith("] calibration")
    assert said[error].startswith("calibration batch 1: ")


def test_progress_bars_start_anew_for_each_count_and_show_an_open_ended_one():
    stream = io.StringIO()
    bars = Bars(stream)
    for done in (1, 2):
        bars(done, 2, f"t{done}")
    for done in (1, 2, 3):
        bars(done, 0, "calibration")  # 0: a count without a known end
    bars.close()
    lines = [line.rsplit("\r", 1)[-1] for line in stream.getvalue().split("\n") if line]
    assert len(lines) == 2
    assert lines[0].startswith("100%|") and " 2/2 [" in lines[0] and lines[0].endswith("] t2")
    assert re.fullmatch(r"3 \[\d\d:\d\d, .*step/s\] calibration", lines[1])


def test_x804_is_said_once_when_inputs_or_outputs_are_quantized(applied):
    said = [line for line in applied["err"].splitlines() if "[X804]" in line]
    assert len(said) == 1
    assert said[0].startswith(f"{Path('out') / 'model.safetensors'}: warning[X804] ")
    assert "fc._input_" in said[0] and "not baked into model.safetensors" in said[0]
    assert "quant.safetensors" in said[0]


def test_no_x804_when_every_target_is_a_parameter(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(capsys, "apply", CHANNELS, "--model", RESNET, "--out", "out")
    assert result.code == 0, result.err
    assert "X804" not in result.err


# ----- through a real process ---------------------------------------------------------------------


def test_apply_in_a_process_writes_outputs_and_exits_0(tmp_path):
    write_calib(tmp_path)
    write_quant_rules(tmp_path)
    done = run_process(
        tmp_path, "apply", "quant.rules", "--model", RESNET, "--calib", "calib.pt", "--out", "out"
    )
    assert done.returncode == 0, done.stderr
    assert TRACEBACK not in done.stderr
    assert "\x1b[" not in done.stdout + done.stderr
    assert "total" in done.stdout
    assert sorted(os.listdir(tmp_path / "out")) == sorted(OUTPUT_FILES)


def test_apply_in_a_process_fails_cleanly_on_a_missing_rules_file(tmp_path):
    done = run_process(tmp_path, "apply", "missing.rules", "--model", RESNET, "--out", "out")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "missing.rules: error[E205] no rules file at 'missing.rules'"
    ]
    assert done.stdout == ""
    assert os.listdir(tmp_path) == []


def test_apply_warning_is_printed_once_without_python_warning_noise(tmp_path):
    (tmp_path / "w.rules").write_text(
        "prune layer1.0.conv1.weight sparse_ratio=0.5 granularity=out_channel\n"
        "prune layer9.conv1.weight sparse_ratio=0.5\n",
        encoding="utf-8",
    )
    argv = ("apply", "w.rules", "--model", RESNET, "--out", "out", "--allow-unmatched")
    done = run_process(tmp_path, *argv)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("warning[W301]") == 1
    assert "CompressionWarning" not in done.stderr and "export.py" not in done.stderr


def test_out_that_holds_the_working_folder_is_refused(capsys, tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (tmp_path / "a" / "keep.txt").write_text("keep")
    monkeypatch.chdir(work)
    code = main(
        [
            "apply",
            str(CHANNELS),
            "--model",
            "dsl_compress.models:resnet",
            "--out",
            "..",
            "--overwrite",
        ]
    )
    assert code == 2 and (tmp_path / "a" / "keep.txt").read_text() == "keep"
    assert "holds the working folder" in capsys.readouterr().err


BUILT: list[str] = []


def counted_model() -> torch.nn.Module:
    BUILT.append("model")
    return torch.nn.Sequential(torch.nn.Linear(4, 4))


@pytest.mark.parametrize("out", [".", "./", "../{here}"])
def test_out_naming_the_working_folder_is_refused_before_any_work(
    capsys, tmp_path, monkeypatch, out
):
    monkeypatch.chdir(tmp_path)
    out = out.format(here=tmp_path.name)
    (tmp_path / "r.rules").write_text("prune Linear.weight sparse_ratio=0.5\n")
    BUILT.clear()
    code = main(["apply", "r.rules", "--model", f"{__name__}:counted_model", "--out", out])
    assert code == 2 and "holds the working folder" in capsys.readouterr().err
    assert BUILT == []  # refused before the model was built, not after a whole run


def test_prune_only_apply_writes_a_readable_quant_file(capsys, tmp_path):
    out = tmp_path / "out"
    code = main(
        ["apply", str(CHANNELS), "--model", "dsl_compress.models:resnet", "--out", str(out)]
    )
    assert code == 0
    assert read_tensors(out, "quant") == {}
    assert oct((out).stat().st_mode & 0o777) != oct(0o700)


def test_calibration_batches_the_model_rejects_are_one_clear_error(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save(torch.randn(2, 1, 2, 3, 4, 5), bad)
    rules = RULES_DIR / "transformer_int8.rules"
    code = main(
        [
            "apply",
            str(rules),
            "--model",
            "dsl_compress.models:transformer",
            "--calib",
            str(bad),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "L103" in err and "calibration batch 0" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


# ----- faults that lose nothing (issue 9, items 9 and 11-13) --------------------------------------


def test_a_file_written_into_out_during_the_run_is_kept_and_the_run_fails(
    capsys, tmp_path, monkeypatch
):
    from dsl_compress.io import outputs

    out = tmp_path / "out"
    out.mkdir()  # empty: allowed without --overwrite
    real = outputs._write_files

    def meanwhile(*args):
        (out / "theirs.txt").write_text("theirs")  # another process writes there mid-run
        return real(*args)

    monkeypatch.setattr(outputs, "_write_files", meanwhile)
    result = run(capsys, "apply", CHANNELS, "--model", RESNET, "--out", out)
    assert result.code == 2 and TRACEBACK not in result.err
    assert "error[L105]" in result.err and "appeared during the run" in result.err
    assert str(out) in result.err and "nothing was written" in result.err
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # staging removed


@pytest.mark.parametrize("overwrite", [False, True])
def test_two_concurrent_applies_to_one_folder_lose_nothing_silently(tmp_path, overwrite):
    """Without --overwrite one wins and the other says so; with it both succeed in turn. Either
    way the folder holds one whole output and no staging is left."""
    argv = [sys.executable, "-m", "dsl_compress", "apply", str(CHANNELS), "--model", RESNET]
    argv += ["--out", "out"] + (["--overwrite"] if overwrite else [])
    env = {**os.environ, "NO_COLOR": "1"}
    runs = [
        subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [r.communicate(timeout=300)[1] for r in runs]
    done = sorted(zip([r.returncode for r in runs], errors))
    assert all(TRACEBACK not in err for _, err in done)
    if overwrite:
        assert [code for code, _ in done] == [0, 0]
    else:
        (ok, _), (failed, err) = done
        assert (ok, failed) == (0, 2) and "error[L105]" in err
    assert sorted(os.listdir(tmp_path / "out")) == sorted(OUTPUT_FILES)
    assert os.listdir(tmp_path) == ["out"]


# The command under a file-size limit that model.safetensors (~50 KB) exceeds.
SMALL_FILES = (
    "import resource, runpy, sys\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))\n"
    "sys.argv[0] = 'dsl-compress'\n"
    "runpy.run_module('dsl_compress', run_name='__main__')\n"
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_a_real_write_failure_mid_apply_is_l105_with_nothing_left(tmp_path):
    """The kernel refuses the large write (EFBIG), as a full disk does (ENOSPC), inside
    safetensors: L105 naming the file, no traceback, nothing written, staging removed."""
    done = subprocess.run(
        [sys.executable, "-c", SMALL_FILES, "apply", str(CHANNELS), "--model", RESNET]
        + ["--out", "out"],
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and TRACEBACK not in done.stderr
    assert "error[L105]" in done.stderr and "File too large" in done.stderr
    assert str(Path("out") / "model.safetensors") in done.stderr
    assert os.listdir(tmp_path) == []


def _inputs_tree(tmp_path: Path) -> dict[str, list]:
    """Per input kind, the apply arguments that read it and an --out folder holding it."""
    files = {
        "rules/main.rules": (
            'include "parts/inc.rules"\nprune layer1.0.conv1.weight sparse_ratio=0.5\n'
        ),
        "rules/parts/inc.rules": "prune layer1.1.conv1.weight sparse_ratio=0.5\n",
        "w/weights.safetensors": "not read: refused first",
        "c/calib.pt": "not read: refused first",
        "m/factory.py": "raise SystemExit('not imported: refused first')\n",
        "mypkg/__init__.py": "raise SystemExit('not imported: refused first')\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    rules = ["apply", "rules/main.rules", "--model"]
    return {
        "rules file": [*rules, RESNET, "--out", "rules"],
        "included file": [*rules, RESNET, "--out", "rules/parts"],
        "weights": [*rules, RESNET, "--weights", "w/weights.safetensors", "--out", "w"],
        "calibration": [*rules, RESNET, "--calib", "c/calib.pt", "--out", "c"],
        "model file": [*rules, "m/factory.py:make", "--out", "m"],
        "model package": [*rules, "mypkg.models:make", "--out", "mypkg"],
    }


@pytest.mark.parametrize(
    "kind",
    ["rules file", "included file", "weights", "calibration", "model file", "model package"],
)
def test_out_holding_any_input_is_refused_with_overwrite(capsys, tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    argv = _inputs_tree(tmp_path)[kind]
    before = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    result = run(capsys, *argv, "--overwrite")
    assert result.code == 2 and result.out == ""
    assert "error[L105]" in result.err and "holds the input" in result.err
    assert {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_apply_removes_a_killed_runs_staging_and_reports_a_live_ones(capsys, tmp_path):
    from test_staging import dead_pid, staging

    out = tmp_path / "out"
    dead = staging(out, "a1b2c3d4", dead_pid())
    live = staging(out, "e5f6g7h8", os.getppid())
    result = run(capsys, "apply", CHANNELS, "--model", RESNET, "--out", out)
    assert result.code == 0, result.err
    assert f"info[L107] removed '{dead}'" in result.err and not dead.exists()
    assert "warning[L107]" in result.err and str(live) in result.err and live.is_dir()
    assert sorted(os.listdir(out)) == sorted(OUTPUT_FILES)


# ----- statements that match nothing: E221 unless --allow-unmatched -------------------------------

UNMATCHED = (
    "prune conv*.wieght sparse_ratio=0.5\n"
    "prune conv1.weight sparse_ratio=0.5\n"
    "exclude bn9\n"
    "quantize fc.weight quant_dtype=int8 except fc9\n"
)


def test_apply_refuses_every_unmatched_selector_at_once_before_calibration(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    Path("u.rules").write_text(UNMATCHED, encoding="utf-8")
    # The calibration file does not exist: the refusal comes before it is read.
    argv = ("apply", "u.rules", "--model", "dsl_compress.models:cnn", "--calib", "none.pt")
    result = run(capsys, *argv, "--out", "out")
    assert result.code == 2 and result.out == ""
    located = re.findall(r"^(u\.rules:\d+:\d+): error\[(\w+)\]", result.err, re.M)
    assert located == [("u.rules:1:7", "E221"), ("u.rules:3:9", "E221"), ("u.rules:4:44", "E221")]
    assert "W301 is an error for apply" in result.err and "warning[W301]" not in result.err
    assert "did you mean 'weight'? (or pass --allow-unmatched" in result.err
    assert "none.pt" not in result.err and sorted(os.listdir(tmp_path)) == ["u.rules"]


def test_allow_unmatched_applies_the_rest_with_w301_warnings(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("u.rules").write_text(UNMATCHED, encoding="utf-8")
    argv = ("apply", "u.rules", "--model", "dsl_compress.models:cnn", "--dry-run")
    result = run(capsys, *argv, "--allow-unmatched")
    assert result.code == 0, result.err
    assert result.err.count("warning[W301]") == 3 and "E221" not in result.err
    rows = {line.split()[0]: line.split()[1:] for line in result.out.splitlines()[2:]}
    assert rows["u.rules:2:1"][:2] == ["prune", "1"] and rows["u.rules:4:1"][:2] == [
        "quantize",
        "1",
    ]


def test_e221_is_documented_with_what_the_command_prints(capsys, tmp_path, monkeypatch):
    from dsl_compress.codes import CODES
    from dsl_compress.tools.code_docs import COMMAND_EXAMPLES

    example = COMMAND_EXAMPLES["E221"].splitlines()
    assert CODES["E221"].name == "unmatched-in-apply" and "W301" in CODES["E221"].summary
    monkeypatch.chdir(tmp_path)
    Path("typo.rules").write_text(example[1] + "\n", encoding="utf-8")
    argv = example[2].split()[3:]
    assert argv[0] == "typo.rules"
    result = run(capsys, "apply", *argv)
    assert result.code == 2 and result.err.splitlines()[0] == example[-1]
