"""Reports: a plain-text summary of what a compression did, per config and per tensor."""

from __future__ import annotations

from dsl_compress.engine import Compression
from dsl_compress.modes import Mode


def summary_rows(compression: Compression) -> list[tuple[str, str, str, str, str]]:
    """(origin, mode, tensor, sparsity, bits) for every plan entry that got a mask or a scale."""
    masks, quant = compression.masks(), compression.quant_params()
    rows = []
    for entry in compression.plan.entries:
        mask = masks.get(entry.module, {}).get(entry.target)
        params = quant.get(entry.module, {}).get(entry.target)
        if entry.mode is Mode.PRUNE and mask is not None:
            sparsity = f"{1.0 - mask.float().mean().item():.3f}"
            rows.append((entry.origin, "prune", entry.module + "." + entry.target, sparsity, "-"))
        elif entry.mode is Mode.QUANTIZE and params is not None:
            bits = f"{params['quant_dtype']} {params['quant_scheme']}"
            rows.append((entry.origin, "quantize", entry.module + "." + entry.target, "-", bits))
    return rows


def summary_table(compression: Compression) -> str:
    header = ("source", "mode", "tensor", "sparsity", "quantization")
    rows = [header, *summary_rows(compression)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
