"""NNI 3.0 selection keys as .rules selectors: op_names as exact names, op_names_re (re.match,
anchored at the start only) as whole-name regexes, op_types as types, exclude_op_* as excepts."""

from __future__ import annotations

import re
from typing import Any, Mapping

from dsl_compress.tools.convert.selectors import name_selector, prefix_regex, regex_selector

_TYPE_WORD = re.compile(r"[A-Z][A-Za-z0-9_]*$")


def op_regex(pattern: str) -> str:
    """An op_names_re entry (NNI matches it with re.match) as a whole-name regex selector."""
    return regex_selector(prefix_regex(pattern))


def module_selectors(config: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """(path, scope) selectors whose union is the config's selection before its excludes:
    ``(op_names ∪ op_names_re) ∩ op_types``, the intersection written ``TYPE in NAME``."""
    names = [name_selector(n) for n in config.get("op_names") or []]
    names += [op_regex(p) for p in config.get("op_names_re") or []]
    types = list(dict.fromkeys(config.get("op_types") or []))
    if not types:
        return [(n, None) for n in names]
    if not names:
        return [(t, None) for t in types]
    return [(t, n) for t in types for n in names]


def selector_text(selector: tuple[str, str | None], target: str | None = None) -> str:
    """``path[.target][ in scope]``: the target goes on the path, as in ``Linear.weight in fc1``."""
    path, scope = selector
    text = f"{path}.{target}" if target else path
    return f"{text} in {scope}" if scope else text


def specificity(selector: tuple[str, str | None]) -> float:
    """How .rules ranks the selector: exact name 3, type in a pattern 2.5, pattern or regex 2,
    type 1 (resolve/selectors.py's levels)."""
    path, scope = selector
    if scope is not None:
        return 2.5
    if path.startswith('re"'):
        return 2
    return 1 if _TYPE_WORD.match(path) and "." not in path else 3


def except_selectors(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The config's exclude_op_* keys as selectors of an except clause (or exclude statements)."""
    found = [name_selector(n) for n in config.get("exclude_op_names") or []]
    found += [op_regex(p) for p in config.get("exclude_op_names_re") or []]
    found += list(config.get("exclude_op_types") or [])
    return tuple(dict.fromkeys(found))


def excludes_of(config: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The exclude_op_* keys of a config, each as a tuple (for comparing configs)."""
    keys = ("exclude_op_names", "exclude_op_names_re", "exclude_op_types")
    return {key: tuple(config.get(key) or ()) for key in keys}
