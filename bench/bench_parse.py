"""Parse, compile and lint a 10,000-statement rules file without a model (what CI runs)."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dsl_compress as dc
from dsl_compress.tools.lint import lint
from measure import median_time, print_table, write_results
from workloads import rules_text

TARGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--statements", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    text = rules_text(args.statements)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.rules"
        path.write_text(text)
        times = _measure(text, str(path), args.repeats)
        times.update(_command(str(path), max(3, args.repeats // 2)))
        findings = lint([str(path)])
    rows = [
        ["parse", times["parse"], None],
        ["compile (no model)", times["compile"], None],
        ["lint: read + parse + compile + checks", times["lint"], TARGET_S],
        ["`dsl-compress lint`, a fresh process start to exit", times["command"], None],
        ["  of which `import dsl_compress.cli`", times["import"], None],
    ]
    print_table(["stage", "median s", "target s"], rows)
    per_statement_us = times["lint"] / args.statements * 1e6
    print(
        f"{args.statements} statements, {len(text.splitlines())} lines, {len(text) // 1024} KiB; "
        f"{len(findings.diagnostics)} findings; {per_statement_us:.0f} us per statement; "
        f"target met: {times['lint'] < TARGET_S}"
    )
    out = write_results(
        "parse",
        {
            "args": vars(args),
            "seconds": times,
            "findings": len(findings.diagnostics),
            "target_s": TARGET_S,
            "target_met": times["lint"] < TARGET_S,
        },
    )
    print(f"wrote {out}")


def _command(path: str, repeats: int) -> dict[str, float]:
    """The whole command as CI runs it, a fresh process each time, and its import alone."""
    command = [sys.executable, "-m", "dsl_compress", "lint", "--format", "concise", path]
    imports = [sys.executable, "-c", "import dsl_compress.cli"]
    return {
        "command": median_time(lambda: subprocess.run(command, capture_output=True), repeats),
        "import": median_time(lambda: subprocess.run(imports, capture_output=True), repeats),
    }


def _measure(text: str, path: str, repeats: int) -> dict[str, float]:
    """Median seconds of parse, compile and the whole lint, after one warm-up run (which also
    builds the parser tables once per process, as any long-lived process would)."""
    lint([path])
    times: dict[str, list[float]] = {"parse": [], "compile": [], "lint": []}
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
    return {k: statistics.median(v) for k, v in times.items()}


if __name__ == "__main__":
    main()
