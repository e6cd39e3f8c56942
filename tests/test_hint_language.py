"""Hints speak the language of the input they point at: .rules words at a statement, config_list
words at a config; W302 counts the tensors it is about; W301 explains types inside braces."""

from __future__ import annotations

import warnings

import pytest
from torch import nn

import dsl_compress as dc
from dsl_compress import CompressionError, Severity
from dsl_compress.models import example_model

BN_ALIGNED_TO_AN_UNPRUNED_CONV = (
    "prune layer1.0.conv1.weight granularity=out_channel\n"
    "align layer1.0.bn1.weight with layer1.0.conv1.weight dims=[0]\n"
)
SAME_ALIGN_AS_CONFIG_LIST = [
    {
        "op_names": ["layer1.0.bn1"],
        "target_names": ["weight"],
        "target_settings": {
            "weight": {
                "align": {"module_name": "layer1.0.conv1", "target_name": "weight", "dims": [0]}
            }
        },
    }
]


def resnet() -> nn.Module:
    return example_model("resnet")[0]


def only_error(call) -> dc.Diagnostic:
    with pytest.raises(CompressionError) as caught:
        call()
    (diag,) = caught.value.diagnostics
    return diag


def test_p503_at_a_statement_speaks_rules():
    rules = dc.parse(BN_ALIGNED_TO_AN_UNPRUNED_CONV, "t.rules")
    diag = only_error(lambda: dc.apply(rules, resnet()))
    assert diag.code == "P503" and str(diag.span) == "t.rules:2:1"
    assert "target_names" not in diag.hint
    assert "remove the align statement for layer1.0.bn1.weight" in diag.hint
    assert "prune layer1.0.conv1.weight sparse_ratio=" in diag.hint


def test_p503_at_a_config_speaks_config_list():
    diag = only_error(lambda: dc.prune(resnet(), SAME_ALIGN_AS_CONFIG_LIST))
    assert diag.code == "P503" and diag.span is None
    assert "drop weight from target_names" in diag.hint
    assert "statement" not in diag.hint


def test_p508_at_a_statement_shows_the_align_statement_to_write():
    rules = dc.parse("prune fc._output_ sparse_ratio=0.5\n", "t.rules")
    diag = only_error(lambda: dc.apply(rules, resnet()))
    assert diag.code == "P508"
    assert diag.hint == (
        "align it to a parameter's mask instead: align fc._output_0 with fc.weight dims=[0]"
    )


def test_q603_at_a_statement_names_the_statement_not_the_config():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = dc.parse("quantize fc.weight quant_dtype=int8 apply_method=bypass\n").compile(
            resnet()
        )
    (diag,) = [d for d in compiled.diagnostics if d.code == "Q603"]
    assert diag.hint == "remove apply_method from the quantize statement"


class Twenty(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(*(nn.Linear(2, 2) for _ in range(20)))


@pytest.mark.parametrize("selector", ["layers.*.weight", "Linear.weight"])
def test_w302_counts_every_tensor_and_names_the_first_few(selector: str):
    text = f"prune {selector} sparse_ratio=0.5\nprune {selector} sparse_ratio=0.3\n"
    compiled = dc.parse(text, "t.rules").compile(Twenty())
    (diag,) = [d for d in compiled.diagnostics if d.code == "W302"]
    assert diag.message.startswith(
        "20 tensors ('layers.0.weight', 'layers.1.weight', 'layers.2.weight' and 17 more) get "
        "sparse_ratio=0.3 here and sparse_ratio=0.5 at t.rules:1:"
    )


def test_w302_on_one_tensor_still_names_it_alone():
    text = "prune layers.0.weight sparse_ratio=0.5\nprune layers.0.weight sparse_ratio=0.3\n"
    compiled = dc.parse(text, "t.rules").compile(Twenty())
    (diag,) = [d for d in compiled.diagnostics if d.code == "W302"]
    assert diag.message.startswith("'layers.0.weight' gets sparse_ratio=0.3 here")


def test_w301_for_types_inside_braces_says_they_are_names_and_how_to_select_types():
    compiled = dc.parse("prune {Conv2d,Linear}.weight sparse_ratio=0.5\n").compile(resnet())
    (diag,) = [d for d in compiled.diagnostics if d.code == "W301"]
    assert diag.severity is Severity.WARNING
    assert diag.hint == (
        "inside braces 'Conv2d' and 'Linear' are module names, not types (a type is a lone "
        "CamelCase word); the model has 10 Conv2d, 1 Linear module(s): write one statement per "
        "type, 'Conv2d.weight' and 'Linear.weight'"
    )


def test_w301_braced_types_under_a_name_suggest_an_in_scope():
    text = "prune layer1.*.{Conv2d,Missing}.weight sparse_ratio=0.5\n"
    compiled = dc.parse(text).compile(resnet())
    (diag,) = [d for d in compiled.diagnostics if d.code == "W301"]
    assert diag.hint.endswith("write one statement per type, 'Conv2d.weight in layer1.*.*'")
    scoped = dc.parse("prune Conv2d.weight in layer1.*.* sparse_ratio=0.5\n").compile(resnet())
    assert len(scoped.plan.entries) == 4  # the suggestion selects layer1's convs
