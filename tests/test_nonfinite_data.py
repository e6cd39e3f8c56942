"""Non-finite data and degenerate scales are diagnostics, never a silent result.

Weights or calibration batches with NaN/inf: warning Q604 naming the tensor and the count, the
scale from the finite values. A scale at its floor over non-zero values: warning Q605. A NaN or
infinite sparse_threshold or lambda: a value error before anything runs.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import dsl_compress as dc
from cli_runner import run
from dsl_compress.tools.code_docs import ENGINE_EXAMPLES, explain_code

NONFINITE = [math.nan, math.inf, -math.inf]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x)


def findings(fn) -> list:
    """The Q60x warnings ``fn`` emits (rendered), and its result."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return [str(w.message) for w in caught if "warning[Q60" in str(w.message)], result


def quantize_input(model, batches, granularity=None):
    config = {"op_names": ["fc"], "quant_dtype": "int8", "target_names": ["_input_"]}
    if granularity:
        config["granularity"] = granularity
    return dc.quantize(model, [config], calib=batches)


def batches_with(value: float, count: int) -> list[torch.Tensor]:
    batch = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    batch.view(-1)[:count] = value
    return [batch, torch.randn(4, 8, generator=torch.Generator().manual_seed(2))]


@pytest.mark.parametrize("value", NONFINITE)
@pytest.mark.parametrize("granularity", [None, "per_channel"])
def test_nonfinite_calibration_values_warn_and_scales_stay_finite(value, granularity):
    model = Net()
    found, compression = findings(
        lambda: quantize_input(model, batches_with(value, 3), granularity)
    )
    assert len(found) == 1 and "warning[Q604] 'fc._input_0' has 3 non-finite" in found[0]
    assert "of 64 in the calibration batches" in found[0]
    scale = compression.quant_params()["fc"]["_input_0"]["scale"]
    assert torch.isfinite(scale).all()
    clean = quantize_input(Net(), [batches_with(0.0, 3)[1]], granularity)
    assert torch.all(scale >= clean.quant_params()["fc"]["_input_0"]["scale"])


@pytest.mark.parametrize("value", NONFINITE)
@pytest.mark.parametrize("granularity", [None, "out_channel"])
def test_a_nonfinite_weight_spoils_only_itself(value, granularity):
    model = Net()
    with torch.no_grad():
        model.fc.weight[1, 2] = value
    config = {"op_names": ["fc"], "quant_dtype": "int8", "target_names": ["weight"]}
    if granularity:
        config["granularity"] = granularity
    found, _ = findings(lambda: dc.quantize(model, [config]))
    assert (
        len(found) == 1 and "'fc.weight' has 1 non-finite value(s) (NaN or inf) of 32" in found[0]
    )
    weight = model.fc.weight.detach()
    others = torch.ones_like(weight, dtype=torch.bool)
    others[1, 2] = False
    assert torch.isfinite(weight[others]).all()
    assert math.isnan(weight[1, 2]) == math.isnan(value)


@pytest.mark.parametrize("scale", [1e-9, 1e-12])
@pytest.mark.parametrize("granularity", [None, "per_channel"])
def test_tiny_activations_warn_that_the_scale_is_at_its_floor(scale, granularity):
    model = Net()
    batch = torch.randn(4, 8, generator=torch.Generator().manual_seed(3)) * scale
    found, compression = findings(lambda: quantize_input(model, [batch], granularity))
    assert (
        len(found) == 1 and "warning[Q605] the scale of 'fc._input_0' sits at its floor" in found[0]
    )
    assert "they all quantize to 0" in found[0]


def test_zero_tensors_lose_nothing_and_draw_no_floor_warning():
    model = Net()
    with torch.no_grad():
        model.fc.bias.zero_()
    config = {"op_names": ["fc"], "quant_dtype": "int8", "target_names": ["weight", "bias"]}
    found, _ = findings(lambda: dc.quantize(model, [config]))
    assert found == []


@pytest.mark.parametrize("value", NONFINITE)
def test_nonfinite_threshold_and_lambda_are_value_errors(value):
    model = Net()
    with pytest.raises(dc.CompressionError) as info:
        dc.prune(model, [{"op_names": ["fc"], "sparse_threshold": value}])
    assert info.value.codes == ["C103"] and "finite" in info.value.diagnostics[0].message
    with pytest.raises(dc.CompressionError) as info:
        dc.distill(model, Net(), [{"op_names": ["fc"], "lambda": value}])
    assert info.value.codes == ["C103"]
    with pytest.raises(dc.CompressionError) as info:
        dc.parse("prune fc.weight sparse_threshold=1e999").compile(model)
    assert info.value.codes == ["E203"]
    assert all(p.grad is None for p in model.parameters())


def build_net() -> nn.Module:
    return Net()


@pytest.mark.parametrize("code", sorted(ENGINE_EXAMPLES))
def test_every_engine_example_is_what_the_command_prints(code, capsys, tmp_path, monkeypatch):
    """The example of `explain Q604/Q605` is the line `apply` prints for such data."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(8, 4)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n"
        "def build():\n"
        "    return Net()\n"
    )
    (tmp_path / "a.rules").write_text("quantize fc._input_ quant_dtype=int8\n")
    batch = torch.full((1, 4, 8), 1e-9)
    if code == "Q604":
        batch = torch.randn(1, 4, 8)
        batch.view(-1)[:3] = math.nan
    torch.save(batch, tmp_path / "data.pt")
    command, line = ENGINE_EXAMPLES[code].split("\n")
    args = command.removeprefix("$ dsl-compress ").split()
    args[args.index("--calib") + 1] = "data.pt"
    result = run(capsys, *args)
    assert result.code == 0, result.err
    assert line in result.err.splitlines()[0]
    assert line in explain_code(code)
