"""The apply job and its output folder: every file read back, atomic writes, dry runs, NNI input."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import re
import stat
import warnings

import pytest
import torch

import dsl_compress
from conftest import assert_same_state, state_copy
from output_files import fail_writes_to, read_metadata, read_tensors
from dsl_compress import CompressionError, CompressionWarning, Mode
from dsl_compress.io import atomic, outputs
from dsl_compress.resolve.config_input import plan_from_config_list
from dsl_compress.tools.apply_job import OUTPUT_FILES, apply_plan_job, write_outputs
from dsl_compress.models import example_model, resnet
from dsl_compress.tools.summary import summary_rows, summary_table

RULES = (
    "prune Conv2d.weight sparse_ratio=0.5 granularity=out_channel metric=l1\n"
    "prune layer1.*.conv*.weight sparse_ratio=0.25\n"
    "align **.bn*.weight with **.conv*.weight dims=[0]\n"
    "quantize Linear.{weight,_input_,_output_} quant_dtype=int8 quant_scheme=symmetric\n"
    "quantize Conv2d.weight quant_dtype=int4 quant_scheme=affine granularity=out_channel\n"
    "exclude layer2.0.shortcut.**\n"
)


def compile_plan(model, text=RULES):
    return dsl_compress.parse(text, "r.rules").compile(model).plan


def run_job(dry_run=False, **kwargs):
    model, batch = example_model("resnet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompressionWarning)
        result = apply_plan_job(
            model, compile_plan(model), calib=[batch], dry_run=dry_run, **kwargs
        )
    return model, batch, result


def flat(nested):
    return {(m, t): v for m, targets in nested.items() for t, v in targets.items()}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One apply written to disk: (out folder, compression masks, quant params, plan, paths)."""
    _, _, result = run_job()
    masks, quant = result.compression.masks(), result.compression.quant_params()
    out = tmp_path_factory.mktemp("apply") / "out"
    paths = write_outputs(result, out)
    return out, flat(masks), flat(quant), result.plan, paths


