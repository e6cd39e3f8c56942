"""A plan as compressed-tensors schemes, one per quantized module, and every part of the plan the
format cannot hold (F101), each a finding at the rule that asked for it."""

from __future__ import annotations

import re

from dsl_compress.deploy.ct_args import PER_TENSOR, ModuleScheme, QuantArgs, weight_strategy
from dsl_compress.deploy.findings import Finding
from dsl_compress.deploy.model_shape import ModelShape
from dsl_compress.plan import Plan, PlanEntry
from dsl_compress.schema.granularity import BlockKernel, parse_granularity
from dsl_compress.vocab import Mode, TargetKind

# The module types compressed-tensors quantizes (it skips any other type a target matches).
QUANTIZABLE_TYPES = ("Linear", "Embedding")
_BITS = re.compile(r"u?int(\d+)$")


def ct_schemes(plan: Plan, model: ModelShape) -> tuple[dict[str, ModuleScheme], list[Finding]]:
    """Each quantized Linear or Embedding module's scheme (in plan order), and an F101 finding
    for each part of the plan a compressed-tensors checkpoint cannot hold; a quantized module
    of another type is left to :func:`other_module_types`."""
    found: list[Finding] = []
    quantized: list[PlanEntry] = []
    for entry in plan.entries:
        problems = [] if _other_type(entry, model) else _unstorable(entry, model)
        found += problems
        if entry.mode is Mode.QUANTIZE and not problems and not _other_type(entry, model):
            quantized.append(entry)
    weights = {e.module: e for e in quantized if e.kind is TargetKind.PARAMETER}
    inputs = {e.module: e for e in quantized if e.kind is TargetKind.INPUT}
    # An input whose module's weight is quantized, if not storably (its own F101 says why).
    any_weight = {e.module for e in plan.of_mode(Mode.QUANTIZE) if e.target == "weight"}
    schemes = {
        module: ModuleScheme(
            _args(entry, model.shapes[f"{module}.weight"]),
            None if module not in inputs else _args(inputs[module], None),
        )
        for module, entry in weights.items()
    }
    found += [_finding(e, None, *_INPUT_ALONE) for m, e in inputs.items() if m not in any_weight]
    return schemes, found


def other_module_types(plan: Plan, model: ModelShape, code: str) -> list[Finding]:
    """``code`` (F101 for the format, V104 for vLLM) for each quantized module whose type is
    not Linear or Embedding."""
    return [
        Finding(
            code,
            entry,
            None,
            f"a {_type_of(entry, model)} is not quantized in a compressed-tensors checkpoint "
            "(Linear and Embedding modules are)",
            "select Linear modules only, e.g. `quantize Linear.weight ...`",
        )
        for entry in plan.of_mode(Mode.QUANTIZE)
        if _other_type(entry, model)
    ]


def tied_quantized(plan: Plan, model: ModelShape, schemes) -> list[Finding]:
    """F101 for a quantized weight held under two names (an embedding tied to the output
    head): the format packs each module's weight on its own; a tie cannot hold both."""
    found = []
    for entry in plan.of_mode(Mode.QUANTIZE):
        name = f"{entry.module}.{entry.target}"
        if entry.module in schemes and entry.target == "weight" and name in model.ties:
            others = ", ".join(other for other in model.ties[name] if other != name)
            message = (
                f"its weight is tied to {others}; compressed-tensors packs each module's "
                "weight on its own, and one tensor cannot be both"
            )
            hint = "leave the tied embedding or output head out of the quantize statement"
            found.append(_finding(entry, None, message, hint))
    return found


def _finding(entry: PlanEntry, key: str | None, message: str, hint: str | None) -> Finding:
    return Finding("F101", entry, key, message, hint)


def _other_type(entry: PlanEntry, model: ModelShape) -> bool:
    return entry.mode is Mode.QUANTIZE and _type_of(entry, model) not in QUANTIZABLE_TYPES


def _type_of(entry: PlanEntry, model: ModelShape) -> str:
    return model.module_types.get(entry.module, entry.module_type)


_INPUT_ALONE = (
    "a quantized input needs its module's weight quantized too: compressed-tensors stores the "
    "input's scale beside an int weight",
    "quantize the module's weight as well (e.g. `quantize Linear.weight quant_dtype=int8 "
    "granularity=out_channel`), or leave its input out",
)
_DISTILL = (
    "distillation trains against a teacher; a checkpoint holds no distillation target",
    "apply the distillation first and export its result, or leave the distill statements out",
)


def _unstorable(entry: PlanEntry, model: ModelShape) -> list[Finding]:
    """F101 for one plan entry the format cannot hold, if it is one."""
    if entry.mode is Mode.DISTILL:
        return [_finding(entry, None, *_DISTILL)]
    problem = _mask_problem(entry) if entry.mode is Mode.PRUNE else _quant_problem(entry, model)
    return [] if problem is None else [_finding(entry, *problem)]


def _mask_problem(entry: PlanEntry) -> tuple | None:
    """(key, message, hint) of a mask the format cannot hold, if it is one."""
    if entry.kind is not TargetKind.PARAMETER:
        return (
            None,
            f"a mask on {entry.target} acts while the model runs; a compressed-tensors "
            "checkpoint holds weights only (pruned weights are stored as zeros)",
            "prune weights only for this format, or use --format dsl-compress",
        )
    if entry.get("apply_method", "mul") == "add":
        return (
            "apply_method",
            "apply_method='add' leaves -1000 at pruned positions, not zeros a checkpoint can hold",
            "drop apply_method (the default 'mul' stores zeros)",
        )
    return None


def _quant_problem(entry: PlanEntry, model: ModelShape) -> tuple | None:
    """(key, message, hint) of a quantized target the format cannot hold, if it is one."""
    module_type = _type_of(entry, model)
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
    return _key_problem(entry)


def _key_problem(entry: PlanEntry) -> tuple | None:
    if entry.get("fuse_names"):
        return ("fuse_names", "fused modules (fuse_names) have no compressed-tensors field", None)
    # A quantizer's apply_method has no effect (Q603, as in NNI 3.0): clamp-and-round is stored.
    if _BITS.match(str(entry.get("quant_dtype", "int8"))) is None:
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
    """The args of one quantized weight (of ``shape``) or input (None: per tensor). A uint's
    codes are stored shifted to signed ones with the same scale, so only its bits count."""
    bits = int(_BITS.match(str(entry.get("quant_dtype", "int8"))).group(1))  # type: ignore
    symmetric = entry.get("quant_scheme", "symmetric") == "symmetric"
    kernel = _kernel(entry)
    if shape is None or kernel is None:
        return PER_TENSOR.args(bits, symmetric)
    return weight_strategy(kernel.for_rank(2, entry.subject), shape).args(bits, symmetric)
