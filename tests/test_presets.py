"""Presets in the language: `scheme=W4A16` expands to its keys in statements and register
blocks, keys beside it override, explain shows the expansion, lint names unknown presets, W8A8
is refused with the static alternative, and compile exports the expanded keys."""

from __future__ import annotations

import pytest

import dsl_compress
from dsl_compress import CompressionError
from dsl_compress.models import transformer
from dsl_compress.schema.presets import PRESETS
from dsl_compress.tools.explain import explain, render_explanations
from dsl_compress.tools.lint import lint_text


def _weight_setting(text: str, module: str = "fc1") -> dict:
    plan = dsl_compress.parse(text, "p.rules").compile(transformer()).plan
    entry = next(e for e in plan.entries if e.key == (module, "weight"))
    return {k: v for k, v in entry.setting.items() if v is not None}


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.inexpressible is None])
def test_each_preset_expands_to_its_table_row(name):
    setting = _weight_setting(f"quantize Linear.weight scheme={name}\n")
    for key, value in PRESETS[name].settings:
        assert setting[key] == value


def test_w4a16_is_int4_symmetric_group_128_weights_only():
    plan = dsl_compress.parse("quantize Linear scheme=W4A16 except fc2\n", "p.rules")
    entries = plan.compile(transformer()).plan.entries
    weights = [e for e in entries if e.target == "weight"]
    assert weights and all(e.setting["quant_dtype"] == "int4" for e in weights)
    assert all(e.setting["granularity"] == [1, 128] for e in weights)
    assert "fc2" not in {e.module for e in entries}


def test_key_beside_scheme_overrides_the_preset():
    setting = _weight_setting("quantize Linear.weight scheme=W8A16 granularity=[1, 32]\n")
    assert setting["granularity"] == [1, 32] and setting["quant_dtype"] == "int8"


def test_scheme_in_register_block():
    text = "register quantize Linear { weight scheme=W4A16_ASYM }\nquantize Linear\n"
    setting = _weight_setting(text)
    assert setting["quant_dtype"] == "uint4" and setting["quant_scheme"] == "affine"


def test_explain_shows_the_expansion():
    ruleset = dsl_compress.parse("quantize fc1.weight scheme=W4A16\n", "p.rules")
    text = render_explanations(explain(ruleset, transformer()))
    assert PRESETS["W4A16"].expansion() in text
    assert "scheme=W4A16 → quant_dtype=int4 quant_scheme=symmetric granularity=[1, 128]" in text


def test_lint_unknown_preset_did_you_mean():
    result = lint_text("quantize Linear.weight scheme=W4A61\n", "p.rules")
    found = [d for d in result if d.code == "E203"]
    assert found and "W4A16" in (found[0].hint or "") and found[0].span.column == 31


def test_w8a8_is_a_located_error_suggesting_static_inputs():
    with pytest.raises(CompressionError) as caught:
        dsl_compress.parse("quantize Linear.weight scheme=W8A8\n", "p.rules").compile()
    diag = next(d for d in caught.value.diagnostics if d.code == "K121")
    assert diag.span is not None and "_input_" in diag.hint and "dynamic" in diag.message


def test_compile_exports_the_expanded_keys():
    compiled = dsl_compress.parse("quantize Linear.weight scheme=W4A16\n", "p.rules").compile()
    config = compiled.config_list["quantize"][0]
    assert config["target_settings"]["weight"]["granularity"] == [1, 128]
    assert config["quant_dtype"] == "int4" and "scheme" not in config["target_settings"]["weight"]


def test_scheme_is_refused_outside_quantize():
    with pytest.raises(CompressionError) as caught:
        dsl_compress.parse("prune Linear.weight scheme=W4A16\n", "p.rules").compile()
    assert any(d.code == "E202" for d in caught.value.diagnostics)


def test_a_preset_means_what_the_converter_gives_a_recipe_of_that_name():
    """`scheme=W8A16` in .rules and `scheme: W8A16` in an llm-compressor recipe (converted)
    are the same settings: one meaning per name, compressed-tensors' of today."""
    from dsl_compress.tools.convert import ct_schemes

    for name, preset in PRESETS.items():
        if preset.inexpressible:
            continue
        converted = ct_schemes.convert_args(ct_schemes.PRESETS[name]["weights"])
        assert dict(converted.settings) == dict(preset.settings), name
