"""`dsl-compress convert` from NNI 3.0 config_lists: every config as statements, NNI's
first-wins order made explicit, and the round trip (the converted rules compile to the
config_list's plan, every tensor and key) on bundled and tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

import dsl_compress
from conftest import ConvBn, TwoLinear
from rules_texts import PAGE_BN_ALIGNED_CONFIG_LIST
from dsl_compress import CompressionError, Mode
from dsl_compress.cli.main import main
from dsl_compress.models import cnn, resnet, transformer
from dsl_compress.resolve.config_input import read_config_input
from dsl_compress.tools.convert.nni import convert_nni
from dsl_compress.tools.convert.selectors import prefix_regex
from dsl_compress.tools.convert.round_trip import differences, plan_table
from dsl_compress.tools.convert.sources import guess_source

RULES_NNI = Path(__file__).parent.parent / "rules" / "nni"
BUNDLED = {
    "resnet_prune_block_conv1.json": (resnet, Mode.PRUNE),
    "transformer_mlp_int8.json": (transformer, Mode.QUANTIZE),
}


class Branches(nn.Module):
    """fc, fc1, b1.fc, b1.conv: the names start-anchored regexes trip on."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.fc1 = nn.Linear(4, 4)
        self.b1 = nn.Module()
        self.b1.fc = nn.Linear(4, 4)
        self.b1.conv = nn.Conv2d(2, 2, 1)


def _convert(config_list, mode, model):
    return convert_nni(json.dumps(config_list), "c.json", mode, model)


def _codes(conversion) -> list[str]:
    return [note.code for note in conversion.notes]


def _same_plan(conversion, config_list, mode, model) -> None:
    """The converted text compiles, with the model, to the config_list's plan exactly."""
    expected = plan_table(read_config_input(config_list, mode).plan(model))
    compiled = dsl_compress.parse(conversion.rules_text(), "out.rules").compile(model)
    assert differences(expected, plan_table(compiled.plan)) == []
    assert expected  # the check compared something


@pytest.mark.parametrize("name", sorted(p.name for p in RULES_NNI.glob("*.json")))
def test_bundled_config_lists_round_trip(name):
    build, mode = BUNDLED[name]
    config_list = json.loads((RULES_NNI / name).read_text())
    conversion = convert_nni((RULES_NNI / name).read_text(), name, mode, build())
    assert "K104" not in _codes(conversion)
    _same_plan(conversion, config_list, mode, build())


def test_page_bn_example_round_trips_with_align_statements():
    conversion = _convert(PAGE_BN_ALIGNED_CONFIG_LIST, Mode.PRUNE, ConvBn())
    text = conversion.rules_text()
    assert "align bn1.weight with conv1.weight dims=[0]" in text
    _same_plan(conversion, PAGE_BN_ALIGNED_CONFIG_LIST, Mode.PRUNE, ConvBn())


def test_start_anchored_regex_is_translated_and_reported():
    config_list = [{"op_names_re": ["fc"], "quant_dtype": "int8"}]
    conversion = _convert(config_list, Mode.QUANTIZE, Branches())
    assert 're"(?:fc).*"' in conversion.rules_text()
    assert "K102" in _codes(conversion)
    note = next(n for n in conversion.notes if n.code == "K102")
    assert "fc1" in note.message and "b1.fc" not in note.message
    _same_plan(conversion, config_list, Mode.QUANTIZE, Branches())


@pytest.mark.parametrize(
    "pattern, names",
    [
        (".*fc", ["fc", "fc1", "b1.fc"]),
        ("fc$", ["fc"]),
        ("b1", ["b1", "b1.fc", "b1.conv"]),
        ("(?i)B1", ["b1", "b1.fc", "b1.conv"]),  # global flags stay at the start
        ("b1\\.*", ["b1", "b1.fc", "b1.conv"]),  # an escaped dot starred is no '.*'
    ],
)
def test_start_anchored_matches_what_re_match_matches(pattern, names):
    import re

    every = ["", "fc", "fc1", "b1", "b1.fc", "b1.conv"]
    found = [n for n in every if re.fullmatch(prefix_regex(pattern), n)]
    assert found == [n for n in every if re.match(pattern, n)] == names


