"""What vLLM refuses in a compressed-tensors checkpoint (V101-V105), found from the plan's schemes
before any work; a quantized module of another type than Linear is V104 too
(:func:`dsl_compress.deploy.ct_schemes.other_module_types`)."""

from __future__ import annotations

from collections import Counter
from typing import Mapping

from dsl_compress.deploy.ct_args import INT_QUANTIZED, PACK_QUANTIZED, ModuleScheme
from dsl_compress.deploy.findings import Finding
from dsl_compress.deploy.model_shape import ModelShape
from dsl_compress.plan import Plan, PlanEntry
from dsl_compress.vocab import Mode, TargetKind

# Sibling modules vLLM loads into one fused layer (its packed_modules_mapping for Llama-like
# models): every member must be quantized alike, or none of them.
FUSED_SETS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
_ASYMMETRIC_BITS = (4, 8)
# vLLM's int8 weight-and-activation kernels: one scale per tensor or output channel.
_INT8_STRATEGIES = ("tensor", "channel")


def vllm_findings(
    plan: Plan, model: ModelShape, schemes: Mapping[str, ModuleScheme]
) -> list[Finding]:
    """V101-V105 for a plan exported as ``schemes`` (by module), each at the rule at fault."""
    weights = {
        e.module: e
        for e in plan.of_mode(Mode.QUANTIZE)
        if e.kind is TargetKind.PARAMETER and e.target == "weight"
    }
    found: list[Finding] = []
    for module, scheme in schemes.items():
        found += _not_linear(weights[module], model)
        found += _weight_only(weights[module], scheme) + _with_inputs(weights[module], scheme)
    return found + _fused(weights, schemes, model)


def _not_linear(entry: PlanEntry, model: ModelShape) -> list[Finding]:
    """V104 for an embedding or the output head: vLLM quantizes its Linear layers only."""
    if model.module_types.get(entry.module) == "Embedding":
        what = "an embedding (vLLM's VocabParallelEmbedding)"
        hint = "leave the embedding out of the quantize statement"
    elif entry.module.rpartition(".")[2] == "lm_head":
        what = "the output head (vLLM's ParallelLMHead)"
        hint = "leave it out, e.g. `quantize Linear.weight ... except lm_head`"
    else:
        return []
    message = f"{what} keeps float weights in vLLM, which has no place for quantized ones"
    return [Finding("V104", entry, None, message, hint)]


def _weight_only(entry: PlanEntry, scheme: ModuleScheme) -> list[Finding]:
    """V102, V103 of int weights beside float activations (pack-quantized)."""
    args, found = scheme.weights, []
    if scheme.format != PACK_QUANTIZED:
        return []
    if args.strategy in ("tensor", "block"):
        message = (
            "vLLM's weight-only int kernels take per-channel or per-group scales, and this "
            f"weight has one per {args.strategy}"
        )
        hint = "set granularity=out_channel, or a group such as granularity=[1, 128]"
        found.append(Finding("V102", entry, "granularity", message, hint))
    if not args.symmetric and args.num_bits not in _ASYMMETRIC_BITS:
        message = f"vLLM runs asymmetric weights at 4 or 8 bits, not {args.num_bits}"
        hint = "use quant_scheme=symmetric, or quant_dtype=uint4 / uint8"
        found.append(Finding("V103", entry, "quant_scheme", message, hint))
    return found


def _with_inputs(entry: PlanEntry, scheme: ModuleScheme) -> list[Finding]:
    """V103, V105 of int weights beside static int inputs (int-quantized)."""
    args, inputs = scheme.weights, scheme.input_activations
    if scheme.format != INT_QUANTIZED or inputs is None:
        return []
    found = []
    if not args.symmetric:
        message = "vLLM's int8 weight-and-activation kernels need symmetric weights"
        found.append(Finding("V103", entry, "quant_scheme", message, "use quant_scheme=symmetric"))
    if args.num_bits != 8 or inputs.num_bits != 8 or args.strategy not in _INT8_STRATEGIES:
        message = (
            "vLLM runs int weights beside int inputs as int8 weights (per tensor or channel) "
            f"and int8 inputs; here int{args.num_bits} {args.strategy} weights, "
            f"int{inputs.num_bits} inputs"
        )
        hint = (
            "quantize weights with quant_dtype=int8 granularity=out_channel and inputs with "
            "quant_dtype=int8, or drop the input quantization for weight-only int"
        )
        found.append(Finding("V105", entry, None, message, hint))
    return found


def _fused(
    weights: Mapping[str, PlanEntry], schemes: Mapping[str, ModuleScheme], model: ModelShape
) -> list[Finding]:
    """V101 for each fused set whose members are not quantized alike, at the rule of a member
    quantized unlike the most of them."""
    found = []
    for parent, members in _fused_sets(model):
        kinds = [schemes.get(name) for name in members]
        refused = [name for name in members if name in weights and name not in schemes]
        if len(set(kinds)) == 1 or refused:  # a member the format refuses has its own F101
            continue
        counts = Counter(kinds)
        odd = min(
            (name for name, kind in zip(members, kinds) if name in weights),
            key=lambda name: counts[schemes.get(name)],
        )
        short = [name.rpartition(".")[2] for name in members]
        described = "; ".join(f"{s}: {_described(k)}" for s, k in zip(short, kinds))
        message = f"vLLM fuses {', '.join(short)} into one layer, quantized alike ({described})"
        hint = f"give {', '.join(short)} the same settings in one statement, or quantize none"
        found.append(Finding("V101", weights[odd], None, message, hint, about=parent))
    return found


def _fused_sets(model: ModelShape) -> list[tuple[str, list[str]]]:
    """Each module's children that vLLM fuses (two or more of one set)."""
    found = []
    for name in model.module_types:
        for members in FUSED_SETS:
            present = [f"{name}.{m}" for m in members if f"{name}.{m}" in model.module_types]
            if len(present) >= 2:
                found.append((name, present))
    return found


def _described(scheme: ModuleScheme | None) -> str:
    if scheme is None:
        return "not quantized"
    args = scheme.weights
    size = f" {args.group_size}" if args.group_size else ""
    inputs = "" if scheme.input_activations is None else " with int inputs"
    return f"int{args.num_bits} {args.strategy}{size}{inputs}"
