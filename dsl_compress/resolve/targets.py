"""Which targets a model's modules have: per-entry checks against a live module (parameters,
forward() inputs, tied tensors), and the same questions answered once per (type, target) while
resolving, module by module only where a type's modules differ."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Iterable, Sequence

from dsl_compress.diagnostics import Diagnostic, Severity, did_you_mean, error, warning
from dsl_compress.forward_signature import forward_parameters
from dsl_compress.plan import Key, PlanEntry, tensor_name
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.schema.registry import Registry
from dsl_compress.stand_in import StandInModule
from dsl_compress.vocab import Mode, TargetKind

if TYPE_CHECKING:
    import torch

# A type's answer when its modules differ (a bias set on some, None on others): ask each one.
PER_MODULE = object()


def check_parameter(module: torch.nn.Module, entry: PlanEntry, diags: list[Diagnostic]) -> bool:
    """True when ``entry.target`` is a Parameter of the module; otherwise say why, and skip it."""
    name = entry.target
    if _parametrized(module, name):
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
    params = _own_parameters(module)
    where = f"'{entry.module}' ({entry.module_type})"
    if entry.target in module._buffers:
        message = f"{where}: '{entry.target}' is a buffer; only parameters can be compressed"
        hint = "buffers such as BatchNorm running statistics are updated in place by forward()"
    elif _computed_tensor(module, entry.target):
        message = f"{where}: '{entry.target}' is computed, not a parameter"
        hint = f"compress the parameters it is computed from: {', '.join(params) or 'none'}"
    else:
        message = f"{where} has no parameter '{entry.target}'"
        hint = (
            did_you_mean(entry.target, params) or f"its parameters: {', '.join(params) or 'none'}"
        )
    return error("T401", message, subject=entry.subject, hint=hint)


def _parametrized(module: torch.nn.Module | StandInModule, name: str) -> bool:
    """Whether a parametrization (a compression) wraps the tensor: only a torch module carries
    one, so torch is asked (and loaded) only then."""
    if isinstance(module, StandInModule) or "parametrizations" not in module._modules:
        return False
    from torch.nn.utils import parametrize

    return parametrize.is_parametrized(module, name)


def _own_parameters(module: torch.nn.Module | StandInModule) -> list[str]:
    """The module's own parameters that are set, each tensor once (``named_parameters(recurse=
    False)``, read the way a stand-in answers too)."""
    seen: set[int] = set()
    names = []
    for name, tensor in module._parameters.items():
        if tensor is not None and id(tensor) not in seen:
            seen.add(id(tensor))
            names.append(name)
    return names


def _computed_tensor(module: torch.nn.Module | StandInModule, name: str) -> bool:
    """Whether the attribute is a tensor the module computes (a property), not one it stores;
    a manifest records stored tensors only, so a stand-in has none."""
    if isinstance(module, StandInModule):
        return False
    import torch

    return isinstance(getattr(module, name, None), torch.Tensor)


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
    owner: dict[int, Key] = {}
    diags = []
    for key in dict.fromkeys(keys):
        tensor = model.get_submodule(key[0])._parameters.get(key[1])  # no walk of the model
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


def tied_tensor_warning(entry: PlanEntry, names: Sequence[str]) -> Diagnostic:
    """T405: compressing a tied tensor changes it under every name it has, at finalize()."""
    own = tensor_name(entry.module, entry.target)
    others = [n for n in names if n != own]
    listed = ", ".join(f"'{n}'" for n in others)
    done = "pruned" if entry.mode is Mode.PRUNE else "quantized"
    return warning(
        "T405",
        f"'{own}' is the same tensor as {listed} (tied weights): while attached only "
        f"'{entry.module}' sees the {done} values, and finalize() writes them into {listed} too",
        subject=entry.subject,
        hint="that is what tied weights mean; to compress only one of them, untie them first "
        f"(give '{own}' a copy of its own, e.g. nn.Parameter(weight.clone()))",
    )


class TargetPresence:
    """Answers about targets for one model and registry, remembered per (type, target)."""

    def __init__(self, index: ModelIndex, registry: Registry) -> None:
        self.index, self.registry = index, registry
        self._known: dict[tuple[str, str, Mode | None], object] = {}
        self._inputs_taken: dict[tuple, bool] = {}

    def has_target(self, name: str, target: str, mode: Mode) -> bool:
        """Whether a pattern's target can exist on this module: a parameter it has, or an
        input/output of a type with a template of this kind."""
        if name == "" and TargetKind.of(target) is not TargetKind.PARAMETER:
            return False
        return self._has(name, target, mode)

    def has_parameter(self, name: str, target: str) -> bool:
        """For a type-wide statement: whether this module has the parameter target (inputs and
        outputs were checked for the whole type, except on the root, which never has them)."""
        if name == "" and TargetKind.of(target) is not TargetKind.PARAMETER:
            return False
        return self._has(name, target, None)

    def everywhere(self, type_name: str, target: str) -> bool:
        """Whether every module of the type has the target (a parameter set and not
        parametrized; an input or output unless the root is of the type)."""
        parameter = TargetKind.of(target) is TargetKind.PARAMETER
        if not parameter and self.index.type_names.get("") == type_name:
            return False
        return self.of_type(type_name, target, None) is True

    def of_type(self, type_name: str, target: str, mode: Mode | None):
        """True or False for every module of the type, or PER_MODULE: ask each module."""
        parameter = TargetKind.of(target) is TargetKind.PARAMETER
        key = (type_name, target, None if parameter else mode)
        if key not in self._known:
            self._known[key] = self._answer(type_name, target, mode)
        return self._known[key]

    def plain(self, name: str, target: str) -> bool:
        """Whether the module-specific checks of EntryChecks pass without a word: a parameter
        that is set and not parametrized, an input its forward() takes, or an output."""
        kind = TargetKind.of(target)
        if kind is TargetKind.OUTPUT:
            return True
        type_name = self.index.type_names[name]
        if kind is TargetKind.PARAMETER and self.of_type(type_name, target, None) is True:
            return True
        module = self.index.modules[name]
        if kind is TargetKind.PARAMETER:
            return _plain_parameter(module, target, self.tied)
        return self._takes_input(module, target)

    @cached_property
    def tied(self) -> frozenset[int]:
        """ids of the parameters held under two or more names (a tied one draws T405)."""
        return frozenset(self.index.tied)

    def _has(self, name: str, target: str, mode: Mode | None) -> bool:
        known = self.of_type(self.index.type_names[name], target, mode)
        if known is not PER_MODULE:
            return known
        module = self.index.modules[name]
        return target in module._parameters or _parametrized(module, target)

    def _answer(self, type_name: str, target: str, mode: Mode | None):
        if TargetKind.of(target) is not TargetKind.PARAMETER:
            return mode is None or type_name in self.registry[mode]
        names = self.index.by_type.get(type_name, ())
        everywhere = all(_plain_parameter(self.index.modules[n], target, self.tied) for n in names)
        return True if everywhere else PER_MODULE

    def _takes_input(self, module: torch.nn.Module, target: str) -> bool:
        """Whether check_input accepts the input target without a diagnostic (once per class)."""
        if "forward" in module.__dict__:  # an instance's own forward: ask it
            return takes_input(module, target)
        key = (type(module), type(module).forward, target)
        if key not in self._inputs_taken:
            self._inputs_taken[key] = takes_input(module, target)
        return self._inputs_taken[key]


def _plain_parameter(module: torch.nn.Module, target: str, tied: frozenset[int]) -> bool:
    """The module has the parameter, set (not None), not parametrized and not tied."""
    tensor = module._parameters.get(target)
    return (
        tensor is not None and "parametrizations" not in module._modules and id(tensor) not in tied
    )
