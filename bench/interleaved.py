"""Timings of several functions taken in alternating rounds, so a noisy machine's drift hits them alike."""

from __future__ import annotations

import statistics
from typing import Callable, Mapping

from measure import median_time


def interleaved(
    fns: Mapping[str, Callable[[], object]], repeats: int, rounds: int
) -> dict[str, float]:
    """Median over ``rounds`` of each function's median time over ``repeats`` runs."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(median_time(fn, repeats))
    return {name: statistics.median(values) for name, values in times.items()}
