"""A model's module index: every name (aliases included), its type name, its canonical name,
and names by type and by prefix."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Iterable

from dsl_compress.plan import tensor_name
from dsl_compress.schema.registry import type_name_of
from dsl_compress.stand_in import StandInModule

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelIndex:
    """Every module name of a model (aliases included), its type name, and its canonical name."""

    modules: dict[str, torch.nn.Module | StandInModule]
    type_names: dict[str, str]
    canonical: dict[str, str] = field(repr=False)

    @classmethod
    def of(cls, model: torch.nn.Module | StandInModule) -> "ModelIndex":
        modules = _named_modules(model)
        first: dict[int, str] = {}
        for name, module in modules.items():
            first.setdefault(id(module), name)
        return cls(
            modules=modules,
            type_names={n: type_name_of(m) for n, m in modules.items()},
            canonical={n: first[id(m)] for n, m in modules.items()},
        )

    def of_types(self, types: list[str]) -> set[str]:
        return {n for t in set(types) for n in self.by_type.get(t, ())}

    def first_names(self, names: Iterable[str]) -> list[str]:
        """``names`` (in order) with each module once, under its first name."""
        if not self.aliased:
            return list(names)
        return list(dict.fromkeys(self.canonical[name] for name in names))

    @cached_property
    def tied(self) -> dict[int, list[str]]:
        """{id(parameter): ['module.name', ...]} for each parameter held under two or more
        names (tied weights); a module reachable under two names counts once, under its first."""
        if not self._any_tied():
            return {}
        first: dict[int, tuple[str, str]] = {}
        tied: dict[int, list[tuple[str, str]]] = {}
        for module_name, module in self.modules.items():
            if self.canonical[module_name] != module_name:
                continue
            for name, tensor in module._parameters.items():
                if tensor is None:
                    continue
                seen = first.setdefault(id(tensor), (module_name, name))
                if seen != (module_name, name):
                    tied.setdefault(id(tensor), [seen]).append((module_name, name))
        return {key: [tensor_name(*pair) for pair in pairs] for key, pairs in tied.items()}

    def _any_tied(self) -> bool:
        """Whether two parameter names hold one tensor: one pass that builds no names, since
        tied weights are rare and a model may have 100,000 modules."""
        ids = [
            id(tensor)
            for name, module in self.modules.items()
            if self.canonical[name] == name
            for tensor in module._parameters.values()
            if tensor is not None
        ]
        return len(set(ids)) != len(ids)

    @cached_property
    def aliased(self) -> bool:
        """Whether some module is reachable under two names."""
        return any(name != first for name, first in self.canonical.items())

    @cached_property
    def order(self) -> dict[str, int]:
        """Each name's position in model order."""
        return {name: i for i, name in enumerate(self.modules)}

    @cached_property
    def by_type(self) -> dict[str, list[str]]:
        """Names per type name, in model order (aliases included)."""
        out: dict[str, list[str]] = {}
        for name, type_name in self.type_names.items():
            out.setdefault(type_name, []).append(name)
        return out

    @cached_property
    def _sorted(self) -> dict[str | None, list[str]]:
        """Names in string order: all of them (key None) and per type name."""
        out: dict[str | None, list[str]] = {None: sorted(self.modules)}
        out.update((t, sorted(names)) for t, names in self.by_type.items())
        return out

    def with_prefix(self, prefix: str, type_name: str | None = None) -> list[str]:
        """Names that start with ``prefix`` (of one type if given), in model order."""
        if type_name is None and not prefix:
            return list(self.modules)
        names = self._sorted.get(type_name, [])
        low = bisect.bisect_left(names, prefix)
        past = _past(prefix)
        high = len(names) if past is None else bisect.bisect_left(names, past, low)
        return sorted(names[low:high], key=self.order.__getitem__)


def _named_modules(model: torch.nn.Module | StandInModule) -> dict[str, torch.nn.Module]:
    """``dict(model.named_modules(remove_duplicate=False))``, without a generator per level."""
    out: dict[str, torch.nn.Module] = {}
    stack: list[tuple[str, torch.nn.Module]] = [("", model)]
    while stack:
        prefix, module = stack.pop()
        out[prefix] = module
        dot = prefix + "." if prefix else ""
        children = [(dot + n, m) for n, m in module._modules.items() if m is not None]
        stack.extend(reversed(children))
    return out


def _past(prefix: str) -> str | None:
    """A string above every string that starts with ``prefix`` (None: no such string)."""
    stem = prefix.rstrip("\U0010ffff")
    return stem[:-1] + chr(ord(stem[-1]) + 1) if stem else None
