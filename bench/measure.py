"""How the benchmarks measure and report: medians, OS memory figures, the machine, results files."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, after ``warmup`` unmeasured runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(
    fns: Mapping[str, Callable[[], object]], repeats: int, rounds: int, warmup: int = 1
) -> dict[str, float]:
    """Median over ``rounds`` of each function's median time over ``repeats`` runs (after
    ``warmup`` unmeasured ones), the functions taking turns so a noisy machine's drift hits
    every side of a ratio alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(median_time(fn, repeats, warmup))
    return {name: statistics.median(values) for name, values in times.items()}


def process_seconds(
    command: Sequence[str], env: Mapping[str, str], cwd: Path
) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU seconds (user + system, the process's own children included) of one
    process run to its end in folder ``cwd``, and the process (its output captured as text,
    not shown). ``python -m`` puts its folder first on the import path, before PYTHONPATH:
    a checkout compared with another runs from its own folder."""
    before = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(list(command), env=dict(env), cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    return wall, _children_cpu() - before, done


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_mib() -> float:
    """This process's resident memory now, as the OS counts it (/proc/self/status VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, as the OS counts it (ru_maxrss)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_results(name: str, payload: dict) -> Path:
    """``bench/results/<name>.json`` with the machine description, written atomically."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    tmp.replace(path)
    return path


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned table: the first column left, the others right."""
    cells = [list(map(str, header))] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        first, *rest = row
        print("  ".join([first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:])]))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return "-" if value is None else str(value)
