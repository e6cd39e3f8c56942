"""A function mapped over a file's pieces in order: in this process, or in worker processes."""

from __future__ import annotations

import signal
from itertools import chain, islice
from typing import Any, Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Below this many characters, worker processes cost more to start than they save.
PARALLEL_CHARACTERS = 1 << 20

# A worker's function and the arguments every call shares, set once as it starts.
_WORK: dict[str, tuple[Callable, tuple]] = {}


def jobs_for(text: str, jobs: int) -> int:
    """``jobs`` for a text of a megabyte or more; 1 (this process) for a shorter one."""
    return jobs if len(text) >= PARALLEL_CHARACTERS else 1


def mapped(
    function: Callable[..., Result], items: Iterable[Item], jobs: int, *shared: Any
) -> Iterator[Result]:
    """``function(item, *shared)`` for each item, in order; with ``jobs`` > 1, in up to that
    many worker processes, never more than there are items (``function`` must be a module's
    own function; ``shared`` reaches each worker once, not with every item). The workers start
    as the first items are made, so that they work while the rest are. Where no worker
    process can be made (no semaphores, no fork), in this process."""
    rest = iter(items)
    first = list(islice(rest, jobs)) if jobs > 1 else []  # as many workers as these
    items = chain(first, rest)
    pool = _pool(len(first), function, shared)
    if pool is None:
        for item in items:
            yield function(item, *shared)
        return
    from multiprocessing import active_children

    children_before = set(active_children())
    sent: list = []  # what the pool took of them, for the work done here should it fail
    try:
        try:
            # The workers start with the first item and work while the rest are made.
            results = pool.map(_call, _noted(items, sent))
        except OSError:  # no process could be made (out of processes): work here instead
            _stop_started(pool, children_before)
            results = (function(item, *shared) for item in chain(sent, items))
        yield from results
    finally:  # also on an interrupt or an error: queued pieces are dropped, not worked
        pool.shutdown(wait=True, cancel_futures=True)


def _noted(items: Iterator[Item], sent: list) -> Iterator[Item]:
    """The items, each noted in ``sent`` as it is taken."""
    for item in items:
        sent.append(item)
        yield item


def _pool(jobs: int, function: Callable, shared: tuple) -> Any:
    """A pool of ``jobs`` workers, each keeping ``function`` and ``shared``; None for fewer
    than two, or where the platform cannot make one."""
    if jobs < 2:
        return None
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_all_start_methods, get_context

    # fork: a worker starts with this process's imports; elsewhere each imports anew.
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    try:
        return ProcessPoolExecutor(
            jobs, mp_context=get_context(method), initializer=_keep, initargs=(function, shared)
        )
    except (OSError, ImportError, NotImplementedError):  # no working semaphores here
        return None


def _stop_started(pool: Any, children_before: set) -> None:
    """Stop the workers a pool started before one failed to start: nothing else would tell
    them to (its manager thread never ran), and the command would wait for them at exit."""
    from multiprocessing import active_children

    pool.shutdown(wait=False, cancel_futures=True)
    for child in set(active_children()) - children_before:
        child.terminate()
        child.join()


def _keep(function: Callable, shared: tuple) -> None:
    # Ctrl-C is the command's to handle: a worker waiting for work would print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORK["call"] = (function, shared)


def _call(item: Any) -> Any:
    function, shared = _WORK["call"]
    return function(item, *shared)
