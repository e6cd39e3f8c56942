"""A plan as compressed-tensors schemes, one per quantized module, and every part of the plan the
format cannot hold (F101), located at the rule that asked for it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from dsl_compress.deploy.findings import Finding, merged
from dsl_compress.diagnostics import Diagnostic
from dsl_compress.deploy.ct_args import ModuleScheme, QuantArgs, weight_strategy
from dsl_compress.plan import Plan, PlanEntry
from dsl_compress.schema.granularity import parse_granularity, BlockKernel
from dsl_compress.vocab import Mode, TargetKind

# The module types compressed-tensors quantizes (it skips any other type a target matches).
QUANTIZABLE_TYPES = ("Linear", "Embedding")
_DTYPE = re.compile(r"(u?)int(\d+)$")
# Quantization apply_methods whose forward is the plain clamp-and-round the format stores.
_STORED_METHODS = (None, "clamp_round", "qat_clamp_round")


@dataclass(frozen=True)
class ModelShape:
    """What the export checks need of a model: each module's class name and each tensor's shape."""

    module_types: Mapping[str, str]
    shapes: Mapping[str, tuple[int, ...]]

    @classmethod
    def of(cls, model: Any) -> ModelShape:
        """From a torch module, a meta skeleton or a manifest's stand-in (named_modules and
        each module's own ``_parameters``, which all three have)."""
        types, shapes = {}, {}
        for name, module in model.named_modules():
            types[name] = type(module).__name__
            for target, tensor in module._parameters.items():
                if tensor is not None:
                    shapes[f"{name}.{target}" if name else target] = tuple(tensor.shape)
        return cls(types, shapes)


def ct_schemes(
    plan: Plan, model: ModelShape, module_types: bool = True
) -> tuple[dict[str, ModuleScheme], list[Diagnostic]]:
    """Each quantized module's scheme, and the F101 errors (one per rule and problem)."""
    schemes, found = _schemes(plan, model, module_types)
    return schemes, merged(found)


def _schemes(
    plan: Plan, model: ModelShape, module_types: bool
) -> tuple[dict[str, ModuleScheme], list[Finding]]:
    """Each quantized module's scheme (in plan order), and an F101 error for each part of the
    plan a compressed-tensors checkpoint cannot hold; without ``module_types``, a quantized
    module of another type than Linear or Embedding is left out silently (a deployment
    target reports it under its own code)."""
    found: list[Finding] = []
    for entry in plan.entries:
        problems = _unstorable(entry, model)
        found += [d for d in problems if module_types or not _wrong_type(entry, model)]
    quantized = [e for e in plan.of_mode(Mode.QUANTIZE) if not _refused(e, model)]
    weights = {e.module: e for e in quantized if e.kind is TargetKind.PARAMETER}
    inputs = {e.module: e for e in quantized if e.kind is TargetKind.INPUT}
    schemes: dict[str, ModuleScheme] = {}
    for module, entry in weights.items():
        weight_args = _args(entry, model.shapes[f"{module}.weight"])
        input_entry = inputs.get(module)
        input_args = None if input_entry is None else _args(input_entry, None)
        schemes[module] = ModuleScheme(weight_args, input_args)
    for module, entry in inputs.items():
        if module not in weights:
            found.append(ct_finding(entry, None, *_INPUT_ALONE))
    return schemes, found


_INPUT_ALONE = (
    "a quantized input needs its module's weight quantized too: compressed-tensors stores the "
    "input's scale beside an int weight",
    "quantize the module's weight as well (e.g. `quantize Linear.weight quant_dtype=int8 "
    "granularity=out_channel`), or leave its input out",
)


def _refused(entry: PlanEntry, model: ModelShape) -> bool:
    return bool(_unstorable(entry, model))


def _unstorable(entry: PlanEntry, model: ModelShape) -> list[Finding]:
    """F101 for one plan entry the format cannot hold, if it is one."""
    if entry.mode is Mode.DISTILL:
        return [ct_finding(entry, None, *_DISTILL)]
    if entry.mode is Mode.PRUNE:
        return _unstorable_mask(entry)
    return _unstorable_quant(entry, model)


_DISTILL = (
    "distillation trains against a teacher; a checkpoint holds no distillation target",
    "apply the distillation first and export its result, or leave the distill statements out",
)


