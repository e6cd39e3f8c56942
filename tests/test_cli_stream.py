"""`dsl-compress apply --stream`: the same output folder as the in-memory apply, bit for bit, from
a single file, a sharded index, a folder or an hf: model, never loading the model."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from cli_runner import run
from output_files import read_metadata, read_tensors, tensor_files

MODEL_PY = """
import torch
from torch import nn


def build():
    blocks = []
    for _ in range(3):
        blocks += [nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Linear(32, 16)]
    return nn.Sequential(*blocks).to(getattr(torch, "{dtype}"))
"""

RULES = """
prune 0.weight sparse_ratio=0.5 granularity=out_channel metric=l1
prune 3.weight sparse_ratio=0.5 granularity=out_channel metric=l1
align 1.weight with 0.weight dims=[0]
align 4.weight with 3.weight dims=[0]
prune 2.weight sparse_ratio=0.4 group=downs
prune 5.weight sparse_ratio=0.4 group=downs
prune 8.weight sparse_threshold=0.05 max_sparse_ratio=0.3
quantize 0.weight quant_dtype=int8 granularity=out_channel
quantize 2.weight quant_dtype=int4
quantize 6.weight quant_dtype=uint8 quant_scheme=affine granularity=out_channel
"""

DTYPES = ["float32", "float16", "bfloat16"]


def _state(dtype: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    blocks = []
    for _ in range(3):
        blocks += [nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Linear(32, 16)]
    model = nn.Sequential(*blocks).to(getattr(torch, dtype))
    for module in model:
        if isinstance(module, nn.BatchNorm1d):
            module.weight.data.uniform_(0.5, 1.5)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _shards(state: dict[str, torch.Tensor], folder: Path, per_shard: int = 4) -> Path:
    """The Hugging Face layout: model-0000i-of-0000N.safetensors and the index."""
    folder.mkdir()
    names = list(state)
    groups = [names[i : i + per_shard] for i in range(0, len(names), per_shard)]
    weight_map = {}
    for i, group in enumerate(groups, start=1):
        file = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: state[n] for n in group}, str(folder / file))
        weight_map.update((n, file) for n in group)
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(params=DTYPES)
def project(request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.py").write_text(MODEL_PY.format(dtype=request.param))
    (tmp_path / "a.rules").write_text(RULES)
    state = _state(request.param)
    save_file(state, str(tmp_path / "weights.safetensors"))
    _shards(state, tmp_path / "sharded")
    return tmp_path


def _apply(capsys, *extra):
    args = ("apply", "a.rules", "--model", "model.py:build", *extra)
    result = run(capsys, *args)
    assert result.code == 0, result.err
    return result


def _same_outputs(a: Path, b: Path) -> None:
    for prefix in ("model", "masks", "quant"):
        left, right = read_tensors(a, prefix), read_tensors(b, prefix)
        assert left.keys() == right.keys(), prefix
        for name, tensor in left.items():
            assert right[name].dtype == tensor.dtype, name
            assert torch.equal(right[name], tensor), name
        assert read_metadata(a, prefix) == read_metadata(b, prefix)
    for name in ("plan.json", "config_list.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


@pytest.mark.parametrize(
    "weights", ["weights.safetensors", "sharded", "sharded/model.safetensors.index.json"]
)
def test_streamed_output_is_the_in_memory_output(project, capsys, weights):
    memory = _apply(capsys, "--weights", "weights.safetensors", "--out", "memory")
    streamed = _apply(capsys, "--weights", weights, "--out", "streamed", "--stream")
    _same_outputs(project / "memory", project / "streamed")
    assert streamed.out == memory.out  # the same summary table


def test_streamed_output_sharded_finds_the_same_tensors(project, capsys):
    _apply(capsys, "--weights", "sharded", "--out", "memory")
    _apply(
        capsys, "--weights", "sharded", "--out", "streamed", "--stream", "--max-shard-size", "600B"
    )
    assert len(tensor_files(project / "streamed", "model")) > 1
    assert (project / "streamed" / "masks.safetensors.index.json").is_file()
    _same_outputs(project / "memory", project / "streamed")


def test_a_streamed_dry_run_writes_nothing_and_reports_the_same(project, capsys):
    memory = _apply(capsys, "--weights", "sharded", "--dry-run")
    streamed = _apply(capsys, "--weights", "sharded", "--dry-run", "--stream")
    assert streamed.out == memory.out
    assert "50.0%" in streamed.out
    assert sorted(p.name for p in project.iterdir()) == [
        "a.rules",
        "model.py",
        "sharded",
        "weights.safetensors",
    ]


def test_stream_without_a_checkpoint_is_one_clear_error(project, capsys):
    result = run(capsys, "apply", "a.rules", "--model", "model.py:build", "--out", "o", "--stream")
    assert result.code == 2
    assert "error[L102]" in result.err and "--weights" in result.err
    assert not (project / "o").exists()


W8A8 = (
    "quantize Linear.weight quant_dtype=int8 granularity=out_channel\n"
    "quantize Linear._input_0 quant_dtype=int8\n"
)
PRUNED = "prune 0.weight sparse_ratio=0.5 granularity=out_channel\nalign 1.weight with 0.weight dims=[0]\n"


IO_MASKS = "align 0._output_0 with 0.weight dims=[0]\nalign 2._input_0 with 0.weight dims=[0]\n"


@pytest.mark.parametrize(
    "rules",
    [W8A8, PRUNED + W8A8, PRUNED + IO_MASKS, PRUNED + IO_MASKS + W8A8],
    ids=["alone", "through masks", "io masks", "io masks and observed"],
)
def test_input_quantization_streamed_is_calibrated_as_in_memory(project, capsys, rules):
    dtype = _state_dtype(project)
    torch.save(torch.randn(3, 4, 16).to(dtype), project / "calib.pt")
    (project / "w8a8.rules").write_text(rules)
    common = ("apply", "w8a8.rules", "--model", "model.py:build", "--calib", "calib.pt")
    memory = run(capsys, *common, "--weights", "weights.safetensors", "--out", "memory")
    assert memory.code == 0, memory.err
    streamed = run(capsys, *common, "--weights", "sharded", "--out", "streamed", "--stream")
    assert streamed.code == 0, streamed.err
    assert "X804" in streamed.err  # input masks or quantization act at run time
    _same_outputs(project / "memory", project / "streamed")
    dry = run(capsys, *common, "--weights", "sharded", "--dry-run", "--stream")
    assert dry.code == 0 and dry.out == streamed.out


def _state_dtype(project) -> torch.dtype:
    return read_tensors(project, "weights")["0.weight"].dtype


@pytest.mark.parametrize("stream", [(), ("--stream",)], ids=["in memory", "streamed"])
@pytest.mark.parametrize("given", [(), ("--calib", "calib.pt"), ("--loss", "loss.py:loss")])
def test_taylor_without_calib_and_loss_is_p507_at_its_rule(project, capsys, stream, given):
    (project / "b.rules").write_text("prune 0.weight sparse_ratio=0.5 metric=taylor\n")
    args = ("--weights", "sharded", "--out", "o", *stream, *given)
    result = run(capsys, "apply", "b.rules", "--model", "model.py:build", *args)
    assert result.code == 2
    assert "b.rules:1:1: error[P507]" in result.err
    missing = [o for o in ("--calib", "--loss") if o not in given]
    assert f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing" in result.err
    assert "--calib FILE|SPEC" in result.err and "--loss SPEC" in result.err
    assert not (project / "o").exists()


LOSS_PY = """
def loss(model, batch):
    return model(batch).float().pow(2).mean()
