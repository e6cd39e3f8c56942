"""Tensors with no elements (Linear(8, 0), Linear(0, 8)) compress trivially: empty masks, floor scales."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dsl_compress as dc
from dsl_compress.schema.granularity import parse_granularity

pytestmark = pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")

SHAPES = [(8, 0), (0, 8)]
GRANULARITIES = [None, "out_channel", "in_channel", [2, 2]]


class Padded(nn.Module):
    """A zero-size Linear between two ordinary ones, so activations still flow around it."""

    def __init__(self, shape: tuple[int, int]):
        super().__init__()
        self.empty = nn.Linear(*shape)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x[:, :4]), self.empty(x[:, : self.empty.in_features])


def model_and_batch(shape) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return Padded(shape), torch.randn(3, 8)


def config(mode_keys: dict, granularity) -> list[dict]:
    entry = {"op_names": ["empty"], **mode_keys}
    if granularity is not None:
        entry["granularity"] = granularity
    return [entry]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("granularity", GRANULARITIES, ids=str)
@pytest.mark.parametrize("metric", ["level", "l1", "l2", "fpgm", "random", "taylor"])
def test_pruning_gives_an_empty_mask(shape, granularity, metric):
    if metric == "fpgm" and granularity is None:
        pytest.skip("fpgm needs blocks (P507 whatever the size)")
    model, x = model_and_batch(shape)
    keys = {"sparse_ratio": 0.5, "target_names": ["weight"]}

    def loss_fn(m, batch):
        fc_out, empty_out = m(batch)
        return fc_out.sum() + empty_out.sum()

    compression = dc.prune(model, config(keys, granularity), metric, calib=[x], loss_fn=loss_fn)
    mask = compression.masks()["empty"]["weight"]
    assert mask.shape == model.empty.weight.shape and mask.numel() == 0
    model(x)
    compression.finalize()
    assert model.empty.weight.shape == (shape[1], shape[0])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "keys",
    [
        {"sparse_threshold": 0.1},
        {"sparse_ratio": 0.5, "global_group_id": "g"},
        {"sparse_ratio": 0.5, "dependency_group_id": "d", "granularity": "out_channel"},
    ],
    ids=["threshold", "global", "dependency"],
)
def test_mask_stages_take_empty_tensors(shape, keys):
    model, x = model_and_batch(shape)
    compression = dc.prune(model, config({**keys, "target_names": ["weight"]}, None), "l1")
    assert compression.masks()["empty"]["weight"].numel() == 0
    compression.restore()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("granularity", GRANULARITIES, ids=str)
@pytest.mark.parametrize("fused", [False, True])
def test_weight_quantization_gives_well_defined_scales(shape, granularity, fused):
    model, x = model_and_batch(shape)
    # A two-entry kernel does not fit the 1-d bias (P501 whatever the size).
    targets = ["weight", "bias"] if granularity in (None, "out_channel") else ["weight"]
    keys = {"quant_dtype": "int8", "target_names": targets}
    compression = dc.quantize(model, config(keys, granularity), fused=fused)
    for params in compression.quant_params()["empty"].values():
        assert torch.isfinite(params["scale"]).all() and (params["scale"] > 0).all()
    model(x)
    compression.finalize()
    assert model.empty.weight.numel() == 0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("granularity", [None, "per_channel"], ids=str)
def test_activation_quantization_of_empty_tensors(shape, granularity):
    model, x = model_and_batch(shape)
    keys = {"quant_dtype": "int8", "target_names": ["_input_", "_output_"]}
    compression = dc.quantize(model, config(keys, granularity), calib=[x, x])
    for params in compression.quant_params()["empty"].values():
        assert torch.isfinite(params["scale"]).all()
    _, out = model(x)
    assert out.shape == (3, shape[1])


@pytest.mark.parametrize("shape", SHAPES)
def test_align_and_distill_with_empty_tensors(shape):
    model, x = model_and_batch(shape)
    text = (
        "prune empty.weight sparse_ratio=0.5 granularity=out_channel\n"
        "align empty.bias with empty.weight dims=[0]\n"
        "distill empty._output_ lambda=1.0\n"
    )
    teacher, _ = model_and_batch(shape)
    compression = dc.apply(dc.parse(text), model, [x], teacher=teacher)
    teacher(x)
    model(x)
    assert compression.loss().item() == 0.0
    assert compression.masks()["empty"]["bias"].shape == model.empty.bias.shape


@pytest.mark.parametrize("granularity", GRANULARITIES[1:], ids=str)
@pytest.mark.parametrize("shape", [(0, 8), (8, 0), (0, 0), (0, 4, 2)])
def test_block_kernel_shrink_and_expand_on_zero_size_dims(granularity, shape):
    kernel = parse_granularity(granularity)
    tensor = torch.zeros(shape)
    blocks = kernel.shrink(tensor, lambda t, dims: t.sum(dim=dims) if dims else t)
    assert tuple(blocks.shape) == kernel.block_shape(shape)
    assert tuple(kernel.expand(blocks, shape).shape) == shape
