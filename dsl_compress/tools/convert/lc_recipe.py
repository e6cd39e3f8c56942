"""An llm-compressor recipe read as llm-compressor reads it (``Recipe.from_dict``): the
modifiers of every ``<x>_stage`` → ``<y>_modifiers`` mapping, in file order, each with the
line it starts on; what llm-compressor skips silently is a note here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from dsl_compress.tools.convert.part import note
from dsl_compress.diagnostics import CompressionError, Diagnostic, Span, fail, located, warning


@dataclass(frozen=True)
class Modifier:
    """One modifier: its class name, its arguments, the stage it is in and where it starts
    (``recipe.yaml:12``); ``key_lines`` holds the line of each argument."""

    kind: str
    args: Mapping[str, Any]
    stage: str
    origin: str
    key_lines: Mapping[str, int]

    def at(self, key: str) -> str:
        """The origin of one argument (``config_groups.group_0`` one level down; its parent's,
        else the modifier's own, when it has no line of its own)."""
        path = self.origin.rpartition(":")[0]
        for known in (key, key.partition(".")[0]):
            if known in self.key_lines:
                return f"{path}:{self.key_lines[known]}"
        return self.origin

    def knob_notes(self, keys, what: str) -> list[Diagnostic]:
        """K151 at each of ``keys`` the modifier sets: calibration or algorithm knobs, which
        ``what`` (e.g. "steers the algorithm") and are not settings."""
        return [
            note(
                "K151",
                self.at(key),
                f"{key}={self.args[key]!r} {what}, not a setting: not converted",
            )
            for key in keys
            if key in self.args
        ]


def read_recipe(text: str, path: str) -> tuple[tuple[Modifier, ...], tuple[Diagnostic, ...]]:
    """The modifiers of a recipe and the notes about what llm-compressor would skip."""
    try:
        import yaml
    except ImportError:
        fail(
            "K150",
            "reading an llm-compressor recipe needs PyYAML",
            hint="pip install 'dsl-compress[convert]'",
        )
    try:
        return _read_modifiers(yaml, text, path)
    except RecursionError:  # PyYAML composes, serializes and loads nested values recursively
        fail("K150", f"{path}: the recipe nests its values too deeply to read")


def _read_modifiers(yaml: Any, text: str, path: str) -> tuple[tuple, tuple]:
    root = _compose(yaml, text, path)
    if root is None or not isinstance(root, yaml.MappingNode):
        fail("K150", f"{path}: a recipe is a YAML mapping of '<x>_stage' keys")
    modifiers, notes = [], []
    for key, value in root.value:
        if _is_mapping_key(yaml, key, value, "_stage"):
            modifiers += _stage_modifiers(yaml, key.value, value, path, notes)
        else:
            notes.append(_skipped(path, key, "a top-level key that does not end in '_stage'"))
    return tuple(modifiers), tuple(notes)


def _compose(yaml: Any, text: str, path: str) -> Any:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        span = Span(path, line, column, line, column + 1)
        raise CompressionError(
            [located("K150", f"the recipe is not valid YAML: {problem}", span)]
        ) from None


def _is_mapping_key(yaml: Any, key: Any, value: Any, suffix: str) -> bool:
    return str(key.value).endswith(suffix) and isinstance(value, yaml.MappingNode)


def _stage_modifiers(yaml: Any, stage: str, node: Any, path: str, notes: list) -> list[Modifier]:
    modifiers = []
    for key, value in node.value:
        if not _is_mapping_key(yaml, key, value, "_modifiers"):
            notes.append(_skipped(path, key, f"a key of {stage} that does not end in '_modifiers'"))
            continue
        for kind, args in value.value:
            modifiers.append(_modifier(yaml, stage, kind, args, path))
    return modifiers


def _modifier(yaml: Any, stage: str, kind: Any, args: Any, path: str) -> Modifier:
    origin = f"{path}:{kind.start_mark.line + 1}"
    if not isinstance(args, yaml.MappingNode):
        values = yaml.safe_load(yaml.serialize(args)) if args is not None else None
        if values not in (None, {}):
            fail("K150", f"{origin}: the arguments of {kind.value} must be a mapping")
        return Modifier(str(kind.value), {}, stage, origin, {})
    values = yaml.safe_load(yaml.serialize(args)) or {}
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in args.value}
    # One level down too (a config group, a scheme's preset): 'config_groups.group_0'.
    for key, value in args.value:
        if isinstance(value, yaml.MappingNode):
            for inner, _ in value.value:
                lines[f"{key.value}.{inner.value}"] = inner.start_mark.line + 1
    return Modifier(str(kind.value), values, stage, origin, lines)


def _skipped(path: str, key: Any, what: str) -> Diagnostic:
    line = key.start_mark.line + 1
    looks_flat = str(key.value).endswith("Modifier")
    hint = (
        "nest it: quant_stage: {quant_modifiers: {" + f"{key.value}" + ": {...}}}"
        if looks_flat
        else "llm-compressor ignores it; remove it or nest it under a stage"
    )
    diag = warning(
        "K155",
        f"'{key.value}' is {what}: llm-compressor skips it silently (0 modifiers from it)",
        hint=hint,
    )
    return Diagnostic(
        diag.code, diag.severity, diag.message, Span(path, line, 1, line, 2), hint=hint
    )
