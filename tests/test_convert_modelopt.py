"""ModelOpt quant_cfgs converted to .rules: each quantizer as ModelOpt 0.47 leaves it (list
order, complete cfg replacement, enable toggles, "default" in place), checked per tensor on a
tiny Llama; the traps it is known for are notes with their codes."""

from __future__ import annotations

import fnmatch
import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from convert_models import codes, linear_names, plan_of, quant, tiny_llama
from dsl_compress.diagnostics import CompressionError
from dsl_compress.tools.convert.modelopt import convert_modelopt
from dsl_compress.tools.convert.modelopt_match import module_regex
from dsl_compress.vocab import Mode

pytest.importorskip("transformers")

Q = Mode.QUANTIZE
DISABLE_ALL = {"quantizer_name": "*", "enable": False}


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


def convert(config, model=None):
    text = config if isinstance(config, str) else json.dumps(config)
    return convert_modelopt(text, "quant_cfg.json", None, model)


def decoder(llama):
    return [name for name in linear_names(llama) if name != "lm_head"]


INT8 = [
    DISABLE_ALL,
    {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 8, "axis": 0}},
    {"quantizer_name": "*input_quantizer", "cfg": {"num_bits": 8, "axis": None}},
    {"quantizer_name": "*lm_head*", "enable": False},
]


def test_int8_weights_per_channel_inputs_per_tensor_lm_head_left_alone(llama):
    conversion = convert(INT8, llama)
    expected = {(n, "weight", Q): quant("int8", "symmetric", "out_channel") for n in decoder(llama)}
    expected |= {(n, "_input_", Q): quant("int8", "symmetric", "default") for n in decoder(llama)}
    assert plan_of(conversion, llama) == expected
    assert not {"K158", "K159"} & set(codes(conversion))


def test_converts_without_a_model_to_the_same_plan(llama):
    assert plan_of(convert(INT8), llama) == plan_of(convert(INT8, llama), llama)


INT4_AWQ = """{
    "quant_cfg": {
        "default": {"enable": False},
        "*weight_quantizer": {"num_bits": 4, "block_sizes": {-1: 16, "type": "static"}, "enable": True},
        "*input_quantizer": {"enable": False},
        "*lm_head*": {"enable": False},
    },
    "algorithm": {"method": "awq_lite", "alpha_step": 0.1},
}"""


def test_int4_awq_legacy_dict_groups_weights_and_reports_awq(llama):
    conversion = convert(INT4_AWQ, llama)
    expected = {(n, "weight", Q): quant("int4", "symmetric", [1, 16]) for n in decoder(llama)}
    assert plan_of(conversion, llama) == expected
    assert "K151" in codes(conversion) and "K156" not in codes(conversion)


def test_trailing_default_disable_turns_everything_off_as_in_0_47(llama):
    trailing = INT4_AWQ.replace('"default": {"enable": False},', "").replace(
        '"*lm_head*": {"enable": False},',
        '"*lm_head*": {"enable": False}, "default": {"enable": False},',
    )
    conversion = convert(trailing, llama)
    assert plan_of(conversion, llama) == {}
    assert "K156" in codes(conversion) and "K156" in conversion.rules_text()


def test_wide_pattern_also_quantizes_inputs_and_outputs(llama):
    config = [DISABLE_ALL, {"quantizer_name": "*q_proj*", "cfg": {"num_bits": 8, "axis": None}}]
    conversion = convert(config, llama)
    plan = plan_of(conversion, llama)
    q_proj = [n for n in linear_names(llama) if n.endswith("q_proj")]
    assert set(plan) == {(n, t, Q) for n in q_proj for t in ("weight", "_input_", "_output_")}
    assert any(n.code == "K157" and "output_quantizer" in n.message for n in conversion.notes)
    assert "(K157)" in conversion.rules_text()


def test_cfg_entry_replaces_and_enable_entry_toggles(llama):
    config = [
        DISABLE_ALL,
        {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 4, "block_sizes": {-1: 32}}},
        {"quantizer_name": "*o_proj.weight_quantizer", "cfg": {"num_bits": 8}},
        {"quantizer_name": "*down_proj.weight_quantizer", "enable": False},
        {"quantizer_name": "*layers.1.mlp.down_proj.weight_quantizer", "enable": True},
    ]
    plan = plan_of(convert(config, llama), llama)
    assert plan[("model.layers.0.self_attn.o_proj", "weight", Q)] == quant(
        "int8", "symmetric", "default"
    )
    assert ("model.layers.0.mlp.down_proj", "weight", Q) not in plan
    assert plan[("model.layers.1.mlp.down_proj", "weight", Q)] == quant(
        "int4", "symmetric", [1, 32]
    )
    assert plan[("lm_head", "weight", Q)] == quant("int4", "symmetric", [1, 32])


def test_unmatched_quantizers_keep_modelopts_8_bit_default(llama):
    config = [{"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 4, "axis": 0}}]
    plan = plan_of(convert(config, llama), llama)
    assert plan[("lm_head", "_input_", Q)] == quant("int8", "symmetric", "default")
    assert ("lm_head", "_output_", Q) not in plan


def test_float_formats_and_regex_patterns_are_reported(llama):
    config = [
        DISABLE_ALL,
        {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": [4, 3], "axis": None}},
        {"quantizer_name": "re:.*q_proj.*", "cfg": {"num_bits": 8}},
    ]
    conversion = convert(config, llama)
    assert plan_of(conversion, llama) == {}
    assert any(n.code == "K152" and "float" in n.message for n in conversion.notes)
    assert any(n.code == "K157" and "re:" in n.message for n in conversion.notes)


def test_parent_class_scopes_an_entry(llama):
    config = {
        "default": {"enable": False},
        "nn.Linear": {"*weight_quantizer": {"num_bits": 8, "axis": 0}},
    }
    plan = plan_of(convert(config, llama), llama)
    assert set(plan) == {(n, "weight", Q) for n in linear_names(llama)}


def test_malformed_entries_are_errors():
    with pytest.raises(CompressionError) as failure:
        convert([{"quantizer_name": "*", "bits": 4}])
    assert failure.value.codes == ["K150"]
    with pytest.raises(CompressionError):
        convert("[{'quantizer_name': ")


NAMES = st.text(alphabet="ab._q", min_size=0, max_size=6)
GLOBS = st.text(alphabet="ab._q*?", min_size=0, max_size=6) | st.sampled_from(
    ["*[ab]_q*", "[!a]*", "*q*"]
)


@settings(max_examples=400, deadline=None)
@given(
    name=NAMES, pattern=GLOBS, quantizer=st.sampled_from(["weight_quantizer", "input_quantizer"])
)
def test_module_regex_is_fnmatch_on_the_quantizer_name(name, pattern, quantizer):
    regex = module_regex(pattern, quantizer)
    expected = fnmatch.fnmatchcase(f"{name}.{quantizer}", pattern)
    assert (regex is not None and re.fullmatch(regex, name, re.S) is not None) == expected


def test_embeddings_modelopt_quantizes_are_reported_not_dropped(llama):
    config = [{"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 8, "axis": 0}}]
    conversion = convert(config, llama)
    (embedding,) = [n for n in conversion.notes if n.code == "K160"]
    assert embedding.subject == "model.embed_tokens" and "embedding" in embedding.message
    off = [{"quantizer_name": "*embed_tokens*", "enable": False}]
    assert "K160" not in codes(convert(config + off, llama))
