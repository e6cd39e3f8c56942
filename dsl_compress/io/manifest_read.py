"""Manifests read without torch: a checked manifest file, and the stand-in model built from one
that lint, compile and explain resolve against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from dsl_compress.diagnostics import CompressionError, Diagnostic, fail
from dsl_compress.io.manifest_check import check_manifest, make_signature
from dsl_compress.schema.config_text import bounded_json
from dsl_compress.stand_in import StandInModule, StandInTensor, stand_in_class


def load_manifest(path: str | Path) -> dict:
    """Read and check a manifest file; every problem is an L104 diagnostic naming where it is."""
    file = Path(path)
    try:
        manifest = bounded_json(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        fail(
            "L104",
            f"'{path}' is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            subject=str(path),
        )
    except FileNotFoundError:
        fail("L104", f"no manifest file '{path}'", subject=str(path))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, too deep, 4,300+ digits
        fail("L104", f"cannot read '{path}': {exc}", subject=str(path))
    raise_all(check_manifest(manifest, str(path)))
    return manifest


def stand_in_model(manifest: dict) -> StandInModule:
    """The manifest's module tree as torch-free stand-ins with its names, type names, tensor
    shapes and forward() signatures: selection, settings, plans and the checks of shapes
    resolve on it exactly as on the model the manifest was built from (aliases are one
    stand-in under two names, tied tensors one stand-in tensor)."""
    raise_all(check_manifest(manifest, "manifest"))
    built: dict[str, StandInModule] = {}
    tensors: dict[str, StandInTensor | None] = {}
    for entry in manifest["modules"]:
        name = entry["name"]
        module = built[entry["alias_of"]] if "alias_of" in entry else _stand_in(entry, tensors)
        if name:
            parent, _, child = name.rpartition(".")
            built[parent]._modules[child] = module
        built[name] = module
    return built[""]


def _stand_in(entry: dict, tensors: dict[str, StandInTensor | None]) -> StandInModule:
    forward = entry.get("forward")
    module = stand_in_class(entry["type"])(None if forward is None else make_signature(forward))
    prefix = f"{entry['name']}." if entry["name"] else ""
    tied = entry.get("tied", {})
    for kind, table in (("parameters", module._parameters), ("buffers", module._buffers)):
        for key, shape in entry[kind].items():
            value = tensors[tied[key]] if key in tied else _tensor(shape)
            table[key] = value
            tensors[prefix + key] = value
    return module


def _tensor(shape: list[int] | None) -> StandInTensor | None:
    return None if shape is None else StandInTensor(tuple(shape))


def raise_all(diagnostics: Iterable[Diagnostic]) -> None:
    """Raise the manifest's problems (every one an error) as one CompressionError."""
    found = list(diagnostics)
    if found:
        raise CompressionError(found)
