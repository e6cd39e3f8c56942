"""NNI 3.0 side of bench_resolve: its selection and canonicalization of a config_list.

Run by NNI's interpreter: ``select_configs.py CONFIG_JSON MODULES LIMIT``. Builds the same
generated model as the benchmark (bench/workloads.py, torch only), then for LIMIT
configs (evenly spaced over the whole list; 0 for all) does what NNI's register_wrappers
does before wrapping:
select_modules_by_config, then canonicalize_settings for every selected module. Prints one JSON
object: seconds, configs run, modules selected.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nni.compression.base.config import select_modules_by_config  # noqa: E402
from nni.compression.base.setting import canonicalize_settings  # noqa: E402
from workloads import wide_model  # noqa: E402

MODES = {"prune": "pruning", "quantize": "quantization", "distill": "distillation"}


def main() -> None:
    config_path, modules, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    config_lists = json.loads(Path(config_path).read_text())
    model = wide_model(modules)
    configs = [(kind, config) for kind, listed in config_lists.items() for config in listed]
    step = max(1, len(configs) // limit) if limit else 1
    sample = configs[::step][: limit or None]
    selected = 0
    start = time.perf_counter()
    for kind, config in sample:
        chosen, public, _ = select_modules_by_config(model, config)
        for module in chosen.values():
            canonicalize_settings(module, public, MODES[kind])
        selected += len(chosen)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"seconds": seconds, "configs": len(sample), "of": len(configs), "selected": selected}
        )
    )


if __name__ == "__main__":
    main()