def test_later_equally_specific_config_is_moved_before_the_earlier():
    config_list = [
        {"op_types": ["Linear"], "sparse_ratio": 0.5},
        {"op_types": ["Linear"], "sparse_ratio": 0.9},
    ]
    conversion = _convert(config_list, Mode.PRUNE, TwoLinear())
    text = conversion.rules_text()
    assert text.index("sparse_ratio=0.9") < text.index("sparse_ratio=0.5")
    assert "K101" in _codes(conversion) and "written before config_list[0]" in text
    _same_plan(conversion, config_list, Mode.PRUNE, TwoLinear())


def test_more_specific_later_config_is_repaired_by_name_with_a_model():
    config_list = [
        {"op_types": ["Linear"], "sparse_ratio": 0.5},
        {"op_names": ["fc1"], "sparse_ratio": 0.9, "granularity": "out_channel"},
    ]
    conversion = _convert(config_list, Mode.PRUNE, TwoLinear())
    assert "K101" in _codes(conversion) and "K104" not in _codes(conversion)
    _same_plan(conversion, config_list, Mode.PRUNE, TwoLinear())


def test_without_a_model_an_unsettled_overlap_is_k106():
    config_list = [
        {"op_types": ["Linear"], "sparse_ratio": 0.5},
        {"op_names": ["fc1"], "sparse_ratio": 0.9},
    ]
    assert "K106" in _codes(_convert(config_list, Mode.PRUNE, None))


def test_disjoint_configs_keep_their_order_without_notes():
    config_list = [
        {"op_names": ["fc1"], "sparse_ratio": 0.5},
        {"op_names": ["fc2"], "sparse_ratio": 0.25},
    ]
    conversion = _convert(config_list, Mode.PRUNE, None)
    text = conversion.rules_text()
    assert _codes(conversion) == []
    assert text.index("fc1") < text.index("fc2")


def test_excludes_shorthand_targets_and_excepts():
    config_list = [
        {
            "op_types": ["Linear"],
            "exclude_op_names": ["fc2"],
            "quant_dtype": "int8",
            "target_names": ["weight", "_input_"],
            "target_settings": {"_input_": {"quant_scheme": "affine", "quant_dtype": "uint8"}},
        },
        {"op_names": ["b1.conv"], "quant_dtype": "int4"},
    ]
    model = Branches()
    conversion = _convert(config_list, Mode.QUANTIZE, model)
    _same_plan(conversion, config_list, Mode.QUANTIZE, model)
    text = _convert(
        [dict(config_list[0], exclude_op_names=["fc1"]), config_list[1]], Mode.QUANTIZE, None
    ).rules_text()
    assert "except fc1" in text and "Linear.weight" in text and "Linear._input_" in text


def test_shared_excludes_become_exclude_statements():
    config_list = [
        {"op_types": ["Linear"], "exclude_op_names": ["fc2"], "sparse_ratio": 0.5},
        {"op_types": ["Conv2d"], "exclude_op_names": ["fc2"], "sparse_ratio": 0.25},
    ]
    text = _convert(config_list, Mode.PRUNE, None).rules_text()
    assert "exclude fc2 from prune" in text and "except" not in text


def test_legacy_exclude_true_is_global():
    config_list = [
        {"op_types": ["Linear"], "sparsity": 0.5},
        {"exclude": True, "op_names": ["fc2"]},
    ]
    conversion = _convert(config_list, Mode.PRUNE, TwoLinear())
    assert "K107" in _codes(conversion)
    assert "exclude fc2 from prune" in conversion.rules_text()
    compiled = dsl_compress.parse(conversion.rules_text(), "o.rules").compile(TwoLinear())
    assert {(e.module, e.target) for e in compiled.plan.entries} == {
        ("fc1", "weight"),
        ("fc1", "bias"),
    }


def test_fuse_names_is_reported_not_dropped():
    config_list = [{"op_names": ["fc1"], "quant_dtype": "int8", "fuse_names": [["fc1", "fc2"]]}]
    with pytest.raises(CompressionError):  # our config_list reading refuses fusion (C111)
        _convert(config_list, Mode.QUANTIZE, None)


