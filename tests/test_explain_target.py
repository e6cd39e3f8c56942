"""explain's --target reads a selector as a statement does: it picks exactly the tensors a
statement with that selector plans, and says why a picked tensor has no settings."""

from __future__ import annotations

import pytest

import dsl_compress
from dsl_compress import CompressionError
from dsl_compress.models import example_model
from dsl_compress.tools.explain import explain

SELECTORS = [
    "layer1.*.conv1.weight",
    "layer2.**",
    "layer2.*.*",
    "Conv2d.weight",
    "**.bn{1,2}",
    "layer{1,2}.0.conv1",
    "BatchNorm2d in layer1.**",
    "{layer,x}1.*.{conv,bn}1.{weight,bias}",
    're"layer[12]\\.0\\.conv.*".weight',
]


def resnet():
    return example_model("resnet")[0]


@pytest.mark.parametrize("selector", SELECTORS)
def test_target_picks_the_tensors_a_statement_with_that_selector_plans(selector: str):
    model = resnet()
    rules = dsl_compress.parse(f"prune {selector} sparse_ratio=0.5", "t.rules")
    planned = [(e.module, e.target) for e in rules.compile(model).plan.entries]
    explained = explain(rules, model, selector)
    assert planned and [(t.module, t.target) for t in explained.tensors] == planned
    assert all(not item.reasons for item in explained.unset)  # nothing excluded here


def test_star_does_not_cross_a_dot():
    rules = dsl_compress.parse("prune Conv2d.weight sparse_ratio=0.5", "t.rules")
    with pytest.raises(CompressionError) as caught:
        explain(rules, resnet(), "layer2.*")
    (diag,) = caught.value.diagnostics
    assert diag.code == "L106" and diag.subject == "--target"
    assert "'layer2.**' for every tensor below" in diag.hint


@pytest.mark.parametrize(
    "target, message",
    [
        ("layr1.0.conv1.weight", "matches no module of the model"),
        ("layer1.0.conv1.wieght", "matches 1 module(s) (layer1.0.conv1), none with wieght"),
    ],
)
def test_a_target_of_no_tensor_is_l106_with_the_closest_tensor_names(target, message):
    rules = dsl_compress.parse("prune Conv2d.weight sparse_ratio=0.5", "t.rules")
    with pytest.raises(CompressionError) as caught:
        explain(rules, resnet(), target)
    (diag,) = caught.value.diagnostics
    assert diag.code == "L106" and diag.message == f"--target '{target}' {message}"
    assert diag.hint.startswith("did you mean 'layer1.0.conv1.weight'")


def test_excluded_and_excepted_tensors_name_the_statement_that_removed_them():
    text = (
        "prune Conv2d.weight sparse_ratio=0.5 except conv1\n"
        "exclude layer1.** from prune\n"
        "quantize fc.weight quant_dtype=int8\n"
    )
    rules = dsl_compress.parse(text, "t.rules")
    unset = {
        (u.module, u.target): u.reasons
        for selector in ("conv1.weight", "layer1.0.conv2.weight", "fc.bias")
        for u in explain(rules, resnet(), selector).unset
    }
    assert unset == {
        ("conv1", "weight"): ("removed by 'except conv1' of the prune statement at t.rules:1:1",),
        ("layer1.0.conv2", "weight"): ("excluded from prune by t.rules:2:1 (exclude layer1.**)",),
        ("fc", "bias"): ("the quantize statement at t.rules:3:1 selects fc, not bias",),
    }
