"""Sequential onloading: each module of a meta skeleton given its tensors just before its forward
and set back to meta after it, so a calibration run holds one module's weights at a time; a
tensor used outside its own module's forward is read for the one op that uses it."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch.overrides import TorchFunctionMode

from dsl_compress.diagnostics import fail
from dsl_compress.plan import tensor_name

Read = Callable[[str], torch.Tensor]
# What a module's parameter becomes while it runs, by its state-dict name and meta original.
LoadParameter = Callable[[str, torch.Tensor], torch.Tensor]

# Ops that read only a tensor's geometry, which its meta original has: nothing is read for them.
_GEOMETRY = frozenset(
    {
        torch.Tensor.shape.__get__,
        torch.Tensor.dtype.__get__,
        torch.Tensor.ndim.__get__,
        torch.Tensor.is_meta.__get__,
        torch.Tensor.requires_grad.__get__,
        torch.Tensor.layout.__get__,
        torch.Tensor.size,
        torch.Tensor.dim,
        torch.Tensor.numel,
        torch.Tensor.element_size,
        torch.Tensor.is_floating_point,
        torch.Tensor.is_complex,
    }
)

_DEVICE = torch.Tensor.device.__get__

# torch.nn modules whose fused fast path reads their submodules' weights directly, and is
# taken only where no torch function mode is active: each runs as one, its submodules' tensors
# loaded with its own and the on-demand mode off inside, so it takes the path it takes in memory.
# A TransformerEncoder (its nested-tensor path for a padding mask) holds all its layers' tensors
# at once; TransformerDecoder and Transformer check no mode, and run module by module.
_FUSED = (
    torch.nn.MultiheadAttention,
    torch.nn.TransformerEncoderLayer,
    torch.nn.TransformerEncoder,
)


@contextlib.contextmanager
def onloaded(
    model: torch.nn.Module, read: Read, load_parameter: LoadParameter | None = None
) -> Iterator[None]:
    """Within this block, a forward of ``model`` reads each module's own meta parameters and
    buffers (by state-dict name, through ``read``) as the module starts and drops them as it
    ends; the skeleton is as it was afterwards, whatever happens. ``load_parameter`` gives
    each parameter's value instead of a Parameter of what ``read`` returns, as trainable as
    its meta original (a gradient pass loads them through an autograd function).

    A skeleton tensor an op gets while its module is not running (a parent using a child's
    weight, a tied head, a loss reading a parameter) is loaded the same way for that op and
    dropped after it, an op that writes into it is X805 (the write would be lost); any other
    meta tensor reaching an op is X805, never the uninitialised memory an op mixing devices
    may return."""
    load = load_parameter or _as_stored(read)
    owned = [(name, module, _meta_tensors(module)) for name, module in model.named_modules()]
    skeleton = {
        id(meta): (tensor_name(name, key), key in module._parameters)
        for name, module, metas in reversed(owned)
        for key, meta in metas.items()
    }
    on_demand = _OnDemand(model, skeleton, read, load)
    handles, fused = [], []
    try:
        _install(owned, on_demand, handles, fused)
        with on_demand:
            yield
    finally:
        for handle in handles:
            handle.remove()
        for module, forward in fused:
            module.__dict__.pop("forward")
            if forward is not None:
                module.forward = forward
        _restore_skeleton(owned)


def _install(owned: list, on_demand: _OnDemand, handles: list, fused: list) -> None:
    """Loading hooks on each module with tensors of its own, except inside a fused module
    (whose fast path is not taken where any of its modules has a hook): each fused module's
    forward loads its and its submodules' tensors itself (``fused`` keeps its own forward)."""
    units = [module for _, module, _ in owned if isinstance(module, _FUSED)]
    inside = {id(m) for unit in units for m in unit.modules() if m is not unit}
    for name, module, metas in owned:
        if isinstance(module, _FUSED):
            fused.append((module, module.__dict__.get("forward")))
            module.forward = _as_one_unit(module, _group(module, owned), on_demand)
        elif metas and id(module) not in inside:
            handles.append(
                module.register_forward_pre_hook(on_demand.loader([(name, module, metas)]))
            )
            # Also when the forward raises: a model may catch the error and go on.
            handles.append(module.register_forward_hook(_unload, always_call=True))


def _group(module: torch.nn.Module, owned: list) -> list:
    """A fused module's own tensors and its submodules'."""
    inside = {id(m) for m in module.modules()}
    return [(name, m, metas) for name, m, metas in owned if id(m) in inside and metas]


def _as_one_unit(module: torch.nn.Module, group: list, on_demand: _OnDemand) -> Callable:
    """The module's forward with its group's tensors loaded (and dropped after, whatever
    happens) and its skeleton arguments loaded (a sibling's mask handed to an encoder layer),
    then run with torch functions off."""
    forward, load = module.forward, on_demand.loader(group)

    def without_modes(*args, **kwargs):
        with torch._C.DisableTorchFunction():
            return forward(*args, **kwargs)

    def run(*args, **kwargs):
        load(module, args)
        try:
            return on_demand.call(without_modes, args, kwargs)
        finally:
            _unload(module, args, None)

    return run


def _restore_skeleton(owned: list) -> None:
    """Every module's meta originals put back, whatever the run left (loaded or assigned)."""
    for _, module, metas in owned:
        _restore(module, metas)
        module.__dict__.pop("_dsl_compress_loads", None)