def test_per_mode_object_converts_every_mode():
    data = {
        "prune": [{"op_names": ["fc1"], "sparse_ratio": 0.5}],
        "quantize": [{"op_names": ["fc2"], "quant_dtype": "int8"}],
    }
    conversion = convert_nni(json.dumps(data), "c.json", None, TwoLinear())
    text = conversion.rules_text()
    assert "prune fc1 sparse_ratio=0.5" in text and "quantize fc2 quant_dtype=int8" in text
    assert _codes(conversion) == []


def test_round_trip_difference_is_an_error_naming_tensor_and_key():
    expected = {("prune", "fc1", "weight"): {"sparse_ratio": 0.5}}
    found = {("prune", "fc1", "weight"): {"sparse_ratio": 0.9}}
    assert differences(expected, found) == [(("prune", "fc1", "weight"), "sparse_ratio", 0.5, 0.9)]


@pytest.mark.parametrize(
    "text, tool",
    [
        ('[{"op_types": ["Linear"]}]', "nni"),
        ('{"prune": []}', "nni"),
        ("quant_stage:\n  quant_modifiers: {}\n", "llmcompressor"),
        ('{"quant_cfg": {}}', "modelopt"),
        ('[{"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 8}}]', "modelopt"),
    ],
)
def test_guess_source(text, tool):
    assert guess_source(text, "f") == tool


def test_guess_source_that_cannot_tell_is_k105():
    with pytest.raises(CompressionError) as caught:
        guess_source("hello: 1\n", "f.yaml")
    assert caught.value.diagnostics[0].code == "K105"


def test_command_writes_rules_and_exits_by_severity(tmp_path, capsys):
    source = tmp_path / "c.json"
    out = tmp_path / "out.rules"
    source.write_text(json.dumps([{"op_names": ["fc"], "sparse_ratio": 0.5}]))
    argv = ["convert", str(source), "--mode", "prune", "--model", "dsl_compress.models:cnn"]
    assert main(argv + ["-o", str(out)]) == 0
    assert "prune fc sparse_ratio=0.5" in out.read_text()
    compiled = dsl_compress.load(out).compile(cnn())
    assert [e.key for e in compiled.plan.entries if e.target == "weight"] == [("fc", "weight")]
    source.write_text(json.dumps([{"op_names_re": ["conv"], "sparse_ratio": 0.5}]))
    assert main(argv + ["-o", str(out)]) == 1  # K102: also selects conv1, conv2...
    assert "K102" in capsys.readouterr().err
    assert main(["convert", str(source), "-o", str(tmp_path / "x.rules")]) == 2  # no --mode
    assert not (tmp_path / "x.rules").exists()


LEAKING = [
    {"op_types": ["Linear"], "sparse_ratio": 0.5},
    {
        "op_types": ["Linear"],
        "sparse_ratio": 0.3,
        "granularity": "out_channel",
        "max_sparse_ratio": 0.9,
    },
]


def test_a_later_configs_extra_keys_are_kept_off_what_the_first_config_takes():
    """NNI takes a tensor's whole setting from its first config; .rules merges keys, so the
    later config's statement is kept off those modules (with the model), or K106 says it
    cannot be settled (without)."""
    assert "K106" in _codes(_convert(LEAKING, Mode.PRUNE, None))
    model = transformer()
    conversion = _convert(LEAKING, Mode.PRUNE, model)
    assert "K104" not in _codes(conversion)
    _same_plan(conversion, LEAKING, Mode.PRUNE, model)


def test_nni2_configs_keep_their_source_index_after_an_exclude_config():
    config_list = [
        {"op_types": ["Linear"], "sparsity": 0.5},
        {"exclude": True, "op_names": ["fc2"]},
        {"op_names": ["fc1"], "sparsity_per_layer": 0.8},
    ]
    conversion = _convert(config_list, Mode.PRUNE, None)
    text = conversion.rules_text()
    assert "# from config_list[2]" in text and "# from config_list[1]" not in text
    k106 = [n for n in conversion.notes if n.code == "K106"]
    assert k106 and all("config_list[2]" in n.message for n in k106)
    with_model = _convert(config_list, Mode.PRUNE, TwoLinear())
    assert "K104" not in _codes(with_model)  # the round trip against NNI 3.0's translation
