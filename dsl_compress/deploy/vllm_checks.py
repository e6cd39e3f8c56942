"""What vLLM refuses in a compressed-tensors checkpoint (V101-V104), found from the plan before any
work and reported once per rule that causes it."""

from __future__ import annotations

from typing import Mapping

from dsl_compress.deploy.ct_args import INT_QUANTIZED, PACK_QUANTIZED, ModuleScheme
from dsl_compress.deploy.ct_schemes import QUANTIZABLE_TYPES, ModelShape
from dsl_compress.deploy.findings import Finding, merged
from dsl_compress.diagnostics import Diagnostic, Severity
from dsl_compress.plan import Plan, PlanEntry
from dsl_compress.vocab import Mode, TargetKind

# Sibling modules vLLM loads into one fused layer (its packed_modules_mapping for Llama-like
# models): every member must be quantized alike, or none of them.
FUSED_SETS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
_ASYMMETRIC_BITS = (4, 8)


def vllm_findings(
    plan: Plan,
    model: ModelShape,
    schemes: Mapping[str, ModuleScheme],
    severity: Severity = Severity.ERROR,
) -> list[Diagnostic]:
    """V101-V104 for a plan exported as ``schemes``; one diagnostic per rule and code, naming
    the first module it concerns and how many more."""
    weights = {
        e.module: e
        for e in plan.of_mode(Mode.QUANTIZE)
        if e.kind is TargetKind.PARAMETER and e.target == "weight"
    }
    found: list[tuple[str, PlanEntry, str | None, str, str | None]] = []
    for entry in plan.of_mode(Mode.QUANTIZE):
        found += _module_type(entry, model)
    for module, scheme in schemes.items():
        found += _scheme_problems(weights[module], scheme)
    found += _fused(weights, schemes, model)
    return merged([Finding(*item) for item in found], severity)


def _module_type(entry: PlanEntry, model: ModelShape) -> list:
    module_type = model.module_types.get(entry.module, entry.module_type)
    if module_type in QUANTIZABLE_TYPES or entry.kind is TargetKind.OUTPUT:
        return []
    message = f"vLLM does not load quantization of a {module_type} ('{entry.module}')"
    hint = "select Linear (or Embedding) modules only, e.g. `quantize Linear.weight ...`"
    return [("V104", entry, None, message, hint)]


def _scheme_problems(entry: PlanEntry, scheme: ModuleScheme) -> list:
    args, found = scheme.weights, []
    if scheme.format == PACK_QUANTIZED and args.strategy in ("tensor", "block"):
        message = (
            f"'{entry.module}': vLLM's weight-only int kernels take per-channel or per-group "
            f"scales, and this weight has one per {args.strategy}"
        )
        hint = "set granularity=out_channel, or a group such as granularity=[1, 128]"
        found.append(("V102", entry, "granularity", message, hint))
    if not args.symmetric and scheme.format == INT_QUANTIZED:
        message = (
            f"'{entry.module}': vLLM's int8 weight-and-activation kernels need symmetric weights"
        )
        found.append(("V103", entry, "quant_scheme", message, "use quant_scheme=symmetric"))
    elif not args.symmetric and args.num_bits not in _ASYMMETRIC_BITS:
        message = (
            f"'{entry.module}': vLLM runs asymmetric weights at 4 or 8 bits, not {args.num_bits}"
        )
        hint = "use quant_scheme=symmetric, or quant_dtype=uint4 / uint8"
        found.append(("V103", entry, "quant_scheme", message, hint))
    return found


def _fused(weights: Mapping[str, PlanEntry], schemes, model: ModelShape) -> list:
    found = []
    for parent, members in _fused_groups(model):
        kinds = [schemes.get(name) for name in members]
        if all(kind == kinds[0] for kind in kinds):
            continue
        differing = [n for n, k in zip(members, kinds) if k != kinds[0] and n in weights]
        odd = (differing or [n for n in members if n in weights])[0]
        names = ", ".join(name.rpartition(".")[2] for name in members)
        described = "; ".join(
            f"{name.rpartition('.')[2]}: {_described(kind)}" for name, kind in zip(members, kinds)
        )
        message = f"vLLM fuses {names} of '{parent}' into one layer, quantized alike ({described})"
        hint = f"give {names} the same settings in one statement, or quantize none of them"
        found.append(("V101", weights[odd], None, message, hint))
    return found


def _fused_groups(model: ModelShape) -> list[tuple[str, list[str]]]:
    groups = []
    for name in model.module_types:
        for members in FUSED_SETS:
            present = [f"{name}.{m}" for m in members if f"{name}.{m}" in model.module_types]
            if len(present) >= 2:
                groups.append((name, present))
    return groups


def _described(scheme: ModuleScheme | None) -> str:
    if scheme is None:
        return "not quantized"
    args = scheme.weights
    size = f" {args.group_size}" if args.group_size else ""
    return f"int{args.num_bits} {args.strategy}{size}" + (
        "" if scheme.input_activations is None else " with int inputs"
    )
