"""What the deployment checks need of a model: module types, tensor shapes and tied tensors, read
alike from a torch module, a meta skeleton or a manifest's stand-in (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class ModelShape:
    """Each module's class name, each parameter's shape, and each parameter held under several
    names (tied weights) with all its names."""

    module_types: Mapping[str, str]
    shapes: Mapping[str, tuple[int, ...]]
    ties: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, model: Any) -> ModelShape:
        """From ``named_modules()`` and each module's own ``_parameters`` (which a torch module
        and a stand-in both have); a tensor object met under two names is a tie."""
        types, shapes, names = {}, {}, {}
        for name, module in model.named_modules():
            types.setdefault(name, type(module).__name__)
            for target, tensor in module._parameters.items():
                if tensor is not None:
                    full = f"{name}.{target}" if name else target
                    shapes[full] = tuple(tensor.shape)
                    names.setdefault(id(tensor), []).append(full)
        ties = {n: tuple(group) for group in names.values() if len(group) > 1 for n in group}
        return cls(types, shapes, ties)
