"""A function mapped over a file's pieces in order: in this process, or in worker processes."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Below this many characters, worker processes cost more to start than they save.
PARALLEL_CHARACTERS = 1 << 20

# A worker's function and the arguments every call shares, set once as it starts.
_WORK: dict[str, tuple[Callable, tuple]] = {}


def mapped(
    function: Callable[..., Result], items: Iterable[Item], jobs: int, *shared: Any
) -> Iterator[Result]:
    """``function(item, *shared)`` for each item, in order; with ``jobs`` > 1, in that many
    worker processes (``function`` must be a module's own function; ``shared`` reaches each
    worker once, not with every item)."""
    if jobs <= 1:
        for item in items:
            yield function(item, *shared)
        return
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_all_start_methods, get_context

    # fork: a worker starts with this process's imports; elsewhere each imports anew.
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    context = get_context(method)
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_keep, initargs=(function, shared)
    ) as pool:
        yield from pool.map(_call, items)


def _keep(function: Callable, shared: tuple) -> None:
    _WORK["call"] = (function, shared)


def _call(item: Any) -> Any:
    function, shared = _WORK["call"]
    return function(item, *shared)
