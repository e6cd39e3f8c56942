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
    from compressed_tensors.quantization import apply_quantization_config
    from llmcompressor.recipe import Recipe
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    for modifier in Recipe.create_instance(recipe_path).modifiers:
        if hasattr(modifier, "resolve_quantization_config"):
            apply_quantization_config(model, modifier.resolve_quantization_config())
    found = {}
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
