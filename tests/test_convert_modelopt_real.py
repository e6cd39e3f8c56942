"""The ModelOpt converter's selection against ModelOpt 0.47 itself (installed with the test extra,
torch left as it is): the quantizers `mtq.quantize` enables on a tiny Llama, and their bits,
axis and blocks, are exactly what the converted rules quantize."""

from __future__ import annotations

import pytest
import torch

from convert_models import plan_of, quant, tiny_llama
from dsl_compress.tools.convert.modelopt import convert_modelopt
from dsl_compress.vocab import Mode

mtq = pytest.importorskip("modelopt.torch.quantization")

TARGETS = {
    "weight_quantizer": "weight",
    "input_quantizer": "_input_",
    "output_quantizer": "_output_",
}
OFF = {"quantizer_name": "*", "enable": False}

CONFIGS = {
    "int8_list": [
        OFF,
        {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 8, "axis": 0}},
        {"quantizer_name": "*input_quantizer", "cfg": {"num_bits": 8, "axis": None}},
        {"quantizer_name": "*lm_head*", "enable": False},
        {"quantizer_name": "*embed_tokens*", "enable": False},
    ],
    "int4_blocks_dict": {
        "default": {"enable": False},
        "*weight_quantizer": {"num_bits": 4, "block_sizes": {-1: 16, "type": "static"}},
        "*input_quantizer": {"enable": False},
        "*lm_head*": {"enable": False},
        "*embed_tokens*": {"enable": False},
    },
    "wide_pattern_and_toggles": [
        OFF,
        {"quantizer_name": "*q_proj*", "cfg": {"num_bits": 8, "axis": None}},
        {"quantizer_name": "*mlp*weight_quantizer", "cfg": {"num_bits": 4, "axis": 0}},
        {"quantizer_name": "*down_proj.weight_quantizer", "enable": False},
        {"quantizer_name": "*layers.1.mlp.down_proj.weight_quantizer", "enable": True},
    ],
}


def _modelopt_selection(config, monkeypatch) -> dict:
    """What ModelOpt enables, as (module, target, mode) -> our compared settings."""
    monkeypatch.setenv("MODELOPT_SKIP_WEIGHT_QUANT_CHECK", "1")
    model = tiny_llama()
    calibrate = lambda m: m(torch.randint(0, 64, (1, 8)))  # noqa: E731
    model = mtq.quantize(model, {"quant_cfg": config, "algorithm": "max"}, calibrate)
    found = {}
    for name, module in model.named_modules():
        for quantizer, target in TARGETS.items():
            state = getattr(module, quantizer, None)
            if state is None or not state.is_enabled:
                continue
            blocks = state.block_sizes
            granularity = (
                [1, blocks[-1]] if blocks else {None: "default", 0: "out_channel"}[state.axis]
            )
            found[(name, target, Mode.QUANTIZE)] = quant(
                f"int{state.num_bits}", "symmetric", granularity
            )
    return found


# The dict form is ModelOpt's legacy one on purpose: it still reads it, and so must we.
@pytest.mark.filterwarnings("ignore:Passing quant_cfg in the legacy dict format")
@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_the_converted_rules_quantize_what_modelopt_enables(case, monkeypatch):
    config = CONFIGS[case]
    expected = _modelopt_selection(config, monkeypatch)
    model = tiny_llama()
    text = repr(config)  # the Python-literal form a ModelOpt user writes
    conversion = convert_modelopt(text, "cfg.py", None, model)
    assert expected and plan_of(conversion, model) == expected
