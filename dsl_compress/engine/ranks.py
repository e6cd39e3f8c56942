"""Which process of a distributed streamed run computes which tensors: balanced by bytes, with
every tensor whose mask depends on another's (a dependency group, an align) on one process."""

from __future__ import annotations

import heapq
from typing import Iterable, Mapping, Sequence


def assign_ranks(
    sizes: Mapping[str, int], linked: Iterable[Sequence[str]], world: int
) -> dict[str, int]:
    """Each tensor's rank, 0 .. ``world``-1, the same on every process.

    ``sizes`` are the tensors' bytes in state-dict order; ``linked`` lists names that must
    share a process (their masks are computed from each other). The linked sets, and every
    other tensor on its own, go largest first to the rank with the fewest bytes so far (the
    lowest rank among equals): a greedy balance, deterministic from the names and sizes alone.
    """
    parent = {name: name for name in sizes}
    for names in linked:
        names = [n for n in names if n in parent]
        for name in names[1:]:
            _union(parent, names[0], name)
    parts: dict[str, list[str]] = {}
    for name in sizes:
        parts.setdefault(_root(parent, name), []).append(name)
    order = sorted(parts.values(), key=lambda names: (-sum(sizes[n] for n in names), names[0]))
    loads = [(0, rank) for rank in range(world)]
    owner: dict[str, int] = {}
    for names in order:
        load, rank = heapq.heappop(loads)
        owner.update((name, rank) for name in names)
        heapq.heappush(loads, (load + sum(sizes[n] for n in names), rank))
    return owner


def _root(parent: dict[str, str], name: str) -> str:
    while parent[name] != name:
        parent[name] = parent[parent[name]]
        name = parent[name]
    return name


def _union(parent: dict[str, str], a: str, b: str) -> None:
    ra, rb = _root(parent, a), _root(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)
