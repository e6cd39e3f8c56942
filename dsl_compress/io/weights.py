"""Weights into a model: every key, shape and dtype checked from the checkpoint's headers first,
then one tensor at a time read and copied (or, on the meta device, assigned) into the model."""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from dsl_compress.diagnostics import Diagnostic, emit_warnings, fail, warning
from dsl_compress.io.checkpoint import Checkpoint, TensorInfo, open_checkpoint
from dsl_compress.io.specs import exc_text, kind_of, listing

TENSOR_SUFFIXES = (".pt", ".pth", ".safetensors")
TORCH_SUFFIXES = (".pt", ".pth")


def load_weights(model: torch.nn.Module, path: str | Path, role: str = "model") -> list[Diagnostic]:
    """Load a checkpoint strictly; the model is untouched if anything is off.

    ``path`` is a .safetensors file, a sharded index (``*.safetensors.index.json``), a folder
    holding either (see ``checkpoint.folder_checkpoint``), or a .pt/.pth state dict (read whole,
    weights only). Every key, shape and dtype is checked before anything is copied; then each
    tensor is read on its own and copied in, so the peak is the model plus one tensor. Each
    tensor keeps the model's dtype: a floating tensor of another floating dtype is cast, with a
    warning (L102) that is returned and emitted; a tensor of another kind (integer, bool or
    complex for a floating one, or the reverse) is error L102. A tensor on the meta device is
    replaced by the file's (cast to its dtype). A key the file lacks whose tensor is tied to a
    key it has (``lm_head.weight is embed.weight``) is not missing: the tie is loaded once, from
    the first of its names the file holds, and still holds afterwards. ``role`` is what the
    messages call the model (the teacher's checkpoint says "teacher").
    """
    with _open_source(path) as source:
        groups, found = _checked(model, source, str(path), role)
        for names, present in groups:
            _load_group(model, names, source.read(present))
    emit_warnings(found)
    return found


def check_weights(
    model: torch.nn.Module, path: str | Path, role: str = "model"
) -> list[Diagnostic]:
    """The checks of ``load_weights`` alone: every error raised, the dtype warnings returned (not
    emitted: nothing is cast); a safetensors checkpoint's tensor data is never read."""
    with _open_source(path) as source:
        return _checked(model, source, str(path), role)[1]


@contextlib.contextmanager
def weight_reader(
    model: torch.nn.Module, path: str | Path, role: str = "model"
) -> Iterator[tuple[Callable[[str], torch.Tensor], list[Diagnostic]]]:
    """A reader of the checkpoint's tensors by the model's state-dict names, each as
    :func:`load_weights` would load it (a tied name read through the name the file holds it
    by, cast to the model's dtype), and the cast warnings. Checked first, from the headers; a
    streamed run then reads one tensor at a time and never loads the model."""
    with _open_source(path) as source:
        groups, found = _checked(model, source, str(path), role)
        dtypes = {k: v.dtype for k, v in model.state_dict(keep_vars=True).items()}
        stored_as = {name: present for names, present in groups for name in names}

        def read(name: str) -> torch.Tensor:
            tensor = source.read(stored_as[name])
            return tensor.to(dtypes[name]) if tensor.dtype != dtypes[name] else tensor

        yield read, found


def read_tensor_file(path: str, code: str, what: str) -> Any:
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
    protocols: list[int] = []
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(file, device="cpu")
        return _torch_load(file, protocols)
    except pickle.UnpicklingError as exc:
        _refused(path, str(exc), code, protocols)
    except Exception as exc:  # noqa: BLE001 - every reader error becomes one diagnostic
        fail(code, f"cannot read '{path}': {exc_text(exc)}", subject=path)
    raise AssertionError("unreachable")


def check_tensors(state: Mapping, path: str, code: str) -> None:
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        fail(code, f"'{path}' holds values that are not tensors: {listing(bad)}", subject=path)


# ----- sources: a checkpoint, or a .pt state dict held whole ------------------------------------


