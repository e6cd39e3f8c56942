"""Test helpers for output files: read a safetensors output in either form (one file or Hugging
Face shards with an index), and a disk that fails for the files of one name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file


def tensor_files(folder: Path, prefix: str) -> list[Path]:
    """The files of ``<prefix>``: '<prefix>.safetensors', or the shards its index names."""
    index = Path(folder) / f"{prefix}.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [Path(folder) / name for name in sorted(set(weight_map.values()))]
    return [Path(folder) / f"{prefix}.safetensors"]


def read_tensors(folder: Path, prefix: str) -> dict[str, torch.Tensor]:
    """Every tensor of ``<prefix>``, from one file or from its shards."""
    state: dict[str, torch.Tensor] = {}
    for path in tensor_files(folder, prefix):
        state |= load_file(path)
    return state


def read_metadata(folder: Path, prefix: str) -> dict[str, str]:
    """The ``__metadata__`` of ``<prefix>`` (every shard carries the same)."""
    with safe_open(tensor_files(folder, prefix)[0], "pt") as handle:
        return handle.metadata() or {}


def fail_writes_to(monkeypatch, suffix: str, exc: BaseException) -> None:
    """``os.pwrite`` raises ``exc`` on files whose name ends with ``suffix``, as a disk that
    fills up while writing them: the files are opened with ``os.open``, which tells the name."""
    real_open, real_pwrite = os.open, os.pwrite
    names: dict[int, str] = {}

    def opening(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        names[fd] = os.fspath(path)
        return fd

    def pwrite(fd, data, offset):
        if names.get(fd, "").endswith(suffix):
            raise exc
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "pwrite", pwrite)
