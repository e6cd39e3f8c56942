"""Every example file under rules/ applies cleanly to the bundled model it is written for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import dsl_compress

from dsl_compress import prune, quantize
from conftest import CustomizedModule
from dsl_compress.models import example_model
from dsl_compress.schema.key_sets import nni_key
from dsl_compress.tools.explain import explain

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


def rules(name: str):
    return dsl_compress.load(RULES / name)


def test_resnet_channels_rules_mask_block_convs_and_their_bns():
    model, batch = example_model("resnet")
    masks = dsl_compress.apply(rules("resnet_channels.rules"), model).masks()
    for block in ("layer1.0", "layer1.1", "layer2.0", "layer2.1"):
        rows = masks[f"{block}.conv1"]["weight"].flatten(1).any(1)
        assert rows.float().mean().item() == 0.5
        assert torch.equal(masks[f"{block}.bn1"]["weight"], rows)
        assert torch.equal(masks[f"{block}.bn1"]["bias"], rows)
    assert torch.isfinite(model(batch)).all()


def test_global_backbone_rules_rank_across_layers_and_skip_shortcuts():
    model, _ = example_model("resnet")
    compiled = rules("global_backbone.rules").compile(model)
    entries = {e.module: e for e in compiled.plan.entries}
    assert not any("shortcut" in name for name in entries)
    assert entries["conv1"].setting["sparse_ratio"] == 0.25
    assert "global_group_id" not in {k for k, v in entries["conv1"].setting.items() if v}
    grouped = [e for e in entries.values() if e.setting.get("global_group_id") == "backbone"]
    assert len(grouped) == 8 and all(e.setting["sparse_ratio"] == 0.3 for e in grouped)
    masks = dsl_compress.apply(rules("global_backbone.rules"), model).masks()
    pruned = sum((~masks[e.module]["weight"]).sum().item() for e in grouped)
    total = sum(masks[e.module]["weight"].numel() for e in grouped)
    assert pruned == pytest.approx(0.3 * total, abs=total * 0.05)


def test_transformer_int8_rules_quantize_the_mlp():
    model, batch = example_model("transformer")
    params = dsl_compress.apply(
        rules("transformer_int8.rules"), model, calib=[batch]
    ).quant_params()
    assert set(params) == {"fc1", "fc2"}
    assert params["fc1"]["weight"]["scale"].shape == (64, 1)
    assert params["fc2"]["_input_0"]["quant_dtype"] == "uint8"


def test_custom_module_rules_register_the_page_templates_and_prune_rows():
    model = torch.nn.Sequential(CustomizedModule())
    ruleset = rules("custom_module.rules")
    compiled = ruleset.compile(model)
    assert compiled.registry["prune"]["CustomizedModule"]["_output_"] == {
        "align": {"module_name": None, "target_name": "p1", "dims": [0]},
        "apply_method": "mul",
        "granularity": [-1, 1],
    }
    assert "CustomizedModule" not in dsl_compress.PruningSetting
    masks = dsl_compress.apply(ruleset, model).masks()["0"]
    for name in ("p1", "p2"):
        rows = masks[name].all(1)
        assert torch.equal(rows, masks[name].any(1)) and rows.sum().item() == 10


EXAMPLE_MODELS = {
    "resnet_channels.rules": lambda: example_model("resnet")[0],
    "global_backbone.rules": lambda: example_model("resnet")[0],
    "transformer_int8.rules": lambda: example_model("transformer")[0],
    "custom_module.rules": lambda: torch.nn.Sequential(CustomizedModule()),
}


def test_every_example_rules_file_has_a_model_here():
    assert sorted(EXAMPLE_MODELS) == sorted(p.name for p in RULES.glob("*.rules"))


@pytest.mark.parametrize("name", sorted(EXAMPLE_MODELS))
def test_explain_agrees_with_the_compiled_plan(name):
    """explain reads the compile verb's plan: every key it says a tensor gets is the plan's."""
    model = EXAMPLE_MODELS[name]()
    plan = rules(name).compile(model).plan
    explained = explain(rules(name), model).tensors
    entries = {(e.mode, e.module, e.target): e for e in plan.entries}
    assert [(x.mode, x.module, x.target) for x in explained] == list(entries)
    for item in explained:
        entry = entries[(item.mode, item.module, item.target)]
        assert item.setting == {k: v for k, v in entry.setting.items() if v is not None}
        assert item.metric == entry.metric
        assert item.decisions
        for decision in item.decisions:
            planned = (
                entry.metric if decision.key == "metric" else entry.setting[nni_key(decision.key)]
            )
            assert decision.winner.value == planned
            assert (
                decision.key == "metric"
                or decision.winner.origin == entry.key_origins[nni_key(decision.key)]
            )
