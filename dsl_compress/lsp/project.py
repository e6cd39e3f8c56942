"""Which manifest a rules file is checked against: --manifest, else the nearest project
setting (`dsl-compress.toml`, or `[tool.dsl-compress]` in `pyproject.toml`) naming one; each
manifest read once into its torch-free stand-in, again when the file changes."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsl_compress.diagnostics import CompressionError, error, fail
from dsl_compress.io.manifest_read import load_manifest, stand_in_model
from dsl_compress.stand_in import StandInModule

if sys.version_info >= (3, 11):
    import tomllib
else:  # the lsp extra installs tomli on Python 3.10
    import tomli as tomllib

SETTINGS_FILE = "dsl-compress.toml"
PYPROJECT = "pyproject.toml"


@dataclass
class Project:
    """The manifests the server checks against: ``manifest`` (--manifest) for every file, else
    each file's own by convention; ``_models`` caches stand-ins by path and modification time."""

    manifest: Path | None = None
    _models: dict[Path, tuple[float, StandInModule]] = field(default_factory=dict)

    def manifest_for(self, rules_file: Path) -> Path | None:
        """The manifest for a rules file; raises CompressionError (L104) for a settings file
        that does not read."""
        if self.manifest is not None:
            return self.manifest
        return find_manifest(rules_file.parent)

    def model_for(self, rules_file: Path) -> StandInModule | None:
        """The stand-in of the file's manifest, or None; a manifest that does not read is the
        CompressionError load_manifest raises."""
        manifest = self.manifest_for(rules_file)
        if manifest is None:
            return None
        path = manifest.resolve()
        stamp = _modified(path)
        cached = self._models.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, stand_in_model(load_manifest(path)))
            self._models[path] = cached
        return cached[1]


def find_manifest(folder: Path) -> Path | None:
    """The manifest the nearest settings file names, searching ``folder`` and its parents: a
    `dsl-compress.toml` with ``manifest = "..."``, or a `pyproject.toml` holding a
    ``[tool.dsl-compress]`` table (that table ends the search, with or without the key)."""
    for place in (folder, *folder.parents):
        own = place / SETTINGS_FILE
        if own.is_file():
            return _named(own, _read_toml(own))
        pyproject = place / PYPROJECT
        if pyproject.is_file():
            table = _read_toml(pyproject).get("tool", {}).get("dsl-compress")
            if isinstance(table, dict):
                return _named(pyproject, table)
    return None


def _named(settings: Path, table: dict[str, Any]) -> Path | None:
    manifest = table.get("manifest")
    if manifest is None:
        return None
    if not isinstance(manifest, str):
        fail("L104", f"{settings}: manifest must be a path string, got {manifest!r}")
    return settings.parent / manifest


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        reason = str(exc)
    except RecursionError:  # tomllib reads nested arrays and tables recursively
        reason = "it nests arrays or tables too deeply to read"
    hint = 'it names the manifest as manifest = "manifest.json"'
    raise CompressionError([error("L104", f"cannot read {path}: {reason}", hint=hint)])


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0