def test_every_file_is_written_and_nothing_else(written):
    out, _, _, _, paths = written
    assert [p.name for p in paths] == list(OUTPUT_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert not [p for p in out.parent.iterdir() if p != out]


def test_masks_file_holds_the_compression_masks_as_bool(written):
    out, masks, _, _, _ = written
    stored = read_tensors(out, "masks")
    assert set(stored) == {f"{m}.{t}" for m, t in masks}
    assert "layer1.0.bn1.weight" in stored and "conv1.weight" in stored
    for (module, target), mask in masks.items():
        assert stored[f"{module}.{target}"].dtype is torch.bool
        assert torch.equal(stored[f"{module}.{target}"], mask)


def test_model_file_is_finalized_and_loads_strictly(written):
    out, masks, quant, _, _ = written
    state = read_tensors(out, "model")
    fresh = resnet()
    fresh.load_state_dict(state, strict=True)
    assert not any("parametrizations" in k for k in state)
    for (module, target), mask in masks.items():
        assert torch.all(state[f"{module}.{target}"][~mask] == 0), (module, target)
    # Quantized weights are on their grid: weight / scale is an integer within [qmin, qmax].
    params = quant[("layer1.0.conv1", "weight")]
    steps = state["layer1.0.conv1.weight"] / params["scale"] + params["zero_point"]
    assert torch.allclose(steps, steps.round(), atol=1e-3)
    assert steps.min() >= params["qmin"] - 1e-3 and steps.max() <= params["qmax"] + 1e-3


def test_quant_file_holds_scales_zero_points_and_dtypes(written):
    out, _, quant, _, _ = written
    stored = read_tensors(out, "quant")
    expected = {f"{m}.{t}.{f}" for m, t in quant for f in ("scale", "zero_point")}
    assert set(stored) == expected
    assert {"fc.weight.scale", "fc._input_0.zero_point", "conv1.weight.scale"} <= set(stored)
    for (module, target), params in quant.items():
        for field in ("scale", "zero_point"):
            assert torch.equal(stored[f"{module}.{target}.{field}"], params[field])
    metadata = read_metadata(out, "quant")
    assert json.loads(metadata["conv1.weight"]) == {
        "qmax": 7,
        "qmin": -7,
        "quant_dtype": "int4",
        "quant_scheme": "affine",
    }
    assert stored["conv1.weight.scale"].shape == (8, 1, 1, 1)


def test_plan_file_names_the_rule_of_every_key(written):
    out, _, _, plan, _ = written
    stored = json.loads((out / "plan.json").read_text())
    assert stored == json.loads(json.dumps(plan.to_dicts()))
    conv = next(e for e in stored if e["module"] == "layer1.0.conv1" and e["mode"] == "prune")
    assert conv["setting"]["sparse_ratio"] == 0.25 and conv["metric"] == "l1"
    assert conv["origin"] == "r.rules:2:1"
    assert conv["key_origins"]["sparse_ratio"] == "r.rules:2:29"
    assert conv["key_origins"]["granularity"] == "r.rules:1:38"
    bn = next(e for e in stored if e["module"] == "layer1.0.bn1" and e["target"] == "weight")
    assert bn["origin"] == "r.rules:3:1" and bn["setting"]["align"]["module_name"]
    for entry in stored:
        assert re.fullmatch(r"r\.rules:\d+:\d+", entry["origin"])
        assert set(entry["key_origins"]) >= set(entry["setting"]) - {"align"}


def test_config_list_file_reproduces_the_plan(written):
    out, masks, _, plan, _ = written
    stored = json.loads((out / "config_list.json").read_text())
    assert set(stored) == {"prune", "quantize", "distill"} and stored["distill"] == []
    model, batch = example_model("resnet")
    for mode in Mode:
        again = dsl_compress.build_plan(model, stored[mode.value], mode, metric="l1")
        assert meaning(again, mode) == meaning(plan, mode)
    again = plan_from_config_list(model, out / "config_list.json", metric="l1")
    assert meaning(again) == meaning(plan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompressionWarning)
        compression = dsl_compress.run_plan(model, again, calib=[batch])
    replayed = flat(compression.masks())
    assert replayed.keys() == masks.keys()
    assert all(torch.equal(replayed[k], masks[k]) for k in masks)


def meaning(plan, mode=None):
    """What a plan does, without where it came from (rules vs config_list positions)."""
    return sorted(
        (e.module, e.target, e.mode.value, e.module_type, e.metric, _setting(e.setting))
        for e in plan.entries
        if mode is None or e.mode is mode
    )


def _setting(setting):
    return json.dumps({k: v for k, v in setting.items() if v is not None}, sort_keys=True)


# ----- atomicity ---------------------------------------------------------------------------------


def test_a_failing_write_leaves_nothing(tmp_path, monkeypatch):
    _, _, result = run_job()
    fail_writes_to(monkeypatch, "quant.safetensors", RuntimeError("disk on fire"))
    progress = []
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_outputs(result, tmp_path / "out", progress=lambda *a: progress.append(a))
    assert list(tmp_path.iterdir()) == []
    assert [label for _, _, label in progress] == [
        "finalized",
        "model.safetensors",
        "masks.safetensors",
    ]


def test_an_os_error_is_l105_and_an_existing_folder_survives(tmp_path, monkeypatch):
    _, _, result = run_job()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")

    def failing(data, path):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr("dsl_compress.io.outputs._write_json", failing)
    with pytest.raises(CompressionError) as caught:
        write_outputs(result, out, overwrite=True)
    assert caught.value.codes == ["L105"]
    assert "No space left on device" in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_non_empty_folder_is_refused_untouched_before_finalizing(tmp_path):
    model, _, result = run_job()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(CompressionError) as caught:
        write_outputs(result, out)
    assert caught.value.codes == ["L105"]
    assert "not empty" in str(caught.value)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    result.compression.restore()  # still attached: the refusal came before finalize()


def test_overwrite_replaces_the_folder_as_a_whole(tmp_path):
    _, _, result = run_job()
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "keep.txt").write_text("old")
    write_outputs(result, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_empty_folder_and_missing_parents_are_fine(tmp_path):
    _, _, result = run_job()
    (tmp_path / "empty").mkdir()
    write_outputs(result, tmp_path / "empty")
    _, _, result = run_job()
    write_outputs(result, tmp_path / "a" / "b")
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == sorted(OUTPUT_FILES)


def test_a_file_in_the_way_is_refused(tmp_path):
    _, _, result = run_job()
    (tmp_path / "out").write_text("x")
    with pytest.raises(CompressionError) as caught:
        write_outputs(result, tmp_path / "out", overwrite=True)
    assert caught.value.codes == ["L105"]
    assert (tmp_path / "out").read_text() == "x"


def test_write_progress_counts_every_step(tmp_path):
    _, _, result = run_job()
    calls = []
    write_outputs(result, tmp_path / "out", progress=lambda *a: calls.append(a))
    assert calls == [(1, 6, "finalized")] + [(i + 2, 6, n) for i, n in enumerate(OUTPUT_FILES)]


def test_tied_weights_are_written_under_both_keys(tmp_path):
    model = torch.nn.Sequential(torch.nn.Embedding(6, 4), torch.nn.Linear(4, 6, bias=False))
    model[1].weight = model[0].weight
    plan = dsl_compress.parse("prune 0.weight sparse_ratio=0.5\n", "t.rules").compile(model).plan
    with pytest.warns(CompressionWarning, match=r"T405.*'1\.weight'"):  # said, then done
        result = apply_plan_job(model, plan)
    write_outputs(result, tmp_path / "out")
    state = read_tensors(tmp_path / "out", "model")
    assert torch.equal(state["0.weight"], state["1.weight"])
    assert (state["0.weight"] == 0).float().mean().item() == pytest.approx(0.5)


# ----- dry run, summary, NNI input ---------------------------------------------------------------


def test_dry_run_reports_and_leaves_the_model_bit_identical():
    model, batch = example_model("resnet")
    saved = state_copy(model)
    steps = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompressionWarning)
        result = apply_plan_job(
            model,
            compile_plan(model),
            calib=[batch],
            dry_run=True,
            progress=lambda *a: steps.append(a),
        )
    assert_same_state(model, saved)
    assert not any("parametrizations" in k for k in model.state_dict())
    assert result.dry_run and result.rows == run_job()[2].rows
    # One step per pruning metric computed, counting up to the number of actively pruned tensors,
    # then one per calibration batch of the activation quantization.
    active = [e for e in result.plan.entries if e.setting.get("sparse_ratio") is not None]
    metrics = [s[:2] for s in steps if s[2] != "calibration"]
    assert metrics == [(i, len(active)) for i in range(1, len(active) + 1)]
    assert steps[len(metrics) :] == [(1, 1, "calibration")]
    with pytest.raises(CompressionError) as caught:
        write_outputs(result, "never-written")
    assert caught.value.codes == ["X803"]


