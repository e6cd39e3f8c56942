"""Model manifests: a model's module tree and tensor shapes as JSON, and a meta model rebuilt from
one (to apply to); reading one without torch is ``manifest_read``'s."""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Any

import torch

from dsl_compress.diagnostics import CompressionError, fail
from dsl_compress.engine.calibration import call_model
from dsl_compress.io.atomic import write_text_atomically
from dsl_compress.io.manifest_check import FORMAT, VERSION, check_manifest, make_signature
from dsl_compress.io.manifest_read import load_manifest, raise_all
from dsl_compress.schema.registry import type_name_of
from dsl_compress.stand_in import cannot_run

__all__ = [
    "build_manifest",
    "save_manifest",
    "load_manifest",
    "model_from_manifest",
    "manifest_class",
]


def build_manifest(model: torch.nn.Module, example_input: Any = None) -> dict:
    """Module names (aliases included), type names, tensor shapes and, given an input, I/O shapes.

    A tensor shared by two modules (tied weights) is recorded once; later owners name it in
    ``"tied"``, so a rebuilt model shares it too and tied-weight checks resolve the same way.
    """
    first_name: dict[int, str] = {}
    first_tensor: dict[int, str] = {}
    modules = []
    for name, module in model.named_modules(remove_duplicate=False):
        entry: dict[str, Any] = {"name": name, "type": type_name_of(module)}
        if id(module) in first_name:
            entry["alias_of"] = first_name[id(module)]
        else:
            first_name[id(module)] = name
            entry.update(_tensors(name, module, first_tensor))
        modules.append(entry)
    if example_input is not None:
        _record_shapes(model, example_input, modules)
    return {"format": FORMAT, "version": VERSION, "modules": modules}


def save_manifest(manifest: dict, path: str | Path) -> None:
    """Write a checked manifest as JSON, one module per line; the file appears whole or not at all."""
    raise_all(check_manifest(manifest, str(path)))
    lines = ",\n".join("    " + json.dumps(m) for m in manifest["modules"])
    text = (
        f'{{"format": {json.dumps(manifest["format"])}, "version": {manifest["version"]}, '
        f'"modules": [\n{lines}\n]}}\n'
    )
    write_text_atomically(Path(path), text)


def model_from_manifest(manifest: dict) -> torch.nn.Module:
    """A module tree on the meta device with the manifest's names, class names and tensor shapes.

    It takes no memory and cannot run, but selection, settings and plans resolve on it exactly
    as on the model the manifest was built from.
    """
    raise_all(check_manifest(manifest, "manifest"))
    built: dict[str, torch.nn.Module] = {}
    tensors: dict[str, torch.Tensor] = {}
    for entry in manifest["modules"]:
        name = entry["name"]
        if "alias_of" in entry:
            module = built[entry["alias_of"]]
        else:
            module = _meta_module(entry, tensors)
        if name:
            parent, _, child = name.rpartition(".")
            built[parent].add_module(child, module)
        built[name] = module
    return built[""]


# ----- building -----------------------------------------------------------------------------


def _tensors(name: str, module: torch.nn.Module, first: dict[int, str]) -> dict[str, Any]:
    found: dict[str, Any] = {"parameters": {}, "buffers": {}}
    tied = {}
    for kind, table in (("parameters", module._parameters), ("buffers", module._buffers)):
        for key, tensor in table.items():
            found[kind][key] = None if tensor is None else list(tensor.shape)
            full = f"{name}.{key}" if name else key
            if tensor is not None and first.setdefault(id(tensor), full) != full:
                tied[key] = first[id(tensor)]
    if tied:
        found["tied"] = tied
    found["forward"] = _signature(module)
    return found


def _signature(module: torch.nn.Module) -> list[list[str]] | None:
    """forward()'s parameters as [name, kind] pairs: _input_ targets are named by them."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    return [[p.name, p.kind.name] for p in params]


def _record_shapes(model: torch.nn.Module, example_input: Any, modules: list[dict]) -> None:
    """One no-grad forward in eval mode; each module's first call is kept, and its call count."""
    seen: dict[int, dict] = {}
    for entry, (_, module) in zip(modules, model.named_modules(remove_duplicate=False)):
        if "alias_of" not in entry:
            seen[id(module)] = entry
            entry["calls"] = 0
    unique = [m for _, m in model.named_modules()]
    handles = [m.register_forward_hook(_recorder(seen), with_kwargs=True) for m in unique]
    training = [m.training for m in unique]
    try:
        model.eval()
        with torch.no_grad():
            call_model(model, example_input)
    except CompressionError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's forward may raise anything
        fail(
            "X803",
            f"the model's forward() raised {type(exc).__name__} on the example input: {exc}",
            subject="example input",
            hint="give an input the model accepts: a tensor, a tuple of tensors or a dict",
        )
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in zip(unique, training):
            module.training = flag


def _recorder(entries: dict[int, dict]):
    def record(module, args, kwargs, output) -> None:
        entry = entries[id(module)]
        entry["calls"] += 1
        if entry["calls"] == 1:
            entry["inputs"] = [_shapes(a) for a in args]
            if any(isinstance(v, torch.Tensor) for v in kwargs.values()):
                entry["input_kwargs"] = {k: _shapes(v) for k, v in kwargs.items()}
            entry["outputs"] = _shapes(output)

    return record


def _shapes(value: Any) -> Any:
    """A tensor's shape as a list; tuples, lists and dicts of tensors as the same containers."""
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, (tuple, list)):
        return [_shapes(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _shapes(v) for k, v in value.items()}
    return None


# ----- rebuilding ---------------------------------------------------------------------------


class ManifestModule(torch.nn.Module):
    """Base of the classes rebuilt from a manifest: structure only, no computation."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        cannot_run(type(self).__name__)


@functools.cache
def manifest_class(type_name: str) -> type:
    """One class per type name, so type selectors and registries see the original class name."""
    return type(type_name, (ManifestModule,), {"__module__": __name__})


def _meta_module(entry: dict, tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    module = manifest_class(entry["type"])()
    prefix = f"{entry['name']}." if entry["name"] else ""
    tied = entry.get("tied", {})
    for kind, register in (
        ("parameters", module.register_parameter),
        ("buffers", module.register_buffer),
    ):
        for key, shape in entry[kind].items():
            value = tensors[tied[key]] if key in tied else _meta(shape, kind == "parameters")
            register(key, value)
            tensors[prefix + key] = value
    if entry.get("forward") is not None:
        module.forward = _stub_forward(entry["type"], entry["forward"])
    return module


def _meta(shape: list[int] | None, parameter: bool) -> torch.Tensor | None:
    if shape is None:
        return None
    tensor = torch.empty(shape, device="meta")
    return torch.nn.Parameter(tensor) if parameter else tensor


def _stub_forward(type_name: str, params: list[list[str]]):
    """A forward() that refuses to run but has the original signature, for _input_ names."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        cannot_run(type_name)

    forward.__signature__ = make_signature(params)  # type: ignore[attr-defined]
    return forward


# ----- checking -----------------------------------------------------------------------------
