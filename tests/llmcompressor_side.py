"""Run by an interpreter that has llm-compressor (its own environment: it pins compressed-tensors
and transformers): the quantization schemes llm-compressor's modifiers give each module of a
saved model, printed as JSON. tests/test_convert_llmcompressor_real.py compares them with the
converted rules.

    python tests/llmcompressor_side.py RECIPE.yaml MODEL_FOLDER
"""

from __future__ import annotations

import json
import sys


def schemes(recipe_path: str, folder: str) -> dict:
    """Each module's quantization scheme, and (under "pruned") each module a SparseGPT or Wanda
    modifier prunes with its sparsity and mask structure, as the modifiers' own code decides
    (their initialisation and calibration start, which names and selects the layers)."""
    from compressed_tensors.quantization import apply_quantization_config
    from llmcompressor.core import State
    from llmcompressor.recipe import Recipe
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    names = {id(module): name for name, module in model.named_modules()}
    pruned = {}
    for modifier in Recipe.create_instance(recipe_path).modifiers:
        if hasattr(modifier, "resolve_quantization_config"):
            apply_quantization_config(model, modifier.resolve_quantization_config())
        elif hasattr(modifier, "_module_sparsities"):
            state = State(model=model)
            modifier.on_initialize(state)
            modifier.on_calibration_start(state, None)
            for module, sparsity in modifier._module_sparsities.items():
                pruned[names[id(module)]] = [sparsity, modifier.mask_structure]
            modifier.remove_hooks()
    found = {"pruned": pruned}
    for name, module in model.named_modules():
        scheme = getattr(module, "quantization_scheme", None)
        if scheme is None:
            continue
        roles = {"weights": scheme.weights, "input_activations": scheme.input_activations}
        found[name] = {
            role: args.model_dump(mode="json", exclude_none=True)
            for role, args in roles.items()
            if args is not None
        }
    return found


if __name__ == "__main__":
    print(json.dumps(schemes(sys.argv[1], sys.argv[2])))
