"""The taylor metric's fp32 totals on disk during a streamed run: one file per target in a
temporary folder, so the gradient pass and the masks after it hold one target's score at a
time instead of an fp32 copy of every target (twice a bf16 model's size)."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator, MutableMapping
from pathlib import Path

import torch

from dsl_compress.engine.prune import add_taylor_term
from dsl_compress.plan import Key


class SpilledTotals:
    """Per-target totals of (w * dL/dw)^2, each in a file of a temporary folder that is
    removed with this object (or at exit); a target no gradient reached totals zeros."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self._shapes = shapes
        self._files = {name: f"{i}.f32" for i, name in enumerate(shapes)}
        self._written: set[str] = set()
        self._folder = Path(tempfile.mkdtemp(prefix="dsl-compress-taylor-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._folder, True)

    def __contains__(self, name: str) -> bool:
        return name in self._shapes

    def add(self, name: str, weight: torch.Tensor, grad: torch.Tensor) -> None:
        """One batch's term added to ``name``'s total: read, added in memory, written back."""
        total = self.total(name)
        add_taylor_term(total, weight, grad)
        with open(self._folder / self._files[name], "wb") as handle:
            handle.write(memoryview(total.numpy()).cast("B"))
        self._written.add(name)

    def total(self, name: str) -> torch.Tensor:
        """``name``'s total so far, read into memory of its own."""
        total = torch.zeros(self._shapes[name], dtype=torch.float32)
        if name in self._written:
            with open(self._folder / self._files[name], "rb") as handle:
                handle.readinto(memoryview(total.numpy()).cast("B"))
        return total

    def forget(self, name: str) -> None:
        """``name``'s file removed: its score is needed no more."""
        if name in self._written:
            (self._folder / self._files[name]).unlink(missing_ok=True)
            self._written.discard(name)


class SpilledMeans(MutableMapping):
    """The scores by plan key, each its total over ``steps`` batches (``total / steps``, as the
    in-memory engine divides), read from disk on each lookup; deleting a key drops its file
    once no other key (a tied name) reads it."""

    def __init__(self, totals: SpilledTotals, names: dict[Key, str], steps: int):
        self._totals, self._names, self._steps = totals, dict(names), steps

    def __getitem__(self, key: Key) -> torch.Tensor:
        return self._totals.total(self._names[key]) / self._steps

    def __setitem__(self, key: Key, value: torch.Tensor) -> None:
        raise TypeError("spilled taylor scores are read-only")

    def __delitem__(self, key: Key) -> None:
        name = self._names.pop(key)
        if name not in self._names.values():
            self._totals.forget(name)

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)
