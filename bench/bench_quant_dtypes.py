"""Simulated-quantization forward per model dtype (fp32, fp16, bf16): exact and fused against float.

Each model of ``quant_models`` is cast to the dtype and quantized twice from the same
weights (the default exact formula and ``fused=True``); the float, exact and fused forwards
are timed interleaved in one process, so each ratio is against its own float baseline in
the same run. Two settings: int8 per-tensor weight and input (the LLM setting of issue 9)
and ``quant_models.CONFIG_LIST`` (per-channel weight, affine input). On a CPU without
native fp16 matmul kernels the fp16 float forward itself is slow; the ratios still say what
the simulated quantization adds. Runs on CUDA when ``--device cuda`` is given.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
# Measure the checkout this script lives in, not whichever dsl_compress is installed.
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import dsl_compress as dc  # noqa: E402
from measure import interleaved, print_table, write_results  # noqa: E402
from quant_models import CONFIG_LIST, MODELS, PER_TENSOR_CONFIG_LIST, batches, build  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SETTINGS = {"per_tensor": PER_TENSOR_CONFIG_LIST, "per_channel": CONFIG_LIST}
HEADER = ("model", "setting", "dtype", "float ms", "exact/float", "fused/float", "fused/exact")
TARGET = 1.3


def measure(name: str, setting: str, dtype: str, args: argparse.Namespace) -> dict:
    """Float, exact and fused forward times of one model in one dtype, timed in turn."""
    cast = {"dtype": DTYPES[dtype], "device": args.device}
    plain = build(name).to(**cast)
    data = [b.to(**cast) for b in batches(name, args.calib)]
    exact, fused = copy.deepcopy(plain), copy.deepcopy(plain)
    dc.quantize(exact, SETTINGS[setting], calib=data)
    dc.quantize(fused, SETTINGS[setting], calib=data, fused=True)
    x = data[0]
    with torch.no_grad():
        times = interleaved(
            {"float": _timed(plain, x), "exact": _timed(exact, x), "fused": _timed(fused, x)},
            args.repeats,
            args.rounds,
        )
        assert exact(x).dtype == fused(x).dtype == DTYPES[dtype]
    return {
        "model": name,
        "setting": setting,
        "dtype": dtype,
        "float_ms": times["float"] * 1e3,
        "exact_over_float": times["exact"] / times["float"],
        "fused_over_float": times["fused"] / times["float"],
        "fused_over_exact": times["fused"] / times["exact"],
    }


def _timed(model: torch.nn.Module, x: torch.Tensor):
    def forward() -> None:
        model(x)
        if x.is_cuda:
            torch.cuda.synchronize()

    return forward


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per round")
    parser.add_argument("--rounds", type=int, default=15, help="alternations of the three")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--calib", type=int, default=2, help="calibration batches")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["mlp", "transformer"], choices=list(MODELS))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [
        measure(name, setting, dtype, args)
        for name in args.models
        for setting in args.settings
        for dtype in args.dtypes
    ]
    keys = ("float_ms", "exact_over_float", "fused_over_float", "fused_over_exact")
    print_table(
        HEADER, [[r["model"], r["setting"], r["dtype"], *(r[k] for k in keys)] for r in rows]
    )
    missed = [r for r in rows if max(r["exact_over_float"], r["fused_over_float"]) > TARGET]
    print(f"target <= {TARGET}x float: {len(rows) - len(missed)} of {len(rows)} rows met")
    settings = {k: getattr(args, k) for k in ("repeats", "rounds", "threads", "calib", "device")}
    path = write_results(f"quant_dtypes_{args.device}", {"settings": settings, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
