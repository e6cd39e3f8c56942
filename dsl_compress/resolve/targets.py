"""Checks that plan targets exist on the model as tensors the engine can safely transform."""

from __future__ import annotations

from typing import Iterable

import torch
from torch.nn.utils import parametrize

from dsl_compress.diagnostics import Diagnostic, Severity, did_you_mean, error
from dsl_compress.plan import PlanEntry, Key
from dsl_compress.forward_signature import forward_parameters


def check_parameter(module: torch.nn.Module, entry: PlanEntry, diags: list[Diagnostic]) -> bool:
    """True when ``entry.target`` is a Parameter of the module; otherwise say why, and skip it."""
    name = entry.target
    if "parametrizations" in module._modules and parametrize.is_parametrized(module, name):
        diags.append(
            error(
                "X801",
                f"'{entry.module}.{name}' already carries a compression",
                subject=entry.subject,
                hint="call finalize() or restore() on that compression first",
            )
        )
        return False
    if name in module._parameters and module._parameters[name] is None:
        diags.append(
            Diagnostic(
                "T403",
                Severity.INFO,
                f"'{entry.module}.{name}' is None; the target is skipped",
                subject=entry.subject,
            )
        )
        return False
    if name in module._parameters:
        return True
    diags.append(_not_a_parameter(module, entry))
    return False


def _not_a_parameter(module: torch.nn.Module, entry: PlanEntry) -> Diagnostic:
    params = [n for n, p in module.named_parameters(recurse=False)]
    where = f"'{entry.module}' ({entry.module_type})"
    if entry.target in module._buffers:
        message = f"{where}: '{entry.target}' is a buffer; only parameters can be compressed"
        hint = "buffers such as BatchNorm running statistics are updated in place by forward()"
    elif isinstance(getattr(module, entry.target, None), torch.Tensor):
        message = f"{where}: '{entry.target}' is computed, not a parameter"
        hint = f"compress the parameters it is computed from: {', '.join(params) or 'none'}"
    else:
        message = f"{where} has no parameter '{entry.target}'"
        hint = (
            did_you_mean(entry.target, params) or f"its parameters: {', '.join(params) or 'none'}"
        )
    return error("T401", message, subject=entry.subject, hint=hint)


def takes_input(module: torch.nn.Module, target: str) -> bool:
    """Whether forward() has the argument an _input_ target names, by position or by name
    (any forward taking *args or **kwargs, or one without a signature, takes them all)."""
    suffix = target[len("_input_") :]
    params = forward_parameters(module)
    if not params or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return suffix in {p.name for p in params} or (
        suffix.isdigit() and int(suffix) < len(positional)
    )


def check_input(module: torch.nn.Module, entry: PlanEntry, diags: list[Diagnostic]) -> None:
    """An _input_ target must name a forward() argument by position or by name."""
    if takes_input(module, entry.target):
        return
    suffix = entry.target[len("_input_") :]
    params = forward_parameters(module)
    named = [p.name for p in params]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    diags.append(
        error(
            "T402",
            f"'{entry.module}.forward' has no argument '{suffix}' "
            f"(it takes {len(positional)} positional argument(s))",
            subject=entry.subject,
            hint=did_you_mean(suffix, named) or f"its arguments are: {', '.join(named)}",
        )
    )


def shared_tensor_errors(model: torch.nn.Module, keys: Iterable[Key]) -> list[Diagnostic]:
    """One tensor configured under two (module, target) names would be transformed twice."""
    modules = dict(model.named_modules())
    owner: dict[int, Key] = {}
    diags = []
    for key in dict.fromkeys(keys):
        tensor = modules[key[0]]._parameters.get(key[1])
        if tensor is None:
            continue
        first = owner.setdefault(id(tensor), key)
        if first != key:
            diags.append(
                error(
                    "T404",
                    f"'{key[0]}.{key[1]}' is the same tensor as '{first[0]}.{first[1]}' "
                    "(tied weights), and both are compression targets",
                    subject=f"module '{key[0]}' target '{key[1]}'",
                    hint=f"configure the tensor through '{first[0]}' only",
                )
            )
    return diags
