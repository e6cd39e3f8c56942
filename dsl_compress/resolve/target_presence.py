"""Which targets exist on which modules of a model, answered once per type where every module
of the type agrees, and module by module only where they differ."""

from __future__ import annotations

import torch
from torch.nn.utils import parametrize

from dsl_compress.vocab import TargetKind, Mode
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.schema.registry import Registry
from dsl_compress.resolve.targets import takes_input

# A type's answer when its modules differ (a bias set on some, None on others): ask each one.
PER_MODULE = object()


class TargetPresence:
    """Answers about targets for one model and registry, remembered per (type, target)."""

    def __init__(self, index: ModelIndex, registry: Registry) -> None:
        self.index, self.registry = index, registry
        self._known: dict[tuple[str, str, Mode | None], object] = {}

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
        """Whether the module-specific checks of check_entry pass without a word: a parameter
        that is set and not parametrized, an input its forward() takes, or an output."""
        kind = TargetKind.of(target)
        if kind is TargetKind.OUTPUT:
            return True
        type_name = self.index.type_names[name]
        if kind is TargetKind.PARAMETER and self.of_type(type_name, target, None) is True:
            return True
        module = self.index.modules[name]
        if kind is TargetKind.PARAMETER:
            return _plain_parameter(module, target)
        return _takes_input(module, target)

    def _has(self, name: str, target: str, mode: Mode | None) -> bool:
        known = self.of_type(self.index.type_names[name], target, mode)
        if known is not PER_MODULE:
            return known
        module = self.index.modules[name]
        return target in module._parameters or parametrize.is_parametrized(module, target)

    def _answer(self, type_name: str, target: str, mode: Mode | None):
        if TargetKind.of(target) is not TargetKind.PARAMETER:
            return mode is None or type_name in self.registry[mode]
        names = self.index.by_type.get(type_name, ())
        everywhere = all(_plain_parameter(self.index.modules[n], target) for n in names)
        return True if everywhere else PER_MODULE


def _plain_parameter(module: torch.nn.Module, target: str) -> bool:
    """The module has the parameter, set (not None) and not parametrized."""
    return module._parameters.get(target) is not None and "parametrizations" not in module._modules


def _takes_input(module: torch.nn.Module, target: str) -> bool:
    """Whether check_input accepts the input target without a diagnostic (once per class)."""
    if "forward" in module.__dict__:  # an instance's own forward: ask it
        return takes_input(module, target)
    key = (type(module), type(module).forward, target)
    if key not in _INPUTS_TAKEN:
        if len(_INPUTS_TAKEN) > 4096:  # bounded: it holds classes, which may be made per model
            _INPUTS_TAKEN.clear()
        _INPUTS_TAKEN[key] = takes_input(module, target)
    return _INPUTS_TAKEN[key]


_INPUTS_TAKEN: dict[tuple, bool] = {}