def _unstorable_mask(entry: PlanEntry) -> list[Finding]:
    if entry.kind is not TargetKind.PARAMETER:
        why = (
            f"a mask on {entry.target} acts while the model runs; a compressed-tensors "
            "checkpoint holds weights only (pruned weights are stored as zeros)",
            "prune weights only for this format, or use --format dsl-compress",
        )
        return [ct_finding(entry, None, *why)]
    if entry.get("apply_method", "mul") == "add":
        why = (
            "apply_method='add' leaves -1000 at pruned positions, not zeros a checkpoint can hold",
            "drop apply_method (the default 'mul' stores zeros)",
        )
        return [ct_finding(entry, "apply_method", *why)]
    return []


def _wrong_type(entry: PlanEntry, model: ModelShape) -> bool:
    return entry.mode is Mode.QUANTIZE and _type_of(entry, model) not in QUANTIZABLE_TYPES


def _type_of(entry: PlanEntry, model: ModelShape) -> str:
    return model.module_types.get(entry.module, entry.module_type)


def _unstorable_quant(entry: PlanEntry, model: ModelShape) -> list[Finding]:
    module_type = _type_of(entry, model)
    if module_type not in QUANTIZABLE_TYPES:
        why = (
            f"compressed-tensors quantizes Linear and Embedding modules; '{entry.module}' is "
            f"a {module_type}",
            "select Linear or Embedding modules only (e.g. `quantize Linear.weight ...`)",
        )
        return [ct_finding(entry, None, *why)]
    problem = _target_problem(entry, module_type) or _key_problem(entry)
    return [] if problem is None else [ct_finding(entry, *problem)]


def _target_problem(entry: PlanEntry, module_type: str) -> tuple | None:
    if entry.kind is TargetKind.OUTPUT:
        return (
            None,
            f"output quantization ({entry.target}) is not loaded by transformers or vLLM",
            "quantize the next module's input instead, or leave the output out",
        )
    if entry.kind is TargetKind.INPUT and entry.target != "_input_0":
        return (None, f"only a module's first input is quantized, not {entry.target}", None)
    if entry.kind is TargetKind.INPUT and module_type != "Linear":
        return (None, f"an {module_type}'s input is indices, not values to quantize", None)
    if entry.kind is TargetKind.PARAMETER and entry.target != "weight":
        return (
            None,
            f"compressed-tensors quantizes a module's weight, not its {entry.target}",
            f"leave {entry.target} out of the quantize statement",
        )
    return None


def _key_problem(entry: PlanEntry) -> tuple | None:
    if entry.get("fuse_names"):
        return ("fuse_names", "fused modules (fuse_names) have no compressed-tensors field", None)
    if entry.setting.get("apply_method") not in _STORED_METHODS:
        return (
            "apply_method",
            f"apply_method={entry.setting.get('apply_method')!r} is not the clamp-and-round "
            "quantization the format stores",
            "drop apply_method",
        )
    if _DTYPE.match(str(entry.get("quant_dtype", "int8"))) is None:
        return ("quant_dtype", f"quant_dtype {entry.get('quant_dtype')!r} is not an int type", None)
    if entry.kind is TargetKind.INPUT and _kernel(entry) is not None:
        return (
            "granularity",
            "an input is quantized per tensor here (static, one scale)",
            "drop granularity from the input's statement",
        )
    return None


def _kernel(entry: PlanEntry) -> BlockKernel | None:
    kernel = parse_granularity(entry.setting.get("granularity"), entry.subject)
    return kernel if isinstance(kernel, BlockKernel) else None


def _args(entry: PlanEntry, shape: tuple[int, ...] | None) -> QuantArgs:
    """The args of one quantized weight (of ``shape``) or input (None: per tensor)."""
    unsigned, bits = _DTYPE.match(str(entry.get("quant_dtype", "int8"))).groups()  # type: ignore
    del unsigned  # uint codes are stored shifted to signed ones, with the same scale
    symmetric = entry.get("quant_scheme", "symmetric") == "symmetric"
    kernel = _kernel(entry)
    if shape is None or kernel is None:
        strategy = QuantArgs(0, True, "tensor")
    else:
        strategy = weight_strategy(kernel.for_rank(2, entry.subject), shape)  # type: ignore
    return QuantArgs(
        int(bits), symmetric, strategy.strategy, strategy.group_size, strategy.block_structure
    )


def ct_finding(entry: PlanEntry, key: str | None, message: str, hint: str | None = None) -> Finding:
    """F101 for one module, at the key's (or the statement's) place in its rules file."""
    return Finding("F101", entry, key, f"'{entry.module}' {entry.target}: {message}", hint)
