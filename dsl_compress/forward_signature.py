"""What a module's forward() takes: the parameters that NNI's ``_input_*`` target names refer to.

Resolution, the engine's taps and manifests all ask this question; it is introspection of
the model's code, owned by no stage.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def forward_parameters(module: torch.nn.Module) -> list[inspect.Parameter]:
    """The forward() parameters NNI names inputs by (self excluded)."""
    forward = module.forward
    function = getattr(forward, "__func__", None)
    if function is not None and getattr(forward, "__self__", None) is module:
        return list(_method_parameters(function))
    try:
        return list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return []


@functools.lru_cache(maxsize=1024)
def _method_parameters(function) -> tuple[inspect.Parameter, ...]:
    """A forward method's parameters after self, once per function (a model has few classes)."""
    try:
        return tuple(inspect.signature(function).parameters.values())[1:]
    except (TypeError, ValueError):
        return ()


def input_locator(module: torch.nn.Module, suffix: str) -> tuple[int | None, str | None]:
    """Where an input lives: (position in args, keyword name); either may be None.

    NNI names positional parameters only by index, so ``_input_x`` for ``forward(self, x)``
    never matches there; here it resolves to the position of ``x`` as well.
    """
    params = forward_parameters(module)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if suffix.isdigit():
        pos = int(suffix)
        name = positional[pos].name if pos < len(positional) else None
        return pos, name
    for pos, param in enumerate(positional):
        if param.name == suffix:
            return pos, suffix
    return None, suffix
