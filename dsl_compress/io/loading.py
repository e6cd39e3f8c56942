"""Loading what the command line names: a model from a spec, its weights, calibration batches."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file

from dsl_compress.diagnostics import Diagnostic, emit_warnings, fail, warning
from dsl_compress.io.specs import (
    call_user,
    exc_text,
    kind_of,
    listing,
    oneline,
    resolve_callable,
    user_code,
)

TENSOR_SUFFIXES = (".pt", ".pth", ".safetensors")


def load_model(spec: str) -> torch.nn.Module:
    """Call the callable ``spec`` names (module or file, then ':' and a name) for an nn.Module."""
    fn, folder = resolve_callable(spec, "L101", "--model")
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


def load_weights(model: torch.nn.Module, path: str | Path) -> list[Diagnostic]:
    """Load a .safetensors or .pt state dict strictly; the model is untouched if anything is off.

    Each tensor keeps the model's dtype. A floating tensor of another floating dtype is cast,
    with a warning (L102) that is returned and emitted; a tensor of another kind (integer,
    bool or complex for a floating one, or the reverse) is error L102. A model on the meta
    device gets the file's tensors (cast to its dtypes) in place of its meta tensors.
    """
    path = str(path)
    state = _read_tensor_file(path, "L102", "weights")
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        fail("L102", f"'{path}' holds {kind_of(state)}, not a state dict", subject=path)
    _check_tensors(state, path, "L102")
    _check_state(model, state, path)
    expected = model.state_dict()
    found = _dtype_changes(expected, state, path)
    meta = any(tensor.is_meta for tensor in expected.values())
    if meta:
        state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=meta)
    except (RuntimeError, ValueError) as exc:
        fail("L102", f"loading '{path}' failed: {oneline(exc)}", subject=path)
    emit_warnings(found)
    return found


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "floating"
    return "bool" if dtype == torch.bool else "integer"


def _dtype_changes(expected: Mapping, state: Mapping, path: str) -> list[Diagnostic]:
    """L102 for tensors of another kind than the model's; a warning for floating dtype changes."""
    changed = [k for k in expected if state[k].dtype != expected[k].dtype]
    wrong = [k for k in changed if _kind(state[k].dtype) != _kind(expected[k].dtype)]
    if wrong:
        shown = [f"{k} (file {state[k].dtype}, model {expected[k].dtype})" for k in wrong]
        fail(
            "L102",
            f"'{path}' holds tensors of another kind than the model's: {listing(shown)}",
            subject=path,
            hint="a floating model takes floating weights; save the weights from this model "
            "(quantized integer or complex tensors are not weights it can load)",
        )
    if not changed:
        return []
    pairs = sorted({f"{state[k].dtype} -> {expected[k].dtype}" for k in changed})
    return [
        warning(
            "L102",
            f"'{path}': {len(changed)} tensor(s) are cast to the model's dtype "
            f"({', '.join(pairs)}), e.g. '{changed[0]}'",
            subject=path,
            hint="cast the model first (model.to(dtype)) to keep the file's precision",
        )
    ]


def load_calib(spec: str) -> list:
    """Calibration batches from a tensor file (first dim = batches) or a callable spec."""
    if spec.lower().endswith(TENSOR_SUFFIXES):
        return _batches_of(_read_tensor_file(spec, "L103", "calibration"), spec)
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


# ----- specs: package.module:callable or path/to/file.py:callable ------------------------------


def _read_tensor_file(path: str, code: str, what: str) -> Any:
    """The contents of a .safetensors or .pt/.pth file; .pt is read with weights_only=True."""
    file = Path(path)
    if not file.is_file():
        fail(code, f"no {what} file '{path}'", subject=path)
    suffix = file.suffix.lower()
    if suffix not in TENSOR_SUFFIXES:
        fail(
            code,
            f"'{path}' is not a .safetensors, .pt or .pth file",
            subject=path,
            hint="save tensors with safetensors.torch.save_file or torch.save",
        )
    try:
        if suffix == ".safetensors":
            return load_file(file, device="cpu")
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        _refused(path, str(exc), code)
    except Exception as exc:  # noqa: BLE001 - every reader error becomes one diagnostic
        fail(code, f"cannot read '{path}': {exc_text(exc)}", subject=path)
    raise AssertionError("unreachable")


def _refused(path: str, text: str, code: str) -> None:
    """torch.load(weights_only=True) refused the file: a pickled object, or not a torch file."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        fail(
            code,
            f"'{path}' holds a pickled {found.group(1)}; only tensors and containers are loaded",
            subject=path,
            hint="arbitrary pickle is never loaded; save a state dict, e.g. model.state_dict()",
        )
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    reason = detail.group(1).strip() if detail else "not a torch.save file"
    fail(code, f"cannot read '{path}': {reason}", subject=path)


def _check_tensors(state: Mapping, path: str, code: str) -> None:
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        fail(code, f"'{path}' holds values that are not tensors: {listing(bad)}", subject=path)


def _check_state(model: torch.nn.Module, state: Mapping, path: str) -> None:
    """Every problem strict loading would meet, found before anything is copied."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} (file {list(state[k].shape)}, model {list(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    parts = [
        _counted(missing, "missing key", "missing keys"),
        _counted(unexpected, "unexpected key", "unexpected keys"),
        _counted(mismatched, "shape mismatch", "shape mismatches"),
    ]
    problems = [p for p, keys in zip(parts, (missing, unexpected, mismatched)) if keys]
    if problems:
        fail(
            "L102",
            f"'{path}' does not match the model: {'; '.join(problems)}",
            subject=path,
            hint=_prefix_hint(missing, unexpected) or "save the weights from this model's class",
        )


def _prefix_hint(missing: list[str], unexpected: list[str]) -> str | None:
    """Weights saved from a wrapper (DataParallel, a parent model) carry an extra key prefix."""
    if not missing or len(missing) != len(unexpected):
        return None
    unexpected, missing = sorted(unexpected), sorted(missing)
    prefix = unexpected[0][: len(unexpected[0]) - len(missing[0])]
    if prefix and all(u == prefix + m for u, m in zip(unexpected, missing)):
        return f"the file's keys start with '{prefix}'; strip it from every key"
    return None


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
    _check_tensors(data, path, "L103")
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


# ----- wording ----------------------------------------------------------------------------------


def _counted(keys: list[str], one: str, many: str) -> str:
    return f"{len(keys)} {one if len(keys) == 1 else many} ({listing(keys)})"
