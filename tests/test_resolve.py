"""Resolution of a config_list into a plan: precedence, reporting, target checks, config_list round trip."""

from __future__ import annotations

import json

import pytest
from torch import nn

from dsl_compress import CompressionError, Mode, build_plan, prune
from dsl_compress.diagnostics import Severity


def test_first_config_wins_per_target_and_the_drop_is_reported(two_linear):
    plan = build_plan(
        two_linear,
        [
            {"op_names": ["fc1"], "sparse_ratio": 0.5, "target_names": ["weight"]},
            {"op_names": ["fc1"], "sparse_ratio": 0.9},
        ],
        Mode.PRUNE,
    )
    weight = plan.find("fc1", "weight", Mode.PRUNE)
    bias = plan.find("fc1", "bias", Mode.PRUNE)
    assert (weight.setting["sparse_ratio"], weight.origin) == (0.5, "config_list[0]")
    assert bias.origin == "config_list[1]"
    [dropped] = plan.warnings
    assert dropped.code == "S203"
    assert "config_list[1] is ignored because config_list[0]" in dropped.message
    assert "module 'fc1' target 'weight'" in dropped.message


def test_precedence_warning_is_emitted_through_warnings(two_linear):
    with pytest.warns(UserWarning, match="S203"):
        prune(
            two_linear,
            [
                {"op_names": ["fc1"], "sparse_ratio": 0.5},
                {"op_types": ["Linear"], "sparse_ratio": 0.25},
            ],
        )


def test_config_selecting_nothing_is_a_warning_in_the_plan(two_linear):
    plan = build_plan(
        two_linear,
        [
            {"op_types": ["Linear"], "sparse_ratio": 0.5},
            {"op_types": ["Conv2d"], "sparse_ratio": 0.5},
        ],
        Mode.PRUNE,
    )
    assert [(d.code, d.subject) for d in plan.warnings] == [("S202", "config_list[1]")]
    assert len(plan.entries) == 4


def test_unknown_op_name_is_an_error_and_nothing_is_touched(two_linear):
    with pytest.raises(CompressionError) as info:
        prune(two_linear, [{"op_names": ["fc3"], "sparse_ratio": 0.5}])
    assert info.value.codes == ["S201"]
    assert "did you mean 'fc1'" in str(info.value) or "did you mean 'fc2'" in str(info.value)
    assert type(two_linear.fc1) is nn.Linear


def test_validation_errors_are_all_reported(two_linear):
    with pytest.raises(CompressionError) as info:
        build_plan(
            two_linear,
            [
                {"op_types": ["Linear"], "sparsity_ratio": 0.5},
                {"op_names": ["fc1"], "sparse_ratio": 1.5},
            ],
            Mode.PRUNE,
        )
    assert sorted(info.value.codes) == ["C102", "C104"]
    assert "did you mean 'sparse_ratio'" in str(info.value)


def test_unregistered_type_is_reported_once_naming_the_module():
    model = nn.Sequential(nn.ReLU(), nn.ReLU())
    with pytest.raises(CompressionError) as info:
        build_plan(model, [{"op_types": ["ReLU"], "sparse_ratio": 0.5}], Mode.PRUNE)
    assert info.value.codes == ["R301"]
    assert "config_list[0] (module '0')" in str(info.value)


def test_missing_parameter_target_is_an_error():
    with pytest.raises(CompressionError) as info:
        build_plan(
            nn.Sequential(nn.Linear(2, 2)),
            [{"op_names": ["0"], "target_names": ["wieght"], "target_settings": {"wieght": {}}}],
            Mode.PRUNE,
        )
    assert info.value.codes == ["T401"]
    assert "did you mean 'weight'" in str(info.value)


def test_absent_bias_is_skipped_with_an_info_note():
    plan = build_plan(
        nn.Sequential(nn.Linear(2, 2, bias=False)),
        [{"op_types": ["Linear"], "sparse_ratio": 0.5}],
        "prune",
    )
    assert [e.target for e in plan.entries] == ["weight"]
    assert [(d.code, d.severity) for d in plan.diagnostics] == [("T403", Severity.INFO)]


def test_unknown_input_argument_name_is_an_error():
    with pytest.raises(CompressionError) as info:
        build_plan(
            nn.Sequential(nn.Linear(2, 2)),
            [{"op_types": ["Linear"], "quant_dtype": "int8", "target_names": ["_input_inptu"]}],
            Mode.QUANTIZE,
        )
    assert info.value.codes == ["T402"]
    assert "did you mean 'input'" in str(info.value)