def test_summary_rows_per_rule():
    _, _, result = run_job()
    rows = {row.rule: row for row in summary_rows(result)}
    assert list(rows) == [f"r.rules:{n}:1" for n in (1, 2, 3, 4, 5)]
    assert rows["r.rules:1:1"].mode is Mode.PRUNE
    # Every Conv2d weight but the excluded shortcut's: line 1 sets granularity and metric on
    # layer1's four too, though line 2 sets their last key.
    assert rows["r.rules:1:1"].tensors == 9
    assert rows["r.rules:2:1"].sparsity == pytest.approx(0.25)
    assert rows["r.rules:4:1"].bits == ("int8",) and rows["r.rules:4:1"].sparsity is None
    assert rows["r.rules:5:1"].bits == ("int4",)
    assert summary_rows(result.compression) == list(result.rows)


def test_summary_credits_every_statement_that_set_a_key_and_only_its_own_dtypes():
    model, batch = example_model("cnn")
    text = (
        "quantize Conv2d.weight quant_dtype=int8\n"
        "quantize Conv2d.weight granularity=out_channel\n"
        "prune conv1.weight sparse_ratio=0.5 granularity=out_channel\n"
        "align bn1.weight with conv1.weight dims=[0]\n"
        "prune conv2.weight sparse_ratio=0.25\n"
    )
    plan = compile_plan(model, text)
    result = apply_plan_job(model, plan, calib=[batch])
    rows = {row.rule: row for row in result.rows}
    convs = len(plan.of_mode(Mode.QUANTIZE))
    assert (rows["r.rules:1:1"].tensors, rows["r.rules:1:1"].bits) == (convs, ("int8",))
    assert (rows["r.rules:2:1"].tensors, rows["r.rules:2:1"].bits) == (convs, ())
    assert rows["r.rules:4:1"].align and rows["r.rules:4:1"].cells()[1] == "prune (align)"
    assert not rows["r.rules:3:1"].align
    table = {line.split("  ")[0].strip(): line for line in summary_table(result).splitlines()}
    assert re.match(r"r\.rules:2:1\s+quantize\s+3\s+-\s+-$", table["r.rules:2:1"])
    # The total counts each tensor once, though two statements are credited with it.
    masks = flat(result.compression.masks())
    zeros = sum(int((~m).sum()) for m in masks.values())
    total = result.total
    assert (
        total.tensors == len({e.key for e in plan.entries}) < sum(r.tensors for r in rows.values())
    )
    assert (total.zeros, total.elements) == (zeros, sum(m.numel() for m in masks.values()))
    assert total.bits == ("int8",)
    assert table["total"].split() == [
        "total",
        str(total.tensors),
        f"{100 * zeros / total.elements:.1f}%",
        "int8",
    ]


