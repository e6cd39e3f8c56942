"""Sequential onloading: each module of a meta skeleton given its tensors just before its forward
and set back to meta after it, so a calibration run holds one module's weights at a time."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch

from dsl_compress.diagnostics import fail
from dsl_compress.plan import tensor_name

Read = Callable[[str], torch.Tensor]
# What a module's parameter becomes while it runs, by its state-dict name and meta original.
LoadParameter = Callable[[str, torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def onloaded(
    model: torch.nn.Module, read: Read, load_parameter: LoadParameter | None = None
) -> Iterator[None]:
    """Within this block, a forward of ``model`` reads each module's own meta parameters and
    buffers (by state-dict name, through ``read``) as the module starts and drops them as it
    ends; the skeleton is as it was afterwards, whatever happens. ``load_parameter`` gives
    each parameter's value instead of a frozen Parameter of what ``read`` returns (a gradient
    pass loads them through an autograd function)."""
    handles = []
    load = load_parameter or _frozen(read)
    try:
        for name, module in model.named_modules():
            metas = _meta_tensors(module)
            if metas:
                handles.append(module.register_forward_pre_hook(_loader(name, metas, read, load)))
                handles.append(module.register_forward_hook(_unloader(metas)))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module in model.modules():
            _restore(module, _meta_tensors(module, loaded=True))


def _meta_tensors(module: torch.nn.Module, loaded: bool = False) -> dict[str, torch.Tensor]:
    """The module's own parameters and buffers on the meta device (``loaded``: those a loader
    replaced, by their meta originals kept on the module)."""
    if loaded:
        return dict(module.__dict__.get("_dsl_compress_meta", {}))
    tables = (module._parameters, module._buffers)
    return {k: t for table in tables for k, t in table.items() if t is not None and t.is_meta}


def _frozen(read: Read) -> LoadParameter:
    def load(name: str, meta: torch.Tensor) -> torch.Tensor:
        return torch.nn.Parameter(_read(read, name), requires_grad=False)

    return load


def _loader(module_name: str, metas: dict[str, torch.Tensor], read: Read, load_parameter):
    def load(module: torch.nn.Module, args) -> None:
        module.__dict__["_dsl_compress_meta"] = metas
        for key, meta in metas.items():
            name = tensor_name(module_name, key)
            if key in module._parameters:
                module._parameters[key] = load_parameter(name, meta)
            else:
                module._buffers[key] = _read(read, name)

    return load


def _unloader(metas: dict[str, torch.Tensor]):
    def unload(module: torch.nn.Module, args, output) -> None:
        _restore(module, metas)

    return unload


def _restore(module: torch.nn.Module, metas: dict[str, torch.Tensor]) -> None:
    for key, meta in metas.items():
        table = module._parameters if key in module._parameters else module._buffers
        table[key] = meta
    module.__dict__.pop("_dsl_compress_meta", None)


def _read(read: Read, name: str) -> torch.Tensor:
    try:
        return read(name)
    except KeyError:
        fail(
            "X805",
            f"'{name}' is not in the checkpoint, so a streamed calibration cannot run its module",
            subject=name,
            hint="a buffer the model computes in __init__ is on the meta device in a skeleton: "
            "use --model hf:DIR (which builds buffers for real), or run apply without --stream",
        )
        raise AssertionError("unreachable")
