"""Costs grow linearly with the input: lint of many bad lines, fmt of many commented statements,
lint of one statement with thousands of unknown keys, and the peak memory of lint of a large
file (also written on one line). Each workload runs at sizes growing 4x; the time ratio between
neighbours should be ~4x (a quadratic cost shows ~16x). Each size runs `dsl-compress` as a fresh
process, so the peak memory (ru_maxrss of the child) is that run's alone; `fmt` and `lint` of a
file of a megabyte or more work in worker processes (--jobs, one per CPU), and the largest
worker's peak is its own column.

    python bench/bench_scaling.py            # sizes up to 100,000 bad lines, 200,000 statements
    python bench/bench_scaling.py --quick    # a quarter of that
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rules_workloads import rules_text  # noqa: E402

PEAKS = Path(__file__).resolve().parent / "cli_peaks.py"


def bad_lines(n: int) -> str:
    return "prune Conv2d.weight badkey=1\n" * n


def commented_statements(n: int) -> str:
    return "".join(
        f"# about conv{i}\nprune conv{i}.weight sparse_ratio=0.5  # why {i}\n" for i in range(n)
    )


def unknown_keys_on_one_line(n: int) -> str:
    return "prune Conv2d.weight " + " ".join(f"key{i}x=1" for i in range(n)) + "\n"


def mixed_file(n: int) -> str:
    return rules_text(n)


def one_line(n: int) -> str:
    """The mixed statements on one line, joined by ';' (their comments dropped)."""
    return "; ".join(line.split("  #")[0] for line in rules_text(n).splitlines()[1:]) + "\n"


# (name, text maker, command, sizes)
WORKLOADS: list[tuple[str, Callable[[int], str], list[str], list[int]]] = [
    ("lint: bad lines", bad_lines, ["lint", "--format", "concise"], [6_250, 25_000, 100_000]),
    ("lint: bad lines, as SARIF", bad_lines, ["lint", "--format", "sarif"], [25_000, 100_000]),
    (
        "fmt: commented statements",
        commented_statements,
        ["fmt", "--check"],
        [12_500, 50_000, 200_000],
    ),
    ("lint: unknown keys, one line", unknown_keys_on_one_line, ["lint"], [1_250, 5_000, 20_000]),
    (
        "lint: mixed statements",
        mixed_file,
        ["lint", "--format", "concise"],
        [12_500, 50_000, 200_000],
    ),
    ("lint: one line, ';'-joined", one_line, ["lint", "--format", "concise"], [12_500, 50_000]),
]


def measure(command: list[str], path: Path, folder: Path) -> tuple[float, float, float, int]:
    """Seconds, peak resident MB of the command's process and of its largest worker process
    (0 without workers), bytes printed."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    out, err, report = folder / "stdout", folder / "stderr", folder / "peaks.json"
    start = time.perf_counter()
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(PEAKS), str(report), *command, str(path)],
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        status = child.wait()
    seconds = time.perf_counter() - start
    if status not in (0, 1) or b"Traceback" in err.read_bytes():
        raise SystemExit(f"{command} failed:\n{err.read_bytes().decode()[-2000:]}")
    peaks = json.loads(report.read_text())
    printed = out.stat().st_size + err.stat().st_size
    return seconds, peaks["own_kb"] / 1024, peaks["largest_worker_kb"] / 1024, printed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of each size")
    args = parser.parse_args()
    print(
        f"{'workload':<30} {'size':>8} {'file MB':>8} {'s':>7} {'ratio':>6} {'peak MB':>8} "
        f"{'worker MB':>9} {'out KB':>8}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for name, make, command, sizes in WORKLOADS:
            previous = None
            for size in sizes:
                size = size // 4 if args.quick else size
                path = Path(folder) / "input.rules"
                path.write_text(make(size), encoding="utf-8")
                seconds, peak, worker, printed = measure(command, path, Path(folder))
                ratio = f"{seconds / previous:.1f}x" if previous else "-"
                megabytes = path.stat().st_size / 1e6
                print(
                    f"{name:<30} {size:>8} {megabytes:>8.2f} {seconds:>7.2f} {ratio:>6} "
                    f"{peak:>8.0f} {worker:>9.0f} {printed / 1024:>8.0f}"
                )
                previous = seconds


if __name__ == "__main__":
    main()
