"""Validation of manifest files: structure, names, shapes, before a model is rebuilt from one."""

from __future__ import annotations
import inspect
from typing import Any
from dsl_compress.diagnostics import Diagnostic, error

FORMAT = "dsl-compress-manifest"
VERSION = 1

_KINDS = {kind.name for kind in type(inspect.Parameter.POSITIONAL_ONLY)}
_SHAPE_KEYS = ("inputs", "outputs", "input_kwargs")


def check_manifest(manifest: Any, where: str) -> list[Diagnostic]:
    """Every L104 problem of a manifest, each naming the module and field it is in."""
    problem = _header_problem(manifest)
    if problem:
        return [error("L104", problem, subject=where, hint=_REWRITE)]
    diags: list[Diagnostic] = []
    tensors: dict[str, tuple[str, Any]] = {}
    names: dict[str, dict] = {}
    for i, entry in enumerate(manifest["modules"]):
        label = f"{where}: modules[{i}]"
        problems = _entry_problems(entry, i, names, tensors)
        diags.extend(error("L104", p, subject=label, hint=_REWRITE) for p in problems)
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            # Known even when broken, so its children report their own problems only.
            names.setdefault(entry["name"], entry)
        if not problems:
            _note_tensors(entry, tensors)
    return diags


_REWRITE = "write it with `dsl-compress manifest --model SPEC -o manifest.json`"


def _header_problem(manifest: Any) -> str | None:
    if not isinstance(manifest, dict):
        return f"a manifest is a JSON object, not {_json_kind(manifest)}"
    if manifest.get("format") != FORMAT:
        return f"'format' is {manifest.get('format')!r}, not '{FORMAT}'"
    if manifest.get("version") != VERSION:
        return f"manifest version {manifest.get('version')!r} is not supported (only {VERSION})"
    modules = manifest.get("modules")
    if not isinstance(modules, list) or not modules:
        return f"'modules' must be a non-empty list, not {_json_kind(modules)}"
    return None


def _entry_problems(entry: Any, i: int, names: dict, tensors: dict) -> list[str]:
    if not isinstance(entry, dict):
        return [f"a module entry is an object, not {_json_kind(entry)}"]
    name, type_name = entry.get("name"), entry.get("type")
    if not isinstance(name, str) or (i == 0) != (name == ""):
        return [f"'name' {name!r}: the first module is the root '', every other one is named"]
    if name in names:
        return [f"module '{name}' is listed twice"]
    parent, _, child = name.rpartition(".")
    if i and not child:
        return [f"module name '{name}' ends with '.'"]
    if i and parent not in names:
        return [f"module '{name}' comes before its parent '{parent}'"]
    if not isinstance(type_name, str) or not type_name.isidentifier():
        return [f"module '{name}': 'type' must be a class name, not {type_name!r}"]
    if "alias_of" in entry:
        target = names.get(entry["alias_of"])
        if target is None or "alias_of" in target:
            return [f"module '{name}': 'alias_of' {entry['alias_of']!r} is no earlier module"]
        return []
    return [f"module '{name}': {p}" for p in _tensor_problems(entry, tensors)]


def _tensor_problems(entry: dict, tensors: dict) -> list[str]:
    problems = []
    for kind in ("parameters", "buffers"):
        table = entry.get(kind)
        if not isinstance(table, dict):
            problems.append(f"'{kind}' must be an object, not {_json_kind(table)}")
            continue
        for key, shape in table.items():
            if not key or "." in key:
                problems.append(f"{kind} name {key!r} must be non-empty, without '.'")
            elif shape is not None and not _is_shape(shape):
                problems.append(f"{kind}.{key} must be a list of sizes or null, not {shape!r}")
    tied = entry.get("tied", {})
    if not isinstance(tied, dict):
        return problems + [f"'tied' must be an object, not {_json_kind(tied)}"]
    for key, full in tied.items():
        kind = "parameters" if key in (entry.get("parameters") or {}) else "buffers"
        if tensors.get(full) != (kind, (entry.get(kind) or {}).get(key)):
            problems.append(f"tied.{key}: {full!r} is no earlier {kind[:-1]} of the same shape")
    problems.extend(_forward_problems(entry.get("forward")))
    problems.extend(f"'{k}' holds {entry[k]!r}" for k in _SHAPE_KEYS if not _is_io(entry.get(k)))
    if not _is_shape([entry.get("calls", 0)]):
        problems.append(f"'calls' must be a count, not {entry['calls']!r}")
    return problems


def _forward_problems(forward: Any) -> list[str]:
    if forward is None:
        return []
    pairs = isinstance(forward, list) and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and p[1] in _KINDS
        for p in forward
    )
    try:
        if pairs:
            make_signature(forward)
            return []
    except (TypeError, ValueError):
        pass
    return [f"'forward' must list [name, kind] pairs of a valid signature, not {forward!r}"]


def _note_tensors(entry: dict, tensors: dict) -> None:
    prefix = f"{entry['name']}." if entry["name"] else ""
    for kind in ("parameters", "buffers"):
        for key, shape in (entry.get(kind) or {}).items():
            tensors[prefix + key] = (kind, shape)


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value
    )


def _is_io(value: Any) -> bool:
    """Recorded input/output shapes: shapes, null, and lists or objects of them."""
    if value is None or _is_shape(value):
        return True
    if isinstance(value, list):
        return all(_is_io(v) for v in value)
    return isinstance(value, dict) and all(_is_io(v) for v in value.values())


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number" if isinstance(value, (int, float)) else "a value")


def make_signature(params: list[list[str]]) -> inspect.Signature:
    return inspect.Signature(
        [inspect.Parameter(n, getattr(inspect.Parameter, k)) for n, k in params]
    )
