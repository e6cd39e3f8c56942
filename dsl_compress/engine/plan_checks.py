"""A plan's errors found from settings and shapes alone, across every stage: apply raises them
all before computing anything, and lint reports the same, from the same functions. Torch-free:
a manifest's stand-in model answers every question these checks ask."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from dsl_compress.diagnostics import Diagnostic, error
from dsl_compress.engine.mask_checks import Problem, mask_problems
from dsl_compress.engine.mask_request import MaskRequest, checked_request
from dsl_compress.engine.quant_checks import quant_problems
from dsl_compress.plan import Plan, PlanEntry
from dsl_compress.stand_in import StandInModule
from dsl_compress.vocab import Mode, TargetKind

if TYPE_CHECKING:
    import torch


def plan_problems(
    model: torch.nn.Module | StandInModule, plan: Plan
) -> list[tuple[PlanEntry, Problem]]:
    """Every error of the mask and quantization stages that parameter shapes decide, each with
    the plan entry it is about; input/output shapes are learnt later, by a forward pass."""
    pruning, quantizing = plan.of_mode(Mode.PRUNE), plan.of_mode(Mode.QUANTIZE)
    modules = dict(model.named_modules())
    found = mask_problems(check_requests(modules, pruning), shapes_observed=False)
    return [
        *_with_entries(pruning, found),
        *_with_entries(quantizing, quant_problems(modules, quantizing)),
    ]


def check_requests(
    modules: Mapping[str, torch.nn.Module | StandInModule], entries: Sequence[PlanEntry]
) -> list[MaskRequest]:
    """The mask stage's requests as its checks read them: a parameter's shape, as the stage
    reads it off the module, and no shape for an input or output (no forward pass has run)."""
    return [checked_request(entry, _shape(modules, entry)) for entry in entries]


def _shape(modules: Mapping, entry: PlanEntry) -> tuple[int, ...] | None:
    if entry.kind is not TargetKind.PARAMETER:
        return None
    return tuple(getattr(modules[entry.module], entry.target).shape)


def _with_entries(
    entries: Sequence[PlanEntry], problems: Iterable[Problem]
) -> list[tuple[PlanEntry, Problem]]:
    by_key = {e.key: e for e in entries}
    return [(by_key[p.key], p) for p in problems]


def plan_errors(model: torch.nn.Module | StandInModule, plan: Plan) -> list[Diagnostic]:
    return [problem.diagnostic for _, problem in plan_problems(model, plan)]


def meta_tensor_errors(model: torch.nn.Module, plan: Plan) -> list[Diagnostic]:
    """X803 when a plan with entries meets a model whose tensors are on the meta device: they
    have shapes (resolving, lint and explain work) but no data to compute a mask or scale from."""
    if not plan.entries:
        return []
    meta = [
        name
        for name, tensor in (*model.named_parameters(), *model.named_buffers())
        if tensor.is_meta
    ]
    if not meta:
        return []
    shown = ", ".join(f"'{name}'" for name in meta[:3]) + (", ..." if len(meta) > 3 else "")
    return [
        error(
            "X803",
            f"{len(meta)} tensor(s) of the model ({type(model).__name__}) are on the meta "
            f"device ({shown}): meta tensors have shapes but no data, so no mask, scale or "
            "distillation loss can be computed from them",
            subject=type(model).__name__,
            hint="load the weights first (model.to_empty(device='cpu') then "
            "load_state_dict, or --weights on the command line); compile, lint and explain "
            "work on meta models as they are",
        )
    ]
