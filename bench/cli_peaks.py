"""Run one `dsl-compress` command and write its peak memory, and its largest worker's, to a file.

    python bench/cli_peaks.py REPORT.json fmt --check big.rules

ru_maxrss of a process counts that process alone; `fmt --jobs` formats in worker processes,
whose peaks this process reads (RUSAGE_CHILDREN: the largest child it has waited for).
"""

from __future__ import annotations

import json
import resource
import sys

from dsl_compress.cli import main as dsl_compress


def main() -> int:
    report, argv = sys.argv[1], sys.argv[2:]
    try:
        code = int(dsl_compress(argv))
    finally:
        peaks = {
            "own_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "largest_worker_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        }
        with open(report, "w", encoding="utf-8") as out:
            json.dump(peaks, out)
    return code


if __name__ == "__main__":
    sys.exit(main())
