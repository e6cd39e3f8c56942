"""Reports: what a compression did per rule (tensors matched, sparsity reached, bits), as a table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from dsl_compress.diagnostics import span_of_origin
from dsl_compress.engine.compression import Compression
from dsl_compress.vocab import Mode
from dsl_compress.plan import Plan, PlanEntry

HEADER = ("rule", "mode", "tensors", "sparsity", "bits")
_MODE_ORDER = {mode: i for i, mode in enumerate(Mode)}


@dataclass(frozen=True)
class SummaryRow:
    """One rule (statement or config) of a plan: what it matched and what it reached.

    ``sparsity`` is the fraction of zeros over the rule's masked tensors (None when it
    masked nothing); ``bits`` the quantization dtypes it gave (None when it quantized nothing).
    """

    rule: str
    mode: Mode
    tensors: int
    zeros: int
    elements: int
    bits: tuple[str, ...] = ()

    @property
    def sparsity(self) -> float | None:
        return self.zeros / self.elements if self.elements else None

    def cells(self) -> tuple[str, str, str, str, str]:
        return (
            self.rule,
            self.mode.value,
            str(self.tensors),
            _percent(self.sparsity),
            "/".join(self.bits) or "-",
        )


class Summarized(Protocol):
    """A finished job's plan and rows (the apply job's result), summarised without recomputing."""

    @property
    def plan(self) -> Plan: ...

    @property
    def rows(self) -> tuple[SummaryRow, ...]: ...


def summary_rows(source: Compression | Summarized) -> list[SummaryRow]:
    """Rows of an apply result, or computed from a compression's plan, masks and scales."""
    if isinstance(source, Compression):
        return compression_rows(source)
    return list(source.rows)


def compression_rows(compression: Compression) -> list[SummaryRow]:
    """One row per rule, grouping plan entries by the origin that set them, in source order."""
    masks, quant = compression.masks(), compression.quant_params()
    groups: dict[tuple[str, Mode], list[PlanEntry]] = {}
    for entry in compression.plan.entries:
        groups.setdefault((entry.origin, entry.mode), []).append(entry)
    rows = [_row(origin, mode, entries, masks, quant) for (origin, mode), entries in groups.items()]
    return sorted(rows, key=_source_order)


def _row(origin: str, mode: Mode, entries: list[PlanEntry], masks: dict, quant: dict) -> SummaryRow:
    found = [masks.get(e.module, {}).get(e.target) for e in entries if e.mode is Mode.PRUNE]
    found = [m for m in found if m is not None]
    params = [quant.get(e.module, {}).get(e.target) for e in entries if e.mode is Mode.QUANTIZE]
    bits = sorted({p["quant_dtype"] for p in params if p is not None}, key=_dtype_order)
    zeros = sum(int((~m).sum().item()) for m in found)
    elements = sum(m.numel() for m in found)
    return SummaryRow(origin, mode, len(entries), zeros, elements, tuple(bits))


def _source_order(row: SummaryRow) -> tuple:
    """Rules in file order; config_list origins by mode, then by index (config_list[2] < [10])."""
    span = span_of_origin(row.rule)
    if span is not None:
        return (0, span.file or "", span.line, span.column)
    numbers = tuple(int(n) for n in re.findall(r"\d+", row.rule))
    return (1, _MODE_ORDER[row.mode], numbers, row.rule)


def _dtype_order(dtype: str) -> tuple:
    digits = re.sub(r"\D", "", dtype)
    return (int(digits) if digits else 0, dtype)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def summary_table(source: Compression | Summarized) -> str:
    """An aligned text table, one line per rule and a total line."""
    rows = summary_rows(source)
    lines = [HEADER, *(row.cells() for row in rows)]
    if rows:
        lines.append(_total(rows, source))
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = [_format(line, widths) for line in lines]
    text.insert(1, _format(tuple("-" * w for w in widths), widths))
    if rows:
        text.insert(len(text) - 1, text[1])
    return "\n".join(text)


def _total(rows: list[SummaryRow], source: Compression | Summarized) -> tuple[str, ...]:
    plan = source.plan
    zeros, elements = sum(r.zeros for r in rows), sum(r.elements for r in rows)
    bits = sorted({b for r in rows for b in r.bits}, key=_dtype_order)
    tensors = len({e.key for e in plan.entries})
    sparsity = zeros / elements if elements else None
    return ("total", "", str(tensors), _percent(sparsity), "/".join(bits) or "-")


def _format(cells: tuple[str, ...], widths: list[int]) -> str:
    """Text columns left-aligned, number columns right-aligned."""
    out = [
        cell.rjust(width) if i in (2, 3) else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(cells, widths))
    ]
    return "  ".join(out).rstrip()
