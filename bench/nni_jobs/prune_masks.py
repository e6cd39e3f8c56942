"""NNI 3.0's side of the prune benchmark: time its masks, or measure its memory, in NNI's venv.

Run by bench/bench_prune.py through nni_venv.run_nni_job; prints one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from nni.compression import pruning  # noqa: E402

from measure import peak_rss_mib, rss_mib  # noqa: E402
from weights_file import load_stack  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pruner", required=True, help="class in nni.compression.pruning")
    parser.add_argument("--config", required=True, help="the config_list, as JSON")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--masks", type=Path, help="where to save the masks (timing mode)")
    parser.add_argument("--memory", action="store_true", help="one run, report RSS only")
    return parser.parse_args()


def timed(args: argparse.Namespace) -> dict:
    """Medians over repeats of one whole run, and of its generate_masks() part; masks saved as bool.

    A whole run is what a user pays for the masks on the model: construct the pruner (it wraps
    the model), generate_masks(), update_masks(), then unwrap_model() (as ours restores).
    """
    model = load_stack(args.weights, args.layers, args.width)
    config = json.loads(args.config)
    runs = [_one_run(model, args.pruner, config) for _ in range(args.repeats + 1)]
    totals, generates = zip(*[(total, generate) for total, generate, _ in runs[1:]])
    torch.save(_flat_bool(runs[-1][2]), args.masks)
    return {
        "generate_s": statistics.median(generates),
        "whole_s": statistics.median(totals),
        "masks": str(args.masks),
    }


def _one_run(model: torch.nn.Module, pruner_name: str, config: list) -> tuple[float, float, dict]:
    start = time.perf_counter()
    pruner = getattr(pruning, pruner_name)(model, config)
    before = time.perf_counter()
    masks = pruner.generate_masks()
    generate = time.perf_counter() - before
    pruner.update_masks(masks)
    pruner.unwrap_model()
    return time.perf_counter() - start, generate, masks


def _flat_bool(masks: dict) -> dict[str, torch.Tensor]:
    return {f"{m}.{t}": mask.bool() for m, targets in masks.items() for t, mask in targets.items()}


def memory(args: argparse.Namespace) -> dict:
    """RSS with the model loaded, then the peak after constructing the pruner and its masks."""
    model = load_stack(args.weights, args.layers, args.width)
    loaded, peak_loaded = rss_mib(), peak_rss_mib()
    pruner = getattr(pruning, args.pruner)(model, json.loads(args.config))
    masks = pruner.generate_masks()
    peak = peak_rss_mib()
    del masks
    return {"loaded_mib": loaded, "peak_at_load_mib": peak_loaded, "peak_mib": peak}


def main() -> None:
    args = parse_args()
    result = memory(args) if args.memory else timed(args)
    info = {"nni": "3.0", "torch": torch.__version__, "threads": torch.get_num_threads()}
    print(json.dumps({**info, **result}))


if __name__ == "__main__":
    main()
