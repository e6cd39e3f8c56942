"""Parse, compile and lint a 10,000-statement rules file without a model (what CI runs), and the
whole `dsl-compress lint` process on it and on a 50-statement file, with and without the grammar
cache, optionally beside an older checkout of the package (``--baseline-tree``)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dsl_compress as dc
from dsl_compress.cli.gc_pause import gc_paused
from dsl_compress.tools.lint import lint
from measure import median_time, print_table, process_seconds, write_results
from rules_workloads import rules_text

# In-process lint of the large file with the collector paused, as the command runs it (the
# target of issue #5, measured that way; a library call leaves the collector alone since #8).
TARGET_S = 1.0
PROCESS_TARGET_S = 1.2  # the whole `dsl-compress lint` process on the large file, cache warm
WARM_LARGE = "large, cache warm"
SMALL_STATEMENTS = 50
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProcessRun:
    """One way to run the lint command: which package (PYTHONPATH), which file, cache state."""

    name: str
    tree: Path
    rules: Path
    cold: bool  # the cache folder emptied before each run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--statements", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each lint process")
    parser.add_argument("--baseline-tree", type=Path, help="a checkout to compare processes with")
    args = parser.parse_args()
    text = rules_text(args.statements)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        big, small = folder / "big.rules", folder / "small.rules"
        big.write_text(text)
        small.write_text(rules_text(SMALL_STATEMENTS))
        times = _measure(text, str(big), args.repeats)
        times["import"] = _import_time(max(3, args.repeats // 2))
        findings = lint([str(big)])
        runs = _process_runs(big, small, args.baseline_tree)
        processes = _process_times(runs, folder / "cache", args.rounds)
    _report(args, text, times, processes, len(findings.diagnostics))


def _report(args, text: str, times: dict, processes: dict, findings: int) -> None:
    print_table(
        ["stage, in one process", "median s", "target s"],
        [
            ["parse", times["parse"], None],
            ["compile (no model)", times["compile"], None],
            ["lint: read + parse + compile + checks", times["lint"], None],
            ["the same, collector paused (as the command)", times["lint_paused"], TARGET_S],
            ["`import dsl_compress.cli`, a fresh process", times["import"], None],
        ],
    )
    print()
    ratios = _ratios(processes)
    print_table(
        ["`dsl-compress lint` process", "wall s", "cpu s", "x base wall", "x base cpu", "target s"],
        [
            [name, run["wall"], run["cpu"], *ratios.get(name, (None, None)), _target(name)]
            for name, run in processes.items()
        ],
    )
    warm = processes[WARM_LARGE]["wall"]
    per_statement_us = times["lint"] / args.statements * 1e6
    print(
        f"{args.statements} statements, {len(text.splitlines())} lines, {len(text) // 1024} KiB; "
        f"{findings} findings; {per_statement_us:.0f} us per statement; "
        f"in-process target met: {times['lint_paused'] < TARGET_S}; "
        f"process target met: {warm < PROCESS_TARGET_S}"
    )
    args_record = {**vars(args), "baseline_tree": args.baseline_tree and str(args.baseline_tree)}
    out = write_results(
        "parse",
        {
            "args": args_record,
            "seconds": times,
            "process_seconds": processes,
            "process_ratio_to_baseline": {
                k: dict(zip(("wall", "cpu"), v)) for k, v in ratios.items()
            },
            "findings": findings,
            "target_s": TARGET_S,
            "target_met": times["lint_paused"] < TARGET_S,
            "process_target_s": PROCESS_TARGET_S,
            "process_target_met": warm < PROCESS_TARGET_S,
        },
    )
    print(f"wrote {out}")


def _target(name: str) -> float | None:
    return PROCESS_TARGET_S if name == WARM_LARGE else None


def _process_runs(big: Path, small: Path, baseline: Path | None) -> list[ProcessRun]:
    runs = []
    for size, rules in (("large", big), ("small", small)):
        runs += [
            ProcessRun(f"{size}, cache warm", REPO, rules, cold=False),
            ProcessRun(f"{size}, cache cold", REPO, rules, cold=True),
        ]
        if baseline is not None:
            runs.append(ProcessRun(f"{size}, baseline", baseline.resolve(), rules, cold=False))
    return runs


def _process_times(runs: list[ProcessRun], cache: Path, rounds: int) -> dict[str, dict]:
    """Median wall and CPU seconds of each lint process, the runs taking turns round by round so
    that a noisy machine's drift hits every side of a ratio alike (CPU time, user + system, is
    the steadier figure on a shared machine). One unmeasured round first warms the cache and the
    OS's file cache. A cold run empties a cache folder of its own, not the warm runs' (a
    baseline of another grammar keeps its cache file there too)."""
    times: dict[str, list[tuple[float, float]]] = {run.name: [] for run in runs}
    for round_ in range(rounds + 1):
        for run in runs:
            folder = cache / ("cold" if run.cold else "warm")
            if run.cold:
                shutil.rmtree(folder, ignore_errors=True)
            measured = _lint_process(run, folder)
            if round_:
                times[run.name].append(measured)
    return {
        name: {
            "wall": statistics.median(wall for wall, _ in values),
            "cpu": statistics.median(cpu for _, cpu in values),
        }
        for name, values in times.items()
    }


def _lint_process(run: ProcessRun, cache: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one lint process."""
    command = [sys.executable, "-m", "dsl_compress", "lint", "--format", "concise", str(run.rules)]
    env = {**os.environ, "PYTHONPATH": str(run.tree), "DSL_COMPRESS_CACHE_DIR": str(cache)}
    wall, cpu, done = process_seconds(command, env, run.tree)
    if done.returncode not in (0, 1):  # 1: findings
        raise RuntimeError(f"{run.name}: lint failed\n{done.stderr}")
    return wall, cpu


def _ratios(processes: dict[str, dict]) -> dict[str, tuple[float, float]]:
    """Each run of this tree against the baseline on the same file: (wall, cpu) ratios."""
    ratios = {}
    for name, run in processes.items():
        size, _, kind = name.partition(", ")
        baseline = processes.get(f"{size}, baseline")
        if baseline and kind != "baseline":
            ratios[name] = (run["wall"] / baseline["wall"], run["cpu"] / baseline["cpu"])
    return ratios


def _import_time(repeats: int) -> float:
    imports = [sys.executable, "-c", "import dsl_compress.cli"]
    return median_time(lambda: subprocess.run(imports, capture_output=True), repeats)


def _measure(text: str, path: str, repeats: int) -> dict[str, float]:
    """Median seconds of parse, compile and the whole lint, after one warm-up run (which also
    builds the parser once per process, as any long-lived process would)."""
    lint([path])
    times: dict[str, list[float]] = {"parse": [], "compile": [], "lint": [], "lint_paused": []}
    for _ in range(repeats):
        start = time.perf_counter()
        rules = dc.parse(text, path)
        parsed = time.perf_counter()
        rules.compile()
        compiled = time.perf_counter()
        lint([path])
        linted = time.perf_counter()
        times["parse"].append(parsed - start)
        times["compile"].append(compiled - parsed)
        times["lint"].append(linted - compiled)
        with gc_paused():
            start = time.perf_counter()
            lint([path])
            times["lint_paused"].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


if __name__ == "__main__":
    main()
