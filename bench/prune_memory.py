"""One prune case in a fresh process, reporting its RSS with the model loaded and its peak after.

Usage: python bench/prune_memory.py CASE WEIGHTS --layers N --width W (CASE: l1, level, global).
Prints one JSON object; bench/bench_prune.py runs it once per case.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Run as a script, bench/ is on sys.path but the checkout is not: put it first, so this
# measures the dsl_compress next to this file rather than an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dsl_compress as dc  # noqa: E402
from measure import peak_rss_mib, rss_mib  # noqa: E402
from prune_cases import BY_SLUG  # noqa: E402
from weights_file import load_stack  # noqa: E402


def measure_case(slug: str, weights: Path, layers: int, width: int) -> dict:
    """RSS after loading, the peak so far (loading adds no spike), and the peak after prune()."""
    case = BY_SLUG[slug]
    model = load_stack(weights, layers, width)
    loaded, peak_loaded = rss_mib(), peak_rss_mib()
    compression = dc.prune(model, case.config_list(), case.metric)
    peak = peak_rss_mib()
    compression.restore()
    return {"loaded_mib": loaded, "peak_at_load_mib": peak_loaded, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("case", choices=sorted(BY_SLUG))
    parser.add_argument("weights", type=Path)
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(measure_case(args.case, args.weights, args.layers, args.width)))


if __name__ == "__main__":
    main()
