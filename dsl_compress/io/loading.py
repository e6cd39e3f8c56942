"""Loading what the command line names: a model from a spec, its weights, calibration batches."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from dsl_compress.diagnostics import fail
from dsl_compress.io.hf import hf_folder, hf_skeleton, is_hf_spec
from dsl_compress.io.specs import (
    call_user,
    kind_of,
    resolve_callable,
    user_code,
)
from dsl_compress.io.weights import (
    TENSOR_SUFFIXES,
    check_tensors,
    check_weights,
    load_weights,
    read_tensor_file,
)

__all__ = [
    "check_weights",
    "load_calib",
    "load_loss",
    "load_model",
    "load_weights",
    "spec_weights",
]


def load_model(spec: str, meta: bool = False) -> torch.nn.Module:
    """The nn.Module ``spec`` names: ``hf:DIR`` (a local Hugging Face folder) or a callable
    (module or file, then ':' and a name).

    With ``meta`` the model has no weights: a callable is called under ``torch.device("meta")``,
    an ``hf:`` model keeps its parameters on the meta device. Without it, an ``hf:`` model gets
    its folder's weights (their warnings emitted), and a callable's model is what it returns.
    """
    if is_hf_spec(spec):
        model = hf_skeleton(spec)
        if not meta:
            load_weights(model, hf_folder(spec))
        return model
    fn, folder = resolve_callable(spec, "L101", "--model")
    with torch.device("meta") if meta else contextlib.nullcontext():
        model = call_user(fn, spec, "L101", folder)
    if not isinstance(model, torch.nn.Module):
        what = f"the class {model.__name__}" if isinstance(model, type) else kind_of(model)
        fail(
            "L101",
            f"'{spec}' returned {what}, not a torch.nn.Module",
            subject=spec,
            hint="the callable must return a model instance, e.g. `return MyNet()`",
        )
    return model


def spec_weights(spec: str, weights: str | Path | None) -> str | Path | None:
    """The checkpoint a model spec comes with: ``weights`` if given, else an ``hf:`` folder's."""
    if weights:
        return weights
    return hf_folder(spec) if is_hf_spec(spec) else None


def load_loss(spec: str) -> Callable[[torch.nn.Module, Any], torch.Tensor]:
    """The loss function --loss names (``loss_fn(model, batch)``, called per batch later);
    L108 for a spec that names no callable, and for what it raises when called; P507 at
    ``--loss`` for a value that is not a scalar loss."""
    from dsl_compress.engine.prune import checked_loss

    fn, _ = resolve_callable(spec, "L108", "--loss")
    subject = f"--loss {spec}"

    def loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        with user_code("L108", subject, "the loss function"):
            value = fn(model, batch)
        return checked_loss(value, subject)

    return loss


def load_calib(spec: str) -> list:
    """Calibration batches from a tensor file (first dim = batches) or a callable spec."""
    if spec.lower().endswith(TENSOR_SUFFIXES):
        return _batches_of(read_tensor_file(spec, "L103", "calibration"), spec)
    if ":" in spec:
        fn, folder = resolve_callable(spec, "L103", "--calib")
        return _iterate(call_user(fn, spec, "L103", folder), spec)
    if Path(spec).exists():
        fail("L103", f"'{spec}' is not a .pt, .pth or .safetensors file", subject=spec)
    fail(
        "L103",
        f"no calibration file '{spec}'",
        subject=spec,
        hint="give a .pt/.safetensors file, or package.module:callable returning batches",
    )
    raise AssertionError("unreachable")


# ----- calibration batches ----------------------------------------------------------------------


def _batches_of(data: Any, path: str) -> list:
    """A tensor (or a dict of one) splits into tensors, a dict of several into keyword batches."""
    if isinstance(data, (list, tuple)):
        batches = list(data)
    elif isinstance(data, torch.Tensor):
        batches = _split(data, path)
    elif isinstance(data, Mapping) and len(data) == 1:
        batches = _split(next(iter(data.values())), path)
    elif isinstance(data, Mapping):
        batches = _split_dict(data, path)
    else:
        fail("L103", f"'{path}' holds {kind_of(data)}, not tensors", subject=path)
    if not batches:
        fail("L103", f"'{path}' holds no batches", subject=path)
    return batches


def _split(tensor: Any, path: str) -> list:
    if not isinstance(tensor, torch.Tensor):
        fail("L103", f"'{path}' holds {kind_of(tensor)}, not a tensor", subject=path)
    if tensor.dim() == 0:
        fail("L103", f"'{path}' holds a 0-dim tensor, with no batch dim", subject=path)
    return [tensor[i] for i in range(tensor.shape[0])]


def _split_dict(data: Mapping, path: str) -> list[dict]:
    """{name: [n, ...]} tensors become n keyword batches {name: tensor[i]}."""
    check_tensors(data, path, "L103")
    if not data:
        return []
    sizes = {k: v.shape[0] if v.dim() else None for k, v in data.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        shown = ", ".join(f"{k}: {n}" for k, n in sizes.items())
        fail(
            "L103",
            f"'{path}': the tensors' first dims (the batch counts) differ: {shown}",
            subject=path,
        )
    count = next(iter(sizes.values()))
    return [{k: v[i] for k, v in data.items()} for i in range(count)]


def _iterate(result: Any, spec: str) -> list:
    if isinstance(result, (str, bytes, Mapping)) or not hasattr(result, "__iter__"):
        fail(
            "L103",
            f"'{spec}' returned {kind_of(result)}, not an iterable of batches",
            subject=spec,
            hint="return a list of batches (tensors, tuples of tensors or dicts of tensors)",
        )
    with user_code("L103", spec, f"iterating the batches of '{spec}'"):
        batches = list(result)
    if not batches:
        fail("L103", f"'{spec}' returned no batches", subject=spec)
    return batches
