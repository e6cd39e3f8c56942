"""Weights from sharded indexes and folders: checked from headers before anything is copied, read
one tensor at a time, tied keys loaded once with the tie kept; the command's --weights forms and
a manifest that reads no tensor data."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import dsl_compress as dc
from cli_runner import exit_of, run
from dsl_compress.io.checkpoint import Checkpoint
from dsl_compress.io.loading import check_weights, load_model, load_weights
from dsl_compress.models import tied_lm
from test_checkpoint import DTYPES, save_sharded

MODEL_PY = (
    "import torch\nfrom torch import nn\n"
    "def build():\n"
    "    torch.manual_seed(1)\n"
    "    return nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 4))\n"
    "def number():\n"
    "    return 3\n"
)


def mlp(dtype=torch.float32, device="cpu", seed=0) -> nn.Module:
    torch.manual_seed(seed)
    with torch.device(device):
        return nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 4)).to(dtype)


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The names read from any checkpoint, in order."""
    seen: list[str] = []
    real = Checkpoint.read

    def counted(self, name):
        seen.append(name)
        return real(self, name)

    monkeypatch.setattr(Checkpoint, "read", counted)
    return seen


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["index", "folder", "file", "file folder"])
def test_weights_load_from_every_form(tmp_path, dtype, form, reads):
    source = mlp(dtype, seed=3)
    state = state_of(source)
    if form in ("index", "folder"):
        path = save_sharded(tmp_path / "ckpt", state, per_shard=3)
        path = path.parent if form == "folder" else path
    else:
        (tmp_path / "ckpt").mkdir()
        save_file(state, str(tmp_path / "ckpt" / "model.safetensors"))
        path = tmp_path / "ckpt" / ("" if form == "file folder" else "model.safetensors")
    model = mlp(dtype)
    assert load_weights(model, path) == []
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert sorted(reads) == sorted(state)  # each tensor read once


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_meta_model_is_assigned_from_shards_in_its_dtype(tmp_path, dtype):
    state = state_of(mlp(dtype, seed=3))
    index = save_sharded(tmp_path, state, per_shard=2)
    model = mlp(dtype, device="meta")
    load_weights(model, index)
    assert not any(t.is_meta for t in model.state_dict().values())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert isinstance(model[0].weight, nn.Parameter) and model[0].weight.dtype == dtype
    assert model(torch.randn(2, 8, dtype=dtype)).shape == (2, 4)


def test_floating_shards_of_another_dtype_are_cast_with_one_warning(tmp_path):
    state = {k: v.half() if v.is_floating_point() else v for k, v in state_of(mlp()).items()}
    index = save_sharded(tmp_path, state)
    model = mlp()
    with pytest.warns(dc.CompressionWarning):
        (diag,) = load_weights(model, index)
    assert "8 tensor(s) are cast to the model's dtype (torch.float16 -> torch.float32)" in (
        diag.message
    )
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.equal(model[0].weight, state["0.weight"].float())


# ----- all or nothing ---------------------------------------------------------------------------


def test_a_mismatch_in_a_late_shard_reads_and_changes_nothing(tmp_path, reads):
    state = state_of(mlp(seed=3))
    state["2.weight"] = torch.zeros(4, 9)
    index = save_sharded(tmp_path, state, per_shard=2)
    model = mlp()
    before = state_of(model)
    with pytest.raises(dc.CompressionError) as info:
        load_weights(model, index)
    (diag,) = info.value.diagnostics
    assert "1 shape mismatch (2.weight (file [4, 9], model [4, 8]))" in diag.message
    assert reads == []
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_tensors_of_another_kind_in_a_shard_are_l102(tmp_path, reads):
    state = state_of(mlp())
    state["0.weight"] = state["0.weight"].to(torch.int8)
    index = save_sharded(tmp_path, state)
    with pytest.raises(dc.CompressionError) as info:
        load_weights(mlp(), index)
    assert "0.weight (file torch.int8, model torch.float32)" in str(info.value)
    assert reads == []


def test_missing_and_unexpected_keys_across_shards(tmp_path):
    state = state_of(mlp())
    state["extra"] = state.pop("1.running_mean")
    index = save_sharded(tmp_path, state)
    with pytest.raises(dc.CompressionError) as info:
        load_weights(mlp(), index)
    text = str(info.value)
    assert "1 missing key (1.running_mean)" in text and "1 unexpected key (extra)" in text