class _StateSource:
    """A .pt/.pth state dict behind the checkpoint's names/info/read."""

    def __init__(self, state: Mapping[str, torch.Tensor], path: Path):
        self._state = state
        self._path = path

    def __contains__(self, name: object) -> bool:
        return name in self._state

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def info(self, name: str) -> TensorInfo:
        tensor = self._state[name]
        nbytes = tensor.numel() * tensor.element_size()
        return TensorInfo(name, tuple(tensor.shape), tensor.dtype, self._path, nbytes)

    def read(self, name: str) -> torch.Tensor:
        return self._state[name]

    def __enter__(self) -> _StateSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self._state = {}


def _open_source(path: str | Path) -> Checkpoint | _StateSource:
    text, file = str(path), Path(path)
    suffix = file.suffix.lower()
    if suffix in TORCH_SUFFIXES and not file.is_dir():
        return _state_source(text)
    if file.is_file() and suffix not in (".safetensors", ".json"):
        fail(
            "L102",
            f"'{text}' is not a .safetensors, .pt or .pth file, nor a safetensors index",
            subject=text,
            hint="save weights with safetensors.torch.save_file, save_pretrained or "
            "torch.save(model.state_dict())",
        )
    return open_checkpoint(file)


def _state_source(text: str) -> _StateSource:
    state = read_tensor_file(text, "L102", "weights")
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        fail("L102", f"'{text}' holds {kind_of(state)}, not a state dict", subject=text)
    check_tensors(state, text, "L102")
    return _StateSource(state, Path(text))


# ----- checks, from the headers alone ------------------------------------------------------------

Group = tuple[list[str], str]  # every name of one model tensor, and the one the file gives it by


def _checked(
    model: torch.nn.Module, source, path: str, role: str
) -> tuple[list[Group], list[Diagnostic]]:
    """What to load (one entry per distinct model tensor) and the cast warnings; every mismatch
    is raised first, all of them in one error."""
    state = model.state_dict(keep_vars=True)
    _refuse_extra_state(state, path)
    expected = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    groups = _tie_groups(expected)
    missing = [k for k in expected if not any(n in source for n in groups[id(expected[k])])]
    unexpected = [k for k in source if k not in expected]
    infos = {k: source.info(k) for k in expected if k in source}
    mismatched = [
        f"{k} (file {list(info.shape)}, {role} {list(expected[k].shape)})"
        for k, info in infos.items()
        if info.shape != tuple(expected[k].shape)
    ]
    _raise_mismatches(path, missing, unexpected, mismatched, role)
    found = _dtype_changes(expected, infos, path, role)
    present = {}
    for key in infos:
        present.setdefault(id(expected[key]), key)
    return [(groups[tid], key) for tid, key in present.items()], found


def _refuse_extra_state(state: Mapping[str, Any], path: str) -> None:
    """A module's extra state (``get_extra_state``: any object) is not a tensor, so no
    checkpoint of tensors holds it: L102, as a missing key."""
    extra = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if extra:
        fail(
            "L102",
            f"'{path}' cannot hold {listing(extra)}: a module's extra state, not a tensor",
            subject=path,
            hint="load this model's weights in Python (model.load_state_dict) and give "
            "dsl-compress the model; a checkpoint of tensors cannot restore extra state",
        )


def _tie_groups(expected: Mapping[str, torch.Tensor]) -> dict[int, list[str]]:
    """Each distinct tensor's names: tied parameters are one object under several names."""
    groups: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        groups.setdefault(id(tensor), []).append(name)
    return groups