"""

TAYLOR = """
prune 0.weight sparse_ratio=0.5 granularity=out_channel metric=taylor
align 1.weight with 0.weight dims=[0]
prune 2.weight sparse_ratio=0.4 metric=taylor group=downs
prune 5.weight sparse_ratio=0.4 metric=taylor group=downs
prune 6.weight sparse_ratio=0.3 metric=l1
quantize Linear.weight quant_dtype=int8 granularity=out_channel
quantize 3._input_0 quant_dtype=int8
"""


def test_taylor_from_the_command_line_streamed_is_in_memory(project, capsys):
    torch.save(torch.randn(3, 4, 16).to(_state_dtype(project)), project / "calib.pt")
    (project / "loss.py").write_text(LOSS_PY)
    (project / "t.rules").write_text(TAYLOR)
    common = ("apply", "t.rules", "--model", "model.py:build", "--calib", "calib.pt")
    common += ("--loss", "loss.py:loss")
    memory = run(capsys, *common, "--weights", "weights.safetensors", "--out", "memory")
    assert memory.code == 0, memory.err
    streamed = run(capsys, *common, "--weights", "sharded", "--out", "streamed", "--stream")
    assert streamed.code == 0, streamed.err
    assert streamed.out == memory.out
    _same_outputs(project / "memory", project / "streamed")
    masks = read_tensors(project / "streamed", "masks")
    assert not masks["0.weight"].all() and not masks["2.weight"].all()


def test_a_loss_spec_naming_nothing_is_l108(project, capsys):
    torch.save(torch.randn(3, 4, 16), project / "calib.pt")
    (project / "b.rules").write_text("prune 0.weight sparse_ratio=0.5 metric=taylor\n")
    args = ("--weights", "sharded", "--out", "o", "--calib", "calib.pt", "--loss", "nope.py:f")
    result = run(capsys, "apply", "b.rules", "--model", "model.py:build", *args)
    assert result.code == 2 and "error[L108]" in result.err and "nope.py" in result.err


def test_a_full_disk_midway_publishes_nothing(project, capsys, monkeypatch):
    real = os.pwrite
    calls = []

    def filling(fd, data, offset):
        calls.append(offset)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", filling)
    args = ("--weights", "sharded", "--out", "o", "--stream")
    result = run(capsys, "apply", "a.rules", "--model", "model.py:build", *args)
    assert result.code == 2 and "error[L105]" in result.err
    assert "No space left on device" in result.err
    assert not (project / "o").exists()
    assert [p.name for p in project.iterdir() if p.name.startswith(".")] == []


def test_a_checkpoint_that_does_not_fit_the_model_is_refused_before_anything(project, capsys):
    state = _state("float32")
    state["0.weight"] = torch.zeros(8, 16)
    save_file(state, str(project / "bad.safetensors"))
    args = ("--weights", "bad.safetensors", "--out", "o", "--stream")
    result = run(capsys, "apply", "a.rules", "--model", "model.py:build", *args)
    assert result.code == 2 and "error[L102]" in result.err and "0.weight" in result.err
    assert not (project / "o").exists()


def test_sharded_streamed_files_are_the_in_memory_files_byte_for_byte(project, capsys):
    sizes = ("--max-shard-size", "600B")
    _apply(capsys, "--weights", "sharded", "--out", "memory", *sizes)
    _apply(capsys, "--weights", "sharded", "--out", "streamed", "--stream", *sizes)
    names = sorted(p.name for p in (project / "memory").iterdir())
    assert names == sorted(p.name for p in (project / "streamed").iterdir())
    assert len([n for n in names if n.startswith("masks-")]) > 1
    for name in names:
        assert (project / "memory" / name).read_bytes() == (
            project / "streamed" / name
        ).read_bytes()


TIED_RULES = {
    "pruned": "prune lm_head.weight sparse_ratio=0.5 metric=l1\n",
    "quantized": "quantize lm_head.weight quant_dtype=int8 granularity=out_channel\n",
    "other name": "prune embed.weight sparse_ratio=0.5 metric=l1\n",
}


@pytest.mark.parametrize("rules", sorted(TIED_RULES))
def test_a_tied_tensor_streamed_is_written_under_both_names_as_in_memory(
    tmp_path, capsys, monkeypatch, rules
):
    from dsl_compress.models import tied_lm

    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.rules").write_text(TIED_RULES[rules])
    state = {k: v for k, v in tied_lm().state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(tmp_path / "tied.safetensors"))  # as save_pretrained stores a tie
    common = ("apply", "t.rules", "--model", "dsl_compress.models:tied_lm", "--weights")
    memory = run(capsys, *common, "tied.safetensors", "--out", "memory")
    assert memory.code == 0, memory.err
    streamed = run(capsys, *common, "tied.safetensors", "--out", "streamed", "--stream")
    assert streamed.code == 0, streamed.err
    _same_outputs(tmp_path / "memory", tmp_path / "streamed")
    written = read_tensors(tmp_path / "streamed", "model")
    assert torch.equal(written["lm_head.weight"], written["embed.weight"])


def test_a_tied_tensor_compressed_under_both_names_is_t404_streamed(tmp_path, capsys, monkeypatch):
    from dsl_compress.models import tied_lm

    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.rules").write_text(TIED_RULES["pruned"] + TIED_RULES["other name"])
    state = {k: v for k, v in tied_lm().state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(tmp_path / "tied.safetensors"))
    args = ("--weights", "tied.safetensors", "--out", "o", "--stream")
    result = run(capsys, "apply", "t.rules", "--model", "dsl_compress.models:tied_lm", *args)
    assert result.code == 2 and "error[T404]" in result.err
    assert not (tmp_path / "o").exists()


def test_a_dry_run_that_reads_masks_back_keeps_them_in_a_folder_it_removes(
    project, capsys, monkeypatch
):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(project / "tmp"))
    (project / "tmp").mkdir()
    torch.save(torch.randn(3, 4, 16).to(_state_dtype(project)), project / "calib.pt")
    (project / "w8a8.rules").write_text(PRUNED + W8A8)
    common = ("apply", "w8a8.rules", "--model", "model.py:build", "--calib", "calib.pt")
    memory = run(capsys, *common, "--weights", "weights.safetensors", "--dry-run")
    dry = run(capsys, *common, "--weights", "sharded", "--dry-run", "--stream")
    assert dry.code == 0, dry.err
    assert dry.out == memory.out
    assert list((project / "tmp").iterdir()) == []


def test_stream_refuses_a_torch_save_file_which_is_read_whole(project, capsys):
    torch.save(_state("float32"), project / "weights.pt")
    args = ("--weights", "weights.pt", "--out", "o", "--stream")
    result = run(capsys, "apply", "a.rules", "--model", "model.py:build", *args)
    assert result.code == 2 and "error[L102]" in result.err and "save_file" in result.err
    assert not (project / "o").exists()


DISTILL = """
prune 0.weight sparse_ratio=0.5 granularity=out_channel metric=l1
align 1.weight with 0.weight dims=[0]
quantize Linear.weight quant_dtype=int8 granularity=out_channel
quantize 3._input_0 quant_dtype=int8
distill 8._output_0 lambda=0.5
distill 2._output_0 link="5" apply_method=kl
"""


@pytest.mark.parametrize("teacher", [(), ("--teacher", "model.py:build", "--teacher-weights")])
def test_the_distillation_loss_streamed_is_in_memory(project, capsys, teacher):
    torch.save(torch.randn(3, 4, 16).to(_state_dtype(project)), project / "calib.pt")
    (project / "d.rules").write_text(DISTILL)
    common = ("apply", "d.rules", "--model", "model.py:build", "--calib", "calib.pt")
    if teacher:
        state = _state(str(_state_dtype(project))[6:])
        other = {k: v * 1.25 if v.is_floating_point() else v for k, v in state.items()}
        save_file(other, str(project / "teacher.safetensors"))
        common += (*teacher, "teacher.safetensors")
    memory = run(capsys, *common, "--weights", "weights.safetensors", "--out", "memory")
    assert memory.code == 0, memory.err
    streamed = run(capsys, *common, "--weights", "sharded", "--out", "streamed", "--stream")
    assert streamed.code == 0, streamed.err
    assert streamed.out == memory.out
    assert "distillation loss over 3 calibration batch(es)" in memory.out
    _same_outputs(project / "memory", project / "streamed")
    report = json.loads((project / "memory" / "distill.json").read_text())
    assert (project / "streamed" / "distill.json").read_bytes() == (
        project / "memory" / "distill.json"
    ).read_bytes()
    assert report["batches"] == 3 and [t["name"] for t in report["targets"]] == [
        "8._output_0",
        "2._output_0",
    ]
    assert report["targets"][1]["links"] == ["5"] and report["targets"][1]["method"] == "kl"
    assert all(t["loss"] > 0 for t in report["targets"])  # the student is compressed
    weighted = sum(t["lambda"] * t["loss"] for t in report["targets"])
    assert report["total"] == pytest.approx(weighted, rel=1e-2)
    dry = run(capsys, *common, "--weights", "sharded", "--dry-run", "--stream")
    assert dry.code == 0 and dry.out == memory.out


def test_an_uncompressed_student_has_no_distillation_loss(project, capsys):
    torch.save(torch.randn(2, 4, 16).to(_state_dtype(project)), project / "calib.pt")
    (project / "d.rules").write_text("distill 8._output_0\n")
    common = ("apply", "d.rules", "--model", "model.py:build", "--calib", "calib.pt")
    for extra in ((), ("--stream",)):
        result = run(capsys, *common, "--weights", "sharded", "--out", f"o{len(extra)}", *extra)
        assert result.code == 0, result.err
        assert json.loads((project / f"o{len(extra)}" / "distill.json").read_text())["total"] == 0


def test_distill_entries_without_calib_are_recorded_with_a_note(project, capsys):
    (project / "d.rules").write_text("distill 8._output_0 lambda=0.5\n")
    for extra in ((), ("--stream",)):
        out = f"o{len(extra)}"
        args = ("--weights", "sharded", "--out", out, *extra)
        result = run(capsys, "apply", "d.rules", "--model", "model.py:build", *args)
        assert result.code == 0, result.err
        assert "D704" in result.err and "--calib" in result.err
        plan = json.loads((project / out / "plan.json").read_text())
        assert any(entry.get("mode") == "distill" for entry in plan), plan
        assert not (project / out / "distill.json").exists()
