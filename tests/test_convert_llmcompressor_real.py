"""The llm-compressor converter against llm-compressor itself. llm-compressor pins its own
compressed-tensors and transformers, so it lives in an environment of its own: this test runs
where DSL_COMPRESS_LLMCOMPRESSOR_PYTHON names that environment's interpreter (made with
`python -m venv V && V/bin/pip install torch==2.13.0 llmcompressor`), and compares, module by
module, the schemes llm-compressor's modifiers apply (tests/llmcompressor_side.py) with what
the converted rules quantize."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from convert_models import codes, plan_of, quant, tiny_llama
from dsl_compress.tools.convert import ct_schemes
from dsl_compress.tools.convert.llmcompressor import convert_llmcompressor
from dsl_compress.tools.convert.selection_check import normalised
from dsl_compress.vocab import Mode

PYTHON = os.environ.get("DSL_COMPRESS_LLMCOMPRESSOR_PYTHON")
pytestmark = pytest.mark.skipif(
    not PYTHON, reason="set DSL_COMPRESS_LLMCOMPRESSOR_PYTHON to an interpreter with llmcompressor"
)
SIDE = Path(__file__).with_name("llmcompressor_side.py")
ROLES = {"weights": "weight", "input_activations": "_input_"}

RECIPES = {
    "w4a16": "quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n"
    "      targets: [Linear]\n      ignore: [lm_head]\n      scheme: W4A16\n",
    "overlapping_regex_groups": "quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n"
    "      ignore: [lm_head]\n      config_groups:\n"
    "        group_0: {targets: ['re:.*q_proj$'], weights: {num_bits: 4, type: int, "
    "symmetric: true, strategy: group, group_size: 32}}\n"
    "        group_1: {targets: ['re:.*proj$'], weights: {num_bits: 8, type: int, "
    "symmetric: true, strategy: channel}}\n",
    "asymmetric_and_ignored_mlp": "quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n"
    "      targets: [Linear]\n      ignore: [lm_head, 're:.*mlp.down_proj']\n"
    "      scheme: W4A16_ASYM\n",
    "sparsegpt_2_4_and_the_lm_head_trap": "sparsity_stage:\n  sparsity_modifiers:\n"
    "    SparseGPTModifier:\n      sparsity: 0.5\n      mask_structure: '2:4'\n"
    "      targets: [Linear]\n      ignore: [lm_head]\n",
    "wanda_in_containers": "sparsity_stage:\n  sparsity_modifiers:\n    WandaPruningModifier:\n"
    "      sparsity: 0.3\n      targets: ['re:model.layers.\\d+$']\n"
    "      ignore: ['re:.*down_proj']\n",
    "two_stages": "a_stage:\n  a_modifiers:\n    QuantizationModifier:\n"
    "      targets: ['re:.*down_proj']\n      scheme: W8A16\n"
    "b_stage:\n  b_modifiers:\n    QuantizationModifier:\n"
    "      targets: [Linear]\n      ignore: [lm_head]\n      scheme: W4A16\n",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    tiny_llama().save_pretrained(path)
    return path


def _theirs(recipe: Path, folder: Path) -> dict:
    done = subprocess.run(
        [PYTHON, str(SIDE), str(recipe), str(folder)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = {}
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    for module, (sparsity, structure) in theirs.pop("pruned").items():
        pattern = None if structure == "0:0" else structure
        setting = {"sparse_ratio": None if pattern else sparsity, "mask_structure": pattern}
        found[(module, "weight", Mode.PRUNE)] = normalised(Mode.PRUNE, setting)
    for module, roles in theirs.items():
        for role, args in roles.items():
            settings = dict(ct_schemes.convert_args(args).settings)
            found[(module, ROLES[role], Mode.QUANTIZE)] = quant(
                settings["quant_dtype"], settings["quant_scheme"], settings["granularity"]
            )
    return found


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_the_converted_rules_quantize_what_llmcompressor_applies(case, folder, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPES[case])
    expected = _theirs(recipe, folder)
    model = tiny_llama()
    conversion = convert_llmcompressor(RECIPES[case], "recipe.yaml", None, model)
    assert expected and plan_of(conversion, model) == expected
    alone = convert_llmcompressor(RECIPES[case], "recipe.yaml", None, None)
    # Without the model, what the recipe leaves to it is a K153 note, not a guess.
    assert plan_of(alone, model) == expected or "K153" in codes(alone)
