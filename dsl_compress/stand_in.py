"""Torch-free stand-ins for a model's modules and tensors: the names, types, shapes and forward()
signatures that resolution and the checks of settings and shapes read, with no computation.

A stand-in keeps its children, parameters and buffers under ``nn.Module``'s attribute names
(``_modules``, ``_parameters``, ``_buffers``) because those are what resolution reads of a
torch module; one code path then serves a real model and a manifest alike, and only a real
model loads torch.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Iterator

from dsl_compress.diagnostics import fail


@dataclass(frozen=True, eq=False)
class StandInTensor:
    """A tensor's shape and nothing else; compared by identity, as tensors are (tied weights
    are one stand-in shared by two modules)."""

    shape: tuple[int, ...]


class StandInModule:
    """A module's structure without torch: children, parameters and buffers by name (a None
    slot as torch keeps it), and a forward() that refuses to run."""

    def __init__(self, forward: inspect.Signature | None = None) -> None:
        self._modules: dict[str, StandInModule] = {}
        self._parameters: dict[str, StandInTensor | None] = {}
        self._buffers: dict[str, StandInTensor | None] = {}
        if forward is not None:  # the recorded signature names the _input_ targets
            self.forward = _unrunnable(type(self).__name__, forward)

    def __getattr__(self, name: str) -> Any:
        """Parameters, buffers and children as attributes, as on a torch module."""
        for table in ("_parameters", "_buffers", "_modules"):
            found = self.__dict__.get(table, {})
            if name in found:
                return found[name]
        raise AttributeError(f"stand-in {type(self).__name__} has no attribute '{name}'")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        cannot_run(type(self).__name__)

    def named_modules(self) -> Iterator[tuple[str, StandInModule]]:
        """Each module once, depth first, under its first name (as ``nn.Module.named_modules``)."""
        seen: set[int] = set()
        stack: list[tuple[str, StandInModule]] = [("", self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            dot = name + "." if name else ""
            stack.extend(reversed([(dot + n, m) for n, m in module._modules.items()]))

    def modules(self) -> Iterator[StandInModule]:
        return (module for _, module in self.named_modules())


@functools.cache
def stand_in_class(type_name: str) -> type[StandInModule]:
    """One class per type name, so that type selectors and registries see the original name."""
    return type(type_name, (StandInModule,), {"__module__": __name__})


def cannot_run(type_name: str) -> None:
    fail(
        "X803",
        f"this {type_name} was rebuilt from a manifest and cannot run forward()",
        subject="manifest model",
        hint="load the real model with --model SPEC to run it",
    )


def _unrunnable(type_name: str, signature: inspect.Signature):
    """A forward() that refuses to run but has the original signature, for _input_ names."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        cannot_run(type_name)

    forward.__signature__ = signature  # type: ignore[attr-defined]
    return forward
