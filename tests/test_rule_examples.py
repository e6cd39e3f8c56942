"""Every example file under rules/ applies cleanly to the bundled model it is written for."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dsl_compress import prune, quantize
from dsl_compress.models import example_model

RULES = Path(__file__).resolve().parent.parent / "rules"


def load(name: str) -> list:
    return json.loads((RULES / "nni" / name).read_text())


def test_resnet_example_prunes_block_convs_and_aligns_their_bns():
    model, batch = example_model("resnet")
    compression = prune(model, load("resnet_prune_block_conv1.json"))
    masks = compression.masks()
    blocks = ["layer1.0", "layer1.1", "layer2.0", "layer2.1"]
    assert sorted(masks) == sorted([f"{b}.conv1" for b in blocks] + [f"{b}.bn1" for b in blocks])
    for block in blocks:
        rows = masks[f"{block}.conv1"]["weight"].flatten(1).any(1)
        assert rows.float().mean().item() == 0.5
        assert torch.equal(masks[f"{block}.bn1"]["weight"], rows)
        assert torch.equal(masks[f"{block}.bn1"]["bias"], rows)
    assert torch.isfinite(model(batch)).all()


def test_transformer_example_quantizes_the_mlp():
    model, batch = example_model("transformer")
    compression = quantize(model, load("transformer_mlp_int8.json"), calib=[batch])
    params = compression.quant_params()
    assert params["fc1"]["weight"]["scale"].shape == (64, 1)
    assert params["fc2"]["_input_0"]["quant_dtype"] == "uint8"
    assert torch.allclose(model(batch), compression.restore()(batch), atol=0.1)
