"""`convert --from llmcompressor`: an llm-compressor recipe (YAML) as .rules that select, tensor
by tensor, what llm-compressor and compressed-tensors select; what has no .rules meaning
(algorithms, float formats, dynamic activations) is reported, never dropped silently."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dsl_compress.tools.convert.conversion import Conversion
from dsl_compress.tools.convert.ct_match import modules_of
from dsl_compress.tools.convert.lc_quant import QUANT_MODIFIERS, convert_quantization
from dsl_compress.tools.convert.lc_recipe import Modifier, read_recipe
from dsl_compress.tools.convert.lc_sparsity import SPARSITY_MODIFIERS, convert_sparsity
from dsl_compress.tools.convert.part import Part, note
from dsl_compress.tools.convert.selection_check import checked
from dsl_compress.vocab import Mode

# Modifiers that change weights by an algorithm rather than settings: reported, not converted.
_ALGORITHMS = {
    "AWQModifier": "AWQ rescales channels by activation statistics before quantizing",
    "SmoothQuantModifier": "SmoothQuant moves activation outliers into the weights",
    "SpinQuantModifier": "SpinQuant rotates weights and activations",
    "QuIPModifier": "QuIP rotates weights and activations",
    "AutoRoundModifier": "AutoRound tunes the rounding by gradient descent",
    "LogarithmicEqualizationModifier": "logarithmic equalization rescales activations",
    "ConstantPruningModifier": "it keeps the zeros the weights already have (|w| > 1e-8) through "
    "training; a prune statement computes a mask instead, so convert the recipe that made the zeros",
    "MagnitudePruningModifier": "gradual magnitude pruning is a training schedule",
    "OutputDistillationModifier": "distillation during training is a training loop",
}


def convert_llmcompressor(text: str, path: str, mode: Mode | None, model: Any) -> Conversion:
    """The recipe at ``path`` as .rules; with ``model`` (a torch module or a stand-in), every
    tensor checked against llm-compressor's own selection. ``mode`` is unused: a recipe says
    what each modifier does."""
    modifiers, notes = read_recipe(text, path)
    if not modifiers:
        notes += (note("K155", path, "the recipe has no modifiers llm-compressor would read"),)
    modules = modules_of(model) if model is not None else None
    parts = _replaced(
        [_convert_modifier(modifier, modules) for modifier in modifiers], modifiers, modules
    )
    statements = tuple(s for part in parts for s in part.statements)
    notes += tuple(n for part in parts for n in part.notes)
    header = (
        f"converted from the llm-compressor recipe {path}",
        "by dsl-compress convert --from llmcompressor",
    )
    conversion = Conversion(statements, notes, source=path, header=header)
    if model is None:
        return conversion
    wanted: dict = {}
    for part in parts:  # a later modifier replaces a module's whole scheme, not role by role
        replaced = {(m, mode) for m, _, mode in part.wanted if mode is Mode.QUANTIZE}
        wanted = {k: v for k, v in wanted.items() if (k[0], k[2]) not in replaced}
        wanted.update(part.wanted)
    return checked(conversion, wanted, model)


def _replaced(parts: list[Part], modifiers, modules) -> list[Part]:
    """Each quantization modifier's statements kept off the modules a later one sets the whole
    scheme of (compressed-tensors replaces a module's scheme; .rules would merge the keys and
    rank the statements by their selectors). A later modifier with an ignore list leaves some
    of its targets alone, which an except cannot say: without the model, a note; with it,
    the per-tensor check settles it."""
    out = list(parts)
    for j, later in enumerate(parts):
        if not later.replaces:
            continue
        for i in range(j):
            earlier = out[i]
            quantizing = [s for s in earlier.statements if s.mode is Mode.QUANTIZE]
            if not quantizing:
                continue
            if later.ignores:
                if modules is None:
                    message = (
                        f"{modifiers[j].kind} replaces the schemes an earlier modifier set on "
                        "its targets, but ignores some of them: give the model to settle which"
                    )
                    out[j] = replace(
                        later, notes=later.notes + (note("K153", modifiers[j].origin, message),)
                    )
                continue
            statements = tuple(
                replace(s, excepts=s.excepts + later.replaces) if s.mode is Mode.QUANTIZE else s
                for s in earlier.statements
            )
            out[i] = replace(earlier, statements=statements)
    return out


def _convert_modifier(modifier: Modifier, modules: tuple | None) -> Part:
    if modifier.kind in QUANT_MODIFIERS:
        return convert_quantization(modifier, modules)
    if modifier.kind in SPARSITY_MODIFIERS:
        return convert_sparsity(modifier, modules)
    if modifier.kind in _ALGORITHMS:
        reason = _ALGORITHMS[modifier.kind]
        return Part(
            notes=(note("K151", modifier.origin, f"{modifier.kind} not converted: {reason}"),)
        )
    message = f"{modifier.kind} is not a modifier the converter knows: not converted"
    return Part(notes=(note("K160", modifier.origin, message),))