def test_summary_table_is_aligned():
    _, _, result = run_job()
    table = summary_table(result)
    lines = table.splitlines()
    assert lines[0].split() == ["rule", "mode", "tensors", "sparsity", "bits"]
    assert re.match(r"r\.rules:2:1\s+prune\s+4\s+25\.0%\s+-$", lines[3])
    assert lines[-1].split()[0] == "total"
    assert len({len(line) for line in lines if line.startswith("-")}) == 1


def test_engine_errors_are_located_at_the_rule():
    model, _ = example_model("resnet")
    plan = compile_plan(model, "quantize Linear._input_ quant_dtype=int8\n")
    with pytest.raises(CompressionError) as caught:
        apply_plan_job(model, plan)
    assert caught.value.codes == ["Q602"]
    assert "r.rules:1:1" in str(caught.value)


NNI_PRUNE = [
    {"op_types": ["Conv2d"], "sparse_ratio": 0.5, "granularity": "out_channel"},
    {"op_names": ["fc"], "sparse_ratio": 0.8},
]


def test_nni_config_list_file_as_input(tmp_path):
    path = tmp_path / "config_list.json"
    path.write_text(json.dumps(NNI_PRUNE))
    model = resnet()
    plan = plan_from_config_list(model, path, "prune", "l2")
    assert {e.metric for e in plan.entries} == {"l2"}
    assert plan.find("fc", "weight", Mode.PRUNE).origin == "config_list[1]"
    result = apply_plan_job(model, plan)
    rows = {row.rule: row for row in result.rows}
    assert rows["config_list[1]"].sparsity == pytest.approx(0.8)
    again = plan_from_config_list(resnet(), NNI_PRUNE, Mode.PRUNE, "l2")
    assert meaning(again) == meaning(plan)


@pytest.mark.parametrize(
    "content, mode, metric, code",
    [
        ("[{]", "prune", None, "C101"),
        (json.dumps(NNI_PRUNE), None, None, "X803"),
        (json.dumps(NNI_PRUNE), "prun", None, "X803"),
        (json.dumps(NNI_PRUNE), "prune", "l3", "P510"),
        (json.dumps([{"op_types": ["Conv2d"], "sparse_ration": 0.5}]), "prune", None, "C102"),
    ],
)
def test_bad_nni_input_is_one_clear_error(tmp_path, content, mode, metric, code):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(CompressionError) as caught:
        plan_from_config_list(resnet(), path, mode, metric)
    assert caught.value.codes == [code]


