"""Module types as the user's model has them: a type of the model without a template is
unregistered (R301), not unknown (E201), and Conv1D's [in, out] weight gets channels right."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dsl_compress as dc
from dsl_compress import CompressionError
from dsl_compress.tools.lint import lint

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


class Conv1D(nn.Module):
    """The shape convention of transformers' pytorch_utils.Conv1D: weight [in, out]."""

    def __init__(self, out_features: int, in_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_features, out_features))
        self.bias = nn.Parameter(torch.randn(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class Gate(nn.Module):
    """A type of the model that no template knows."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


def gpt_like(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(Conv1D(6, 4), Gate(), nn.Linear(6, 3)).to(dtype)


def as_linear(conv: Conv1D) -> nn.Linear:
    """The nn.Linear that computes what ``conv`` does: its weight is Conv1D's transposed."""
    out_features, in_features = conv.weight.shape[1], conv.weight.shape[0]
    linear = nn.Linear(in_features, out_features).to(conv.weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.T)
        linear.bias.copy_(conv.bias)
    return linear


def errors(text: str, model: nn.Module | None = None):
    with pytest.raises(CompressionError) as info:
        dc.parse(text).compile(model)
    return info.value.diagnostics


# ----- a type of the model without a template: R301, saying how to register it --------------------


def test_a_type_of_the_model_without_template_is_unregistered_not_unknown():
    (diag,) = errors("quantize Gate.weight quant_dtype=int8", gpt_like())
    assert diag.code == "R301"
    assert (diag.span.line, diag.span.column) == (1, 10)  # the type word
    assert "'Gate' is in the model" in diag.message and "quantize settings template" in diag.message
    assert "register quantize Gate {" in diag.hint


def test_lint_with_the_model_says_what_apply_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "prune Gate.weight sparse_ratio=0.5\n"
    (tmp_path / "t.rules").write_text(text, encoding="utf-8")
    linted = [d.code for d in lint(["t.rules"], gpt_like()).diagnostics]
    with pytest.raises(CompressionError) as info:
        dc.apply(dc.parse(text), gpt_like())
    assert linted == info.value.codes == ["R301"]


def test_registering_the_type_in_the_rules_makes_it_compress():
    text = "register prune Gate { weight }\nprune Gate.weight sparse_ratio=0.5 metric=level\n"
    compression = dc.apply(dc.parse(text), gpt_like())
    assert compression.masks()["1"]["weight"].sum().item() == 3


def test_without_a_model_an_unknown_type_says_types_come_with_the_model():
    (diag,) = errors("quantize Gate.weight quant_dtype=int8")
    assert diag.code == "E201" and "--model" in diag.hint and "register quantize Gate" in diag.hint


def test_with_a_model_a_type_it_lacks_stays_unknown_with_the_models_types_as_guesses():
    (diag,) = errors("quantize Gates.weight quant_dtype=int8", gpt_like())
    assert diag.code == "E201" and "'Gate'" in diag.hint and "--model" not in diag.hint


def test_exclude_of_a_type_of_the_model_needs_no_template():
    text = "exclude Gate\nprune Linear.weight sparse_ratio=0.5\n"
    assert dc.parse(text).compile(gpt_like()).plan.entries
    assert errors(text)[0].code == "E201"


# ----- Conv1D: its out_channel is the weight's dim 1 --------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1d_out_channel_quantization_scales_per_output_feature(dtype):
    model = gpt_like(dtype)
    reference = as_linear(model[0])
    rule = "quantize {type}.weight quant_dtype=int8 granularity=out_channel"
    got = dc.apply(dc.parse(rule.format(type="Conv1D")), model).quant_params()["0"]["weight"]
    want = dc.apply(dc.parse(rule.format(type="Linear")), reference).quant_params()[""]["weight"]
    assert got["scale"].shape == (1, 6)
    assert torch.equal(got["scale"], want["scale"].T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv1d_channel_pruning_removes_output_columns_and_their_bias(dtype):
    model = gpt_like(dtype)
    reference = as_linear(model[0])
    config = [{"op_types": ["Conv1D", "Linear"], "sparse_ratio": 0.5}]
    got = dc.prune(model, config, metric="l1").masks()["0"]
    want = dc.prune(reference, config, metric="l1").masks()[""]
    assert torch.equal(got["weight"], want["weight"].T)
    assert torch.equal(got["bias"], want["bias"])
    kept = got["weight"].all(dim=0)
    assert kept.sum().item() == 3 and torch.equal(got["bias"], kept)


def test_conv1d_in_channel_reads_the_weights_dim_0():
    plan = dc.parse("prune Conv1D.weight sparse_ratio=0.5 granularity=in_channel")
    (entry,) = [e for e in plan.compile(gpt_like()).plan.entries if e.target == "weight"]
    assert entry.kernel.block_shape((4, 6)) == (4, 1)


def test_conv1d_needs_no_model_to_be_known():
    compiled = dc.parse("quantize Conv1D.weight quant_dtype=int8").compile()
    assert compiled.config_list["quantize"][0]["op_types"] == ["Conv1D"]