class _OnDemand(TorchFunctionMode):
    """Each skeleton tensor an op receives (by identity) loaded for that op alone."""

    def __init__(self, model, skeleton: dict[int, tuple[str, bool]], read: Read, load):
        super().__init__()
        self._model, self._skeleton, self._read, self._load = model, skeleton, read, load
        self._devices: dict[str, torch.device] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _GEOMETRY:
            return func(*args, **(kwargs or {}))
        if func == _DEVICE:
            return self._device(args[0])
        return self.call(func, args, kwargs or {})

    def _device(self, tensor: torch.Tensor) -> torch.device:
        """Where a skeleton tensor is read to (``model.device``), read once in this block:
        the device of its first reading (another tensor's device reads nothing)."""
        found = self._skeleton.get(id(tensor)) if tensor.is_meta else None
        if found is None:
            return tensor.device
        if found[0] not in self._devices:
            self.call(_DEVICE, (tensor,), {})
        return self._devices[found[0]]

    def loader(self, group: list) -> Callable:
        """A forward pre-hook loading the group's tensors (:func:`_loader`)."""
        return _loader(group, self._read, self._load)

    def call(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        """``func`` on its arguments with their skeleton tensors loaded; X805 if it wrote into
        one of those (the write would be lost with the temporary)."""
        loads: list[tuple[str, torch.Tensor, int]] = []
        args = tuple(self._loaded(value, loads) for value in args)
        kwargs = {key: self._loaded(value, loads) for key, value in kwargs.items()}
        result = func(*args, **kwargs)
        for name, tensor, version in loads:
            if _version(tensor) != version:
                _written(name)
        return result

    def _loaded(self, value: Any, loads: list) -> Any:
        if type(value) in (list, tuple):
            return type(value)(self._loaded(item, loads) for item in value)
        if not isinstance(value, torch.Tensor) or not value.is_meta:
            return value
        found = self._skeleton.get(id(value))
        if found is None:
            _stray_meta(self._model, value)
        name, parameter = found
        tensor = self._load(name, value) if parameter else _read(self._read, name)
        loads.append((name, tensor, _version(tensor)))
        self._devices[name] = tensor.device
        return tensor


def _version(tensor: torch.Tensor) -> int:
    """The tensor's version counter (an inference tensor has none, and cannot be written)."""
    return -1 if tensor.is_inference() else tensor._version


def _written(name: str) -> None:
    fail(
        "X805",
        f"'{name}' is written in place outside its module's forward, and a streamed run reads "
        "it for that op alone, so the write would be lost",
        subject=name,
        hint="change a buffer inside its own module's forward, or run apply without --stream",
    )


def _stray_meta(model: torch.nn.Module, tensor: torch.Tensor) -> None:
    """X805 for a meta tensor that is none of the skeleton's parameters and buffers."""
    where = next(
        (
            tensor_name(module_name, attribute)
            for module_name, module in model.named_modules()
            for attribute, value in vars(module).items()
            if value is tensor
        ),
        None,
    )
    what = f"'{where}'" if where else f"a meta tensor of shape {list(tensor.shape)}"
    fail(
        "X805",
        f"{what} is on the meta device and is not a parameter or buffer of the model, "
        "so a streamed run cannot read it",
        subject=where or "stream",
        hint="a tensor the model makes in __init__ must be a registered buffer to be streamed "
        "(it is then read from the checkpoint); or run apply without --stream",
    )


def _meta_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's own parameters and buffers on the meta device."""
    tables = (module._parameters, module._buffers)
    return {k: t for table in tables for k, t in table.items() if t is not None and t.is_meta}


def _as_stored(read: Read) -> LoadParameter:
    # As trainable as in memory: some kernels (nn.LSTM's) take another path for a frozen
    # weight even without gradients; every pass that loads them this way runs under no_grad.
    def load(name: str, meta: torch.Tensor) -> torch.Tensor:
        return torch.nn.Parameter(_read(read, name), requires_grad=meta.requires_grad)

    return load


def _loader(group: list, read: Read, load_parameter: LoadParameter) -> Callable:
    """Load the group's tensors not loaded already (a fused ancestor loads its submodules')."""

    def load(module: torch.nn.Module, args) -> None:
        fresh = [each for each in group if "_dsl_compress_meta" not in each[1].__dict__]
        module.__dict__.setdefault("_dsl_compress_loads", []).append(fresh)
        for module_name, each, metas in fresh:
            each.__dict__["_dsl_compress_meta"] = metas
            for key, meta in metas.items():
                name = tensor_name(module_name, key)
                if key in each._parameters:
                    each._parameters[key] = load_parameter(name, meta)
                else:
                    each._buffers[key] = _read(read, name)

    return load


def _unload(module: torch.nn.Module, args, output) -> None:
    loads = module.__dict__.get("_dsl_compress_loads")
    for _, each, metas in loads.pop() if loads else ():
        _restore(each, metas)


def _restore(module: torch.nn.Module, metas: dict[str, torch.Tensor]) -> None:
    for key, meta in metas.items():
        table = module._parameters if key in module._parameters else module._buffers
        table[key] = meta
    module.__dict__.pop("_dsl_compress_meta", None)


def read_normal(read: Read, name: str) -> torch.Tensor:
    """``read(name)`` as a normal tensor (with a version counter, as the in-memory model's) also
    inside inference_mode, left for the read with gradients kept off (leaving turns them on)."""
    if not torch.is_inference_mode_enabled():
        return read(name)
    with torch.inference_mode(False), torch.no_grad():
        return read(name)


def _read(read: Read, name: str) -> torch.Tensor:
    try:
        return read_normal(read, name)
    except KeyError:
        fail(
            "X805",
            f"'{name}' is not in the checkpoint, so a streamed calibration cannot run its module",
            subject=name,
            hint="a buffer the model computes in __init__ is on the meta device in a skeleton: "
            "use --model hf:DIR (which builds buffers for real), or run apply without --stream",
        )
        raise AssertionError("unreachable")