def test_missing_nni_file_names_the_path(tmp_path):
    with pytest.raises(CompressionError, match="missing.json"):
        plan_from_config_list(resnet(), tmp_path / "missing.json", "prune")


def test_a_failing_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    _, _, result = run_job()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    real = atomic.rename_no_replace

    def failing(source, destination):
        if source.name == "new":  # the staged output, moving in
            raise OSError(13, "Permission denied", str(destination))
        return real(source, destination)

    monkeypatch.setattr(atomic, "rename_no_replace", failing)
    with pytest.raises(CompressionError) as caught:
        write_outputs(result, out, overwrite=True)
    assert caught.value.codes == ["L105"] and "Permission denied" in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


# ----- faults that lose nothing (issue 9, items 11, 13, 14) ---------------------------------------


def _half_written_then_full(path):
    with open(path, "wb") as handle:
        handle.write(b"\0" * 100)


@pytest.mark.parametrize("failing_file", OUTPUT_FILES)
def test_a_full_disk_in_any_file_is_l105_naming_the_path_and_leaves_nothing(
    tmp_path, monkeypatch, failing_file
):
    """Each file's own writer fails as it does on a full disk: the system's write (os.pwrite)
    of a safetensors file with ENOSPC and no file name, the JSON writer with OSError ENOSPC."""
    _, _, result = run_job()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    real_json = outputs._write_json

    def write_json(data, path):
        if str(path).endswith(failing_file):
            _half_written_then_full(path)
            raise OSError(28, "No space left on device", str(path))
        return real_json(data, path)

    fail_writes_to(monkeypatch, failing_file, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    monkeypatch.setattr(outputs, "_write_json", write_json)
    with pytest.raises(CompressionError) as caught:
        write_outputs(result, out, overwrite=True)
    assert caught.value.codes == ["L105"]
    message = caught.value.diagnostics[0].message
    assert "no space left" in message.lower() and str(out / failing_file) in message
    assert ".tmp" not in message  # the staging folder's name means nothing to the user
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # staging removed
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_write_that_makes_no_progress_is_l105_naming_the_file(tmp_path, monkeypatch):
    """A system write that returns 0 bytes forever would loop: it is an I/O error instead."""
    _, _, result = run_job()
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: 0)
    with pytest.raises(CompressionError) as caught:
        write_outputs(result, tmp_path / "out")
    assert caught.value.codes == ["L105"]
    assert "wrote nothing" in str(caught.value) and "model.safetensors" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_symlinked_folder_stays_a_link_and_its_target_is_written(tmp_path, overwrite):
    _, _, result = run_job()
    real = tmp_path / "real"
    real.mkdir()
    if overwrite:
        (real / "keep.txt").write_text("old")
    out = tmp_path / "out"
    out.symlink_to(real, target_is_directory=True)
    paths = write_outputs(result, out, overwrite=overwrite)
    assert out.is_symlink() and os.readlink(out) == str(real)
    assert sorted(p.name for p in real.iterdir()) == sorted(OUTPUT_FILES)
    assert all(p.parent == out and p.is_file() for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "real"]  # no staging left


def test_a_dangling_link_gets_its_target_folder(tmp_path):
    _, _, result = run_job()
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "made" / "here")
    write_outputs(result, out)
    assert out.is_symlink()
    assert sorted(p.name for p in (tmp_path / "made" / "here").iterdir()) == sorted(OUTPUT_FILES)


