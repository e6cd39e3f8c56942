"""Taps on a module's forward inputs and outputs, addressed by NNI target names (_input_0, _output_0)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.hooks import RemovableHandle

from dsl_compress.forward_signature import input_locator
from dsl_compress.vocab import INPUT_PREFIX, OUTPUT_PREFIX

TapFn = Callable[[torch.Tensor], "torch.Tensor | None"]


def install_tap(module: torch.nn.Module, target: str, fn: TapFn) -> RemovableHandle:
    """Call ``fn`` on the named input or output tensor each forward; a returned tensor replaces it."""
    if target.startswith(INPUT_PREFIX):
        locate = input_locator(module, target[len(INPUT_PREFIX) :])
        return module.register_forward_pre_hook(_pre_hook(locate, fn), with_kwargs=True)
    if target.startswith(OUTPUT_PREFIX):
        key = target[len(OUTPUT_PREFIX) :]
        return module.register_forward_hook(_post_hook(key, fn))
    raise ValueError(f"{target!r} is not an input or output target")


def _pre_hook(locate: tuple[int | None, str | None], fn: TapFn):
    pos, name = locate

    def hook(module, args, kwargs):
        if pos is not None and pos < len(args):
            new = _call(fn, args[pos])
            if new is not None:
                args = args[:pos] + (new,) + args[pos + 1 :]
                return args, kwargs
        elif name is not None and name in kwargs:
            new = _call(fn, kwargs[name])
            if new is not None:
                kwargs = {**kwargs, name: new}
                return args, kwargs
        return None

    return hook


def _post_hook(key: str, fn: TapFn):
    def hook(module, args, output):
        if isinstance(output, torch.Tensor):
            if key != "0":
                return None
            return _call(fn, output)
        if isinstance(output, (tuple, list)) and key.isdigit() and int(key) < len(output):
            new = _call(fn, output[int(key)])
            if new is None:
                return None
            items = list(output)
            items[int(key)] = new
            return type(output)(items) if isinstance(output, tuple) else items
        if isinstance(output, dict) and key in output:
            new = _call(fn, output[key])
            return None if new is None else {**output, key: new}
        return None

    return hook


def _call(fn: TapFn, value: Any) -> torch.Tensor | None:
    return fn(value) if isinstance(value, torch.Tensor) else None