def _raise_mismatches(
    path: str, missing: list, unexpected: list, mismatched: list, role: str
) -> None:
    """Every problem strict loading would meet, found before anything is copied."""
    parts = [
        _counted(missing, "missing key", "missing keys"),
        _counted(unexpected, "unexpected key", "unexpected keys"),
        _counted(mismatched, "shape mismatch", "shape mismatches"),
    ]
    problems = [p for p, keys in zip(parts, (missing, unexpected, mismatched)) if keys]
    if problems:
        fail(
            "L102",
            f"'{path}' does not match the {role}: {'; '.join(problems)}",
            subject=path,
            hint=_prefix_hint(missing, unexpected) or f"save the weights from this {role}'s class",
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


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "floating"
    return "bool" if dtype == torch.bool else "integer"


def _dtype_changes(expected: Mapping, infos: Mapping, path: str, role: str) -> list[Diagnostic]:
    """L102 for tensors of another kind than the model's; a warning for floating dtype changes."""
    changed = [k for k, info in infos.items() if info.dtype != expected[k].dtype]
    wrong = [k for k in changed if _kind(infos[k].dtype) != _kind(expected[k].dtype)]
    if wrong:
        shown = [f"{k} (file {infos[k].dtype}, {role} {expected[k].dtype})" for k in wrong]
        fail(
            "L102",
            f"'{path}' holds tensors of another kind than the {role}'s: {listing(shown)}",
            subject=path,
            hint=f"a floating {role} takes floating weights; save the weights from this {role} "
            "(quantized integer or complex tensors are not weights it can load)",
        )
    if not changed:
        return []
    pairs = sorted({f"{infos[k].dtype} -> {expected[k].dtype}" for k in changed})
    return [
        warning(
            "L102",
            f"'{path}': {len(changed)} tensor(s) are cast to the {role}'s dtype "
            f"({', '.join(pairs)}), e.g. '{changed[0]}'",
            subject=path,
            hint=f"cast the {role} first ({role}.to(dtype)) to keep the file's precision",
        )
    ]


# ----- copying ------------------------------------------------------------------------------------


def _load_group(model: torch.nn.Module, names: list[str], value: torch.Tensor) -> None:
    """Copy ``value`` into the tensor ``names`` share; a meta tensor is replaced under every name
    by one new tensor, so a tie stays a tie."""
    owner, _, attr = names[0].rpartition(".")
    target = getattr(model.get_submodule(owner), attr)
    if not target.is_meta:
        with torch.no_grad():
            target.copy_(value)
        return
    value = value.to(target.dtype)
    if isinstance(target, torch.nn.Parameter):
        value = torch.nn.Parameter(value, requires_grad=target.requires_grad)
    for name in names:
        owner, _, attr = name.rpartition(".")
        setattr(model.get_submodule(owner), attr, value)


# ----- wording ------------------------------------------------------------------------------------


_PROTOCOL_REMARK = re.compile(r"Detected pickle protocol (\d+)")


def _torch_load(file: Path, protocols: list[int]) -> Any:
    """``torch.load`` of tensors only. torch remarks on a pickle protocol other than its own
    (2) with a warning: that remark goes to ``protocols`` (an error names it), not to stderr;
    any other warning is shown as usual."""
    remarks: list[warnings.WarningMessage] = []
    try:
        return _recording_warnings(file, remarks)
    finally:
        for remark in remarks:
            found = _PROTOCOL_REMARK.search(str(remark.message))
            if found:
                protocols.append(int(found.group(1)))
            else:
                message, category = remark.message, remark.category
                warnings.warn_explicit(message, category, remark.filename, remark.lineno)


def _recording_warnings(file: Path, remarks: list[warnings.WarningMessage]) -> Any:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        finally:
            remarks.extend(seen)


def _refused(path: str, text: str, code: str, protocols: list[int]) -> None:
    """torch.load(weights_only=True) refused the file: a pickled object, or not a torch file."""
    # torch words it two ways: a global not allowed, or one of a module it blocks (os, sys).
    found = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", text, re.IGNORECASE)
    if found:
        fail(
            code,
            f"'{path}' holds a pickled {found.group(1)}; only tensors and containers are loaded",
            subject=path,
            hint="arbitrary pickle is never loaded; save a state dict, e.g. model.state_dict()",
        )
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    reason = detail.group(1).strip() if detail else "not a torch.save file"
    hint = None
    if protocols:
        reason += f" (it is pickled with protocol {protocols[0]})"
        hint = "save it with torch.save's default protocol, or as .safetensors"
    fail(code, f"cannot read '{path}': {reason}", subject=path, hint=hint)


def _counted(keys: list[str], one: str, many: str) -> str:
    return f"{len(keys)} {one if len(keys) == 1 else many} ({listing(keys)})"