def _input_cases(tmp_path):
    """(out, inputs) where the output folder is or holds an input, directly or through links."""
    (tmp_path / "rules" / "deep").mkdir(parents=True)
    rules = tmp_path / "rules" / "r.rules"
    rules.write_text("prune Conv2d.weight sparse_ratio=0.5\n")
    nested = tmp_path / "rules" / "deep" / "inc.rules"
    nested.write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "rules", target_is_directory=True)
    return {
        "holds": (tmp_path / "rules", [rules]),
        "holds deep inside": (tmp_path / "rules", [tmp_path / "x.pt", nested]),
        "is": (rules, [rules]),
        "through a linked output": (tmp_path / "link", [rules]),
        "through a linked input": (tmp_path / "rules" / "deep", [tmp_path / "link" / "deep"]),
        "as a relative path": (tmp_path / "rules", [os.path.relpath(rules)]),
    }


@pytest.mark.parametrize(
    "case",
    [
        "holds",
        "holds deep inside",
        "is",
        "through a linked output",
        "through a linked input",
        "as a relative path",
    ],
)
def test_an_output_folder_holding_an_input_is_refused_even_with_overwrite(tmp_path, case):
    _, _, result = run_job()
    out, inputs = _input_cases(tmp_path)[case]
    before = {p: p.read_text() for p in tmp_path.rglob("*.rules")}
    with pytest.raises(CompressionError) as caught:
        write_outputs(result, out, overwrite=True, inputs=inputs)
    assert caught.value.codes == ["L105"]
    diag = caught.value.diagnostics[0]
    assert "holds the input" in diag.message and str(out) in diag.message and diag.hint
    assert {p: p.read_text() for p in tmp_path.rglob("*.rules")} == before
    result.compression.restore()  # refused before finalize(): the model is still attached


def test_inputs_beside_the_output_folder_are_fine(tmp_path):
    _, _, result = run_job()
    rules = tmp_path / "r.rules"
    rules.write_text("")
    (tmp_path / "outside").mkdir()
    write_outputs(result, tmp_path / "out", inputs=[rules, tmp_path / "outside", tmp_path / "o"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(OUTPUT_FILES)


def _strict_json(path):
    def refuse(word):
        raise ValueError(f"{word} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_plan_and_config_list_are_strict_json_with_infinite_thresholds(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    text = "prune 0.weight sparse_threshold=0.5\nprune 1.weight sparse_ratio=0.5\n"
    plan = dsl_compress.parse(text, "t.rules").compile(model).plan
    # Rules refuse a non-finite threshold (C103); a plan built in Python may still hold one.
    first = plan.entries[0]
    infinite = dataclasses.replace(first, setting={**first.setting, "sparse_threshold": math.inf})
    plan = dataclasses.replace(plan, entries=(infinite, *plan.entries[1:]))
    write_outputs(apply_plan_job(model, plan), tmp_path / "out")
    saved = _strict_json(tmp_path / "out" / "plan.json")
    assert saved[0]["setting"]["sparse_threshold"] == float("inf")
    assert saved == json.loads(json.dumps(plan.to_dicts()))  # the same plan, in strict JSON
    lists = _strict_json(tmp_path / "out" / "config_list.json")
    assert lists["prune"][0]["target_settings"]["weight"]["sparse_threshold"] == float("inf")


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_every_output_file_gets_the_umask_mode(tmp_path, umask):
    _, _, result = run_job()
    previous = os.umask(umask)
    try:
        write_outputs(result, tmp_path / "out")
    finally:
        os.umask(previous)
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == {name: 0o666 & ~umask for name in OUTPUT_FILES}


def test_compile_prints_strict_json(tmp_path, capsys, monkeypatch):
    """compile writes through the strict JSON writer, as plan.json does."""
    from cli_runner import run
    from dsl_compress.resolve.ruleset import Compiled

    infinite = {"prune": [{"op_names": ["fc"], "sparse_threshold": math.inf}]}
    monkeypatch.setattr(Compiled, "config_list", property(lambda self: infinite))
    rules, out = tmp_path / "t.rules", tmp_path / "c.json"
    rules.write_text("prune fc.weight sparse_ratio=0.5\n")
    assert run(capsys, "compile", rules, "-o", out).code == 0
    assert "Infinity" not in out.read_text()
    assert _strict_json(out)["prune"][0]["sparse_threshold"] == math.inf