@pytest.mark.parametrize(
    "metric, mode, expected",
    [("l1", Mode.PRUNE, "out_channel"), ("level", Mode.PRUNE, None), (None, Mode.QUANTIZE, None)],
)
def test_default_granularity_resolves_as_nni(two_linear, metric, mode, expected):
    config = (
        {"op_names": ["fc1"], "sparse_ratio": 0.5}
        if mode is Mode.PRUNE
        else {
            "op_names": ["fc1"],
            "quant_dtype": "int8",
        }
    )
    plan = build_plan(two_linear, [config], mode, metric=metric)
    assert plan.find("fc1", "weight", mode).setting["granularity"] == expected


def test_granularity_for_the_wrong_kind_of_target_is_an_error(two_linear):
    with pytest.raises(CompressionError) as info:
        build_plan(
            two_linear,
            [{"op_names": ["fc1"], "quant_dtype": "int8", "granularity": "out_channel"}],
            Mode.QUANTIZE,
        )
    assert set(info.value.codes) == {"P502"}
    assert "'out_channel' applies to parameters, not to the input target" in str(info.value)


def test_each_key_remembers_where_it_came_from(two_linear):
    plan = build_plan(two_linear, [{"op_names": ["fc1"], "sparse_ratio": 0.5}], Mode.PRUNE)
    origins = plan.find("fc1", "weight", Mode.PRUNE).key_origins
    assert origins["sparse_ratio"] == "config_list[0]"
    assert origins["apply_method"] == "template Linear"


def test_plan_is_plain_json_data(two_linear):
    plan = build_plan(two_linear, [{"op_types": ["Linear"], "sparse_ratio": 0.5}], Mode.PRUNE)
    decoded = json.loads(json.dumps(plan.to_dicts()))
    assert decoded[0]["module"] == "fc1" and decoded[0]["setting"]["sparse_ratio"] == 0.5


def test_distillation_int_lambda_becomes_float(two_linear):
    plan = build_plan(two_linear, [{"op_names": ["fc2"], "lambda": 2}], Mode.DISTILL)
    assert plan.entries[0].setting["lambda"] == 2.0 and isinstance(
        plan.entries[0].setting["lambda"], float
    )


CONFIG_LISTS = {
    Mode.PRUNE: [
        {"op_names": ["fc1"], "sparse_ratio": 0.5, "target_names": ["weight"]},
        {"op_types": ["Linear"], "sparse_ratio": 0.25, "granularity": "in_channel"},
    ],
    Mode.QUANTIZE: [
        {"op_names": ["fc1"], "quant_dtype": "uint8", "quant_scheme": "affine"},
        {"op_types": ["Linear"], "quant_dtype": "int4", "target_names": ["weight"]},
    ],
    Mode.DISTILL: [{"op_types": ["Linear"], "lambda": 0.5, "apply_method": "kl"}],
}


@pytest.mark.parametrize("mode", list(Mode))
def test_config_list_round_trips_through_nni_semantics(two_linear, mode):
    plan = build_plan(two_linear, CONFIG_LISTS[mode], mode)
    again = build_plan(two_linear, plan.to_config_list(mode), mode)
    assert [(e.key, _meaning(e.setting)) for e in again.entries] == [
        (e.key, _meaning(e.setting)) for e in plan.entries
    ]
    assert again.warnings == ()


def _meaning(setting):
    """NNI reads a None setting value as unset, except granularity where None means no blocks."""
    return {k: v for k, v in setting.items() if v is not None or k == "granularity"}


def test_none_granularity_is_written_in_a_form_nni_accepts(two_linear):
    plan = build_plan(two_linear, [{"op_names": ["fc1"], "quant_dtype": "int8"}], Mode.QUANTIZE)
    configs = plan.to_config_list(Mode.QUANTIZE)
    assert all(
        c["target_settings"][c["target_names"][0]]["granularity"] == [[-1], "back", -1]
        for c in configs
    )
    assert all("quant_scheme" not in c["target_settings"][c["target_names"][0]] for c in configs)
    level = build_plan(
        two_linear, [{"op_names": ["fc1"], "sparse_ratio": 0.5}], "prune", metric="level"
    )
    masks = prune(two_linear, level.to_config_list("prune"), metric="level").masks()
    assert masks["fc1"]["weight"].sum().item() == 8