def test_check_weights_reads_no_tensor(tmp_path, monkeypatch):
    index = save_sharded(tmp_path, state_of(mlp()))
    monkeypatch.setattr(Checkpoint, "read", lambda *a: pytest.fail("a tensor was read"))
    assert check_weights(mlp(device="meta"), index) == []
    with pytest.raises(dc.CompressionError, match="shape mismatch"):
        check_weights(nn.Sequential(nn.Linear(8, 9)), index)


# ----- tied weights -------------------------------------------------------------------------------


def tied_state(drop: str) -> dict[str, torch.Tensor]:
    """tied_lm's weights as save_pretrained stores them: one of a tie's names left out."""
    return {k: v.clone() for k, v in tied_lm().state_dict().items() if k != drop}


@pytest.mark.parametrize("drop", ["lm_head.weight", "embed.weight", None])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_tied_key_the_file_lacks_is_not_missing(tmp_path, drop, device, reads):
    state = {k: v + 1 for k, v in tied_state(drop).items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    with torch.device(device):
        model = tied_lm()
    assert load_weights(model, tmp_path / "w.safetensors") == []
    assert model.lm_head.weight is model.embed.weight and not model.embed.weight.is_meta
    present = "embed.weight" if drop != "embed.weight" else "lm_head.weight"
    assert torch.equal(model.embed.weight, state[present])
    assert len(reads) == 3  # the tied tensor once, fc's weight and bias
    assert len({id(p) for p in model.parameters()}) == 3


def test_an_untied_key_the_file_lacks_is_missing(tmp_path):
    save_file(tied_state("fc.bias"), str(tmp_path / "w.safetensors"))
    with pytest.raises(dc.CompressionError, match=r"1 missing key \(fc.bias\)"):
        load_weights(tied_lm(), tmp_path / "w.safetensors")


def test_a_tied_pt_state_dict_loads_too(tmp_path):
    torch.save(tied_state("lm_head.weight"), tmp_path / "w.pt")
    model = tied_lm()
    load_weights(model, tmp_path / "w.pt")
    assert model.lm_head.weight is model.embed.weight


# ----- the command ------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(MODEL_PY)
    (tmp_path / "a.rules").write_text("prune Linear.weight sparse_ratio=0.5\n")
    save_sharded(tmp_path / "ckpt", state_of(mlp(seed=5)), per_shard=3)
    return tmp_path


@pytest.mark.parametrize("weights", ["ckpt", "ckpt/model.safetensors.index.json"])
def test_apply_takes_an_index_or_a_folder(project, capsys, weights):
    args = ("apply", "a.rules", "--model", "m.py:build", "--weights", weights, "--out", "out")
    result = run(capsys, *args)
    assert result.code == 0, result.err
    assert json.loads((project / "out" / "plan.json").read_text())
    written = load_file(str(project / "out" / "model.safetensors"))
    expected = mlp(seed=5).state_dict()
    assert torch.equal(written["1.running_var"], expected["1.running_var"])


def test_manifest_with_weights_reads_no_tensor_and_matches_the_loaded_model(
    project, capsys, monkeypatch
):
    assert run(capsys, "manifest", "--model", "m.py:build", "-o", "plain.json").code == 0
    monkeypatch.setattr(Checkpoint, "read", lambda *a: pytest.fail("a tensor was read"))
    calls = []
    monkeypatch.setattr("dsl_compress.io.loading.load_weights", lambda *a: calls.append(a) or [])
    args = ("manifest", "--model", "m.py:build", "--weights", "ckpt", "-o", "headers.json")
    result = run(capsys, *args)
    assert result.code == 0, result.err
    assert calls == []
    assert (project / "headers.json").read_text() == (project / "plain.json").read_text()


def test_manifest_refuses_weights_that_do_not_fit_without_reading_them(
    project, capsys, monkeypatch
):
    monkeypatch.setattr(Checkpoint, "read", lambda *a: pytest.fail("a tensor was read"))
    save_sharded(project / "bad", {"0.weight": torch.zeros(3, 3)})
    args = ("manifest", "--model", "m.py:build", "--weights", "bad", "-o", "m.json")
    result = run(capsys, *args)
    assert (
        result.code == 2 and "error[L102]" in result.err and "0.weight (file [3, 3]" in (result.err)
    )
    assert not (project / "m.json").exists()


def test_the_weights_help_names_every_form(capsys):
    code, out, _ = exit_of(capsys, "apply", "--help")
    assert code == 0 and "sharded index" in " ".join(out.split()) and "hf:DIR" in out


def test_load_model_meta_calls_the_spec_on_the_meta_device(project):
    model = load_model("m.py:build", meta=True)
    assert all(t.is_meta for t in model.state_dict().values())
    with pytest.raises(dc.CompressionError, match="not a torch.nn.Module"):
        load_model("m.py:number", meta=True)
