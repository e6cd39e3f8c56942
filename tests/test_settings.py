"""Registry templates, register/get canonicalisation (nni-semantics.md §1.5, §2), scoping and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dsl_compress import CompressionError, DistillationSetting, PruningSetting, QuantizationSetting
from dsl_compress.schema.config_list import setting_keys
from dsl_compress.schema.registry import (
    DEFAULT_REGISTRY,
    Registry,
    TRANSPOSED_WEIGHTS,
    builtin_templates,
    canonicalize,
    distill_template,
)
from dsl_compress.vocab import Mode, expand_bare_target

WEIGHT_05 = {
    "sparse_ratio": 0.5,
    "max_sparse_ratio": None,
    "min_sparse_ratio": None,
    "sparse_threshold": None,
    "global_group_id": None,
    "dependency_group_id": None,
    "granularity": "default",
    "internal_metric_block": None,
    "apply_method": "mul",
}
BIAS_DEFAULT = {
    "align": {"module_name": None, "target_name": "weight", "dims": [0]},
    "apply_method": "mul",
}
QUANT_INT8 = {
    "quant_dtype": "int8",
    "quant_scheme": None,
    "granularity": "default",
    "apply_method": "clamp_round",
}


@pytest.mark.parametrize("module", [nn.Linear(2, 2), nn.Linear, "Linear"])
def test_pruning_shorthand_reaches_only_keys_in_the_template(module):
    assert PruningSetting.get(module, {"sparse_ratio": 0.5}) == {
        "weight": WEIGHT_05,
        "bias": BIAS_DEFAULT,
    }


def test_target_settings_override_shorthand():
    got = PruningSetting.get(
        "Linear", {"sparse_ratio": 0.5, "target_settings": {"weight": {"sparse_ratio": 0.3}}}
    )
    assert got["weight"]["sparse_ratio"] == 0.3


def test_target_settings_can_add_keys_to_a_template_target():
    got = PruningSetting.get(
        "Linear",
        {
            "target_settings": {"bias": {"sparse_ratio": 0.6}},
            "target_names": ["weight", "bias"],
            "sparse_ratio": 0.5,
        },
    )
    assert got["weight"]["sparse_ratio"] == 0.5
    assert got["bias"] == {**BIAS_DEFAULT, "sparse_ratio": 0.6}


def test_unknown_target_name_is_an_error_naming_the_template_targets():
    with pytest.raises(CompressionError) as info:
        PruningSetting.get("Linear", {"sparse_ratio": 0.5, "target_names": ["_output_"]})
    assert info.value.codes == ["R302"]
    assert "'_output_0' is not in the prune template of 'Linear'" in str(info.value)
    assert "target_settings" in str(info.value)


def test_target_settings_adds_a_new_target_with_only_its_keys():
    got = PruningSetting.get(
        "Linear", {"sparse_ratio": 0.5, "target_settings": {"_output_": {"apply_method": "mul"}}}
    )
    assert list(got) == ["weight", "bias", "_output_0"]
    assert got["_output_0"] == {"apply_method": "mul"}


def test_quantization_shorthand_reaches_all_four_targets():
    got = QuantizationSetting.get(nn.Linear(2, 2), {"quant_dtype": "int8"})
    assert list(got) == ["weight", "bias", "_input_0", "_output_0"]
    assert all(setting == QUANT_INT8 for setting in got.values())


def test_exact_prefixed_key_wins_and_gets_only_user_keys():
    got = QuantizationSetting.get(
        "Linear",
        {
            "quant_dtype": "int8",
            "target_names": ["_output_"],
            "target_settings": {"_output_0": {"quant_dtype": "uint8"}},
        },
    )
    assert got == {"_output_0": {"quant_dtype": "uint8"}}


def test_activation_types_have_input_and_output_only():
    assert list(QuantizationSetting.get("ReLU", {"quant_dtype": "int8"})) == [
        "_input_0",
        "_output_0",
    ]


def test_input_prefix_moves_to_the_end():
    got = QuantizationSetting.get(
        "Linear", {"quant_dtype": "int8", "target_names": ["_input_", "weight", "_output_"]}
    )
    assert list(got) == ["weight", "_input_0", "_output_0"]


def test_distillation_works_for_any_type_without_mutating_the_table():
    got = DistillationSetting.get("AnythingAtAll", {"lambda": 0.5})
    assert got == {"_output_0": {"lambda": 0.5, "link": None, "apply_method": None}}
    assert "AnythingAtAll" in DistillationSetting
    assert DistillationSetting.names() == []


def test_distillation_rejects_parameter_targets():
    with pytest.raises(CompressionError) as info:
        DistillationSetting.get("Linear", {"target_names": ["weight"]})
    assert info.value.codes == ["R302"]


def test_builtin_tables_match_nni_plus_transposed_layouts():
    # NNI 3.0's table, plus the transposed-weight types (Conv1D) it does not ship.
    assert set(PruningSetting.names()) - set(TRANSPOSED_WEIGHTS) == {
        "Linear",
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "Embedding",
    }
    assert list(PruningSetting.template("Embedding")) == ["weight"]
    assert "BatchNorm3d" not in QuantizationSetting
    assert "Embedding" not in QuantizationSetting
    assert list(QuantizationSetting.template("MaxPool2d")) == ["_input_", "_output_"]


def test_register_replaces_the_entry_whole():
    PruningSetting.register(
        "Linear", {"weight": {"sparse_ratio": None, "granularity": "in_channel"}}
    )
    got = PruningSetting.get("Linear", {"sparse_ratio": 0.5})
    assert got == {"weight": {"sparse_ratio": 0.5, "granularity": "in_channel"}}
    assert PruningSetting.get("Conv2d", {"sparse_ratio": 0.5})["weight"] == WEIGHT_05


def test_register_keeps_its_own_copy():
    template = {"p1": {"sparse_ratio": None}}
    PruningSetting.register("Custom", template)
    template["p1"]["sparse_ratio"] = 0.9
    assert PruningSetting.template("Custom") == {"p1": {"sparse_ratio": None}}


def test_unregister_removes_the_entry_and_forgets_unknown_names():
    PruningSetting.register("Custom", {"p1": {"sparse_ratio": None}})
    PruningSetting.unregister("Custom")
    PruningSetting.unregister("NeverRegistered")
    assert "Custom" not in PruningSetting
    with pytest.raises(CompressionError):
        PruningSetting.template("Custom")


def test_unregistered_type_names_close_types_and_how_to_register():
    with pytest.raises(CompressionError) as info:
        PruningSetting.get("Conv2D", {"sparse_ratio": 0.5})
    text = str(info.value)
    assert info.value.codes == ["R301"]
    assert "'Conv2D' has no prune settings template" in text
    assert "did you mean 'Conv2d'" in text
    assert "PruningSetting.register('Conv2D'" in text


def test_subclasses_are_not_their_parent_type():
    class MyLinear(nn.Linear):
        pass

    with pytest.raises(CompressionError) as info:
        PruningSetting.get(MyLinear(2, 2), {"sparse_ratio": 0.5})
    assert "'MyLinear'" in str(info.value)


@pytest.mark.parametrize("bad", [{}, {"weight": 1}, [("weight", {})]])
def test_malformed_templates_are_rejected(bad):
    with pytest.raises(CompressionError) as info:
        PruningSetting.register("Custom", bad)
    assert info.value.codes == ["R303"]


def test_scoped_registry_does_not_touch_the_default():
    scoped = DEFAULT_REGISTRY.scoped()
    scoped.prune.register("Custom", {"p1": {"sparse_ratio": None}})
    assert "Custom" in scoped.prune
    assert "Custom" not in PruningSetting
    assert canonicalize("Custom", {"sparse_ratio": 0.2}, "prune", scoped) == {
        "p1": {"sparse_ratio": 0.2}
    }
    with pytest.raises(CompressionError):
        canonicalize("Custom", {"sparse_ratio": 0.2}, "prune")


def test_fresh_registry_has_builtins_only():
    PruningSetting.register("Custom", {"p1": {"sparse_ratio": None}})
    assert "Custom" not in Registry().prune


def test_registry_isolation_between_tests_part_one():
    PruningSetting.register("LeakCheck", {"p": {"sparse_ratio": None}})
    assert "LeakCheck" in PruningSetting


def test_registry_isolation_between_tests_part_two():
    assert "LeakCheck" not in PruningSetting


def test_parametrized_modules_report_their_original_class():
    from torch.nn.utils import parametrize

    layer = nn.Linear(2, 2)
    parametrize.register_parametrization(layer, "weight", nn.Identity())
    assert list(PruningSetting.get(layer, {"sparse_ratio": 0.5})) == ["weight", "bias"]
    assert isinstance(layer.weight, torch.Tensor)


@pytest.mark.parametrize("mode", list(Mode))
def test_builtin_templates_hold_only_keys_of_the_key_table(mode):
    templates = builtin_templates(mode) or {"any type": distill_template()}
    for template in templates.values():
        for setting in template.values():
            assert set(setting) <= setting_keys(mode)


def test_bare_prefixes_name_the_first_input_and_output():
    assert [expand_bare_target(n) for n in ("_input_", "_output_", "_input_1", "weight")] == [
        "_input_0",
        "_output_0",
        "_input_1",
        "weight",
    ]
    got = QuantizationSetting.get(
        "Linear", {"quant_dtype": None, "target_names": ["_input_", "weight"]}
    )
    assert list(got) == ["weight", "_input_0"]
