"""Models on the meta device, weights of another dtype, and tied weights: each said, never silent.

Meta models resolve (compile, lint, explain) and the engine refuses them clearly (X803) until
their weights are loaded; weights of another floating dtype are cast with a warning and of
another kind are L102; compressing a tied tensor warns T405 naming every name it has.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import dsl_compress as dc
from cli_runner import run
from dsl_compress.io.loading import load_weights
from dsl_compress.models import tied_lm
from dsl_compress.tools.explain import explain
from dsl_compress.tools.lint import lint

RULES = (
    "prune Linear.weight sparse_ratio=0.5 granularity=out_channel\n"
    "align 0.bias with 0.weight dims=[0]\n"
    "quantize Linear.{weight,_input_} quant_dtype=int8\n"
)


def mlp(device: str = "cpu", dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    with torch.device(device):
        return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)).to(dtype)


def verbs(model: nn.Module) -> dict:
    calib = [torch.randn(2, 8)]
    return {
        "apply": lambda: dc.apply(dc.parse(RULES), model, calib),
        "prune": lambda: dc.prune(model, [{"op_types": ["Linear"], "sparse_ratio": 0.5}]),
        "quantize": lambda: dc.quantize(
            model, [{"op_types": ["Linear"], "quant_dtype": "int8"}], calib
        ),
        "distill": lambda: dc.distill(
            model, mlp(), [{"op_types": ["Linear"], "target_names": ["_output_"]}]
        ),
    }


def test_meta_models_resolve_lint_and_explain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = mlp("meta")
    plan = dc.parse(RULES).compile(model).plan
    assert {e.key for e in plan.entries} >= {("0", "weight"), ("2", "_input_0"), ("0", "bias")}
    (tmp_path / "a.rules").write_text(RULES)
    assert [d for d in lint(["a.rules"], model).diagnostics if d.severity.value == "error"] == []
    assert explain(dc.parse(RULES), model)


@pytest.mark.parametrize("verb", ["apply", "prune", "quantize", "distill"])
def test_the_engine_refuses_meta_tensors_by_name(verb):
    model = mlp("meta")
    with pytest.raises(dc.CompressionError) as info:
        verbs(model)[verb]()
    (diag,) = info.value.diagnostics
    assert (
        diag.code == "X803"
        and "meta device ('0.weight', '0.bias', '2.weight', ...)" in diag.message
    )
    assert "no data" in diag.message and "load the weights first" in diag.hint
    assert all(p.is_meta for p in model.parameters())


def test_the_command_refuses_a_meta_model_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def build():\n"
        "    with torch.device('meta'):\n"
        "        return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))\n"
    )
    (tmp_path / "a.rules").write_text("prune Linear.weight sparse_ratio=0.5\n")
    result = run(capsys, "apply", "a.rules", "--model", "m.py:build", "--out", "out")
    assert result.code == 2 and "error[X803]" in result.err and "Traceback" not in result.err
    assert run(capsys, "lint", "a.rules", "--model", "m.py:build").code == 0
    save_file(mlp().state_dict(), str(tmp_path / "w.safetensors"))
    args = ("apply", "a.rules", "--model", "m.py:build", "--weights", "w.safetensors")
    result = run(capsys, *args, "--out", "out")
    assert result.code == 0, result.err


def test_weights_load_into_a_meta_model_in_its_dtype(tmp_path):
    source = mlp(dtype=torch.float64)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    model = mlp("meta")
    with pytest.warns(dc.CompressionWarning, match="L102"):
        load_weights(model, tmp_path / "w.safetensors")
    assert all(not p.is_meta and p.dtype == torch.float32 for p in model.parameters())
    assert torch.equal(model[0].weight, source[0].weight.float())
    assert isinstance(model[0].weight, nn.Parameter)


@pytest.mark.parametrize("file_dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("model_dtype", [torch.float32, torch.bfloat16])
def test_floating_weights_of_another_dtype_are_cast_with_a_warning(
    tmp_path, file_dtype, model_dtype
):
    if file_dtype == model_dtype:
        pytest.skip("same dtype")
    save_file(mlp(dtype=file_dtype).state_dict(), str(tmp_path / "w.safetensors"))
    model = mlp(dtype=model_dtype)
    with pytest.warns(dc.CompressionWarning) as caught:
        found = load_weights(model, tmp_path / "w.safetensors")
    (diag,) = found
    assert diag.code == "L102" and diag.severity.value == "warning"
    assert (
        f"4 tensor(s) are cast to the model's dtype ({file_dtype} -> {model_dtype})" in diag.message
    )
    assert len(caught) == 1
    assert all(p.dtype == model_dtype for p in model.parameters())


@pytest.mark.parametrize("file_dtype", [torch.int8, torch.bool, torch.complex64, torch.int64])
def test_weights_of_another_kind_are_l102_and_change_nothing(tmp_path, file_dtype):
    state = {k: v.to(file_dtype) for k, v in mlp().state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(dc.CompressionError) as info:
        load_weights(model, tmp_path / "w.pt")
    (diag,) = info.value.diagnostics
    assert (
        diag.code == "L102" and f"0.weight (file {file_dtype}, model torch.float32)" in diag.message
    )
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_the_command_says_when_weights_are_cast(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.rules").write_text("prune Linear.weight sparse_ratio=0.5\n")
    state = {k: v.half() for k, v in dc.models.cnn().state_dict().items() if v.is_floating_point()}
    state.update(
        {k: v for k, v in dc.models.cnn().state_dict().items() if not v.is_floating_point()}
    )
    save_file(state, str(tmp_path / "w.safetensors"))
    model = ("--model", "dsl_compress.models:cnn", "--weights", "w.safetensors")
    result = run(capsys, "apply", "a.rules", *model, "--dry-run")
    assert (
        result.code == 0
        and "warning[L102]" in result.err
        and "torch.float16 -> torch.float32" in result.err
    )


TIED_CASES = {
    "rules quantize": lambda m: dc.apply(dc.parse("quantize Linear.weight quant_dtype=int8"), m),
    "rules prune": lambda m: dc.apply(dc.parse("prune lm_head.weight sparse_ratio=0.5"), m),
    "config quantize": lambda m: dc.quantize(
        m, [{"op_types": ["Linear"], "quant_dtype": "int8", "target_names": ["weight"]}]
    ),
    "config prune": lambda m: dc.prune(m, [{"op_names": ["lm_head"], "sparse_ratio": 0.5}]),
}


@pytest.mark.parametrize("case", sorted(TIED_CASES))
def test_compressing_a_tied_tensor_names_both_of_its_names(case):
    model = tied_lm()
    embedding = model.embed.weight.detach().clone()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TIED_CASES[case](model).finalize()
    tied = [str(w.message) for w in caught if "T405" in str(w.message)]
    assert len(tied) == 1
    assert "'lm_head.weight' is the same tensor as 'embed.weight' (tied weights)" in tied[0]
    assert "finalize() writes them into 'embed.weight' too" in tied[0]
    assert model.lm_head.weight is model.embed.weight
    assert not torch.equal(model.embed.weight, embedding)


def test_tied_tensors_are_found_at_compile_time_and_by_lint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rules = "prune Linear.weight sparse_ratio=0.5\nprune embed.weight sparse_ratio=0.5"
    compiled = dc.parse(rules).compile(tied_lm())
    assert sorted(d.code for d in compiled.diagnostics) == ["T405", "T405"]
    (tmp_path / "a.rules").write_text(rules)
    found = [d for d in lint(["a.rules"], tied_lm()).diagnostics if d.code == "T405"]
    assert {d.message.split("'")[1] for d in found} == {"lm_head.weight", "embed.weight"}
    with pytest.raises(dc.CompressionError) as info:
        dc.apply(dc.parse(rules), tied_lm())
    assert "T404" in info.value.codes
