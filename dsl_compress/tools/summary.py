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
    """One rule (statement or config) of a plan: the tensors it set a key of and what they reached.

    ``sparsity`` is the fraction of zeros over the rule's masked tensors (None when it
    masked nothing); ``bits`` the quantization dtypes it set itself (empty when it set none);
    ``align`` says an align statement set the tensors' masks.
    """

    rule: str
    mode: Mode
    tensors: int
    zeros: int
    elements: int
    bits: tuple[str, ...] = ()
    align: bool = False

    @property
    def sparsity(self) -> float | None:
        return self.zeros / self.elements if self.elements else None

    def cells(self) -> tuple[str, str, str, str, str]:
        return (
            self.rule,
            self.mode.value + (" (align)" if self.align else ""),
            str(self.tensors),
            _percent(self.sparsity),
            "/".join(self.bits) or "-",
        )


@dataclass(frozen=True)
class SummaryTotal:
    """The whole plan: its distinct tensors, zeros over every mask, every dtype it gave."""

    tensors: int
    zeros: int
    elements: int
    bits: tuple[str, ...] = ()

    @property
    def sparsity(self) -> float | None:
        return self.zeros / self.elements if self.elements else None

    def cells(self) -> tuple[str, str, str, str, str]:
        return ("total", "", str(self.tensors), _percent(self.sparsity), "/".join(self.bits) or "-")


class Summarized(Protocol):
    """A finished job's plan, rows and total (the apply job's result), without recomputing."""

    @property
    def plan(self) -> Plan: ...

    @property
    def rows(self) -> tuple[SummaryRow, ...]: ...

    @property
    def total(self) -> SummaryTotal: ...


def summary_rows(source: Compression | Summarized) -> list[SummaryRow]:
    """Rows of an apply result, or computed from a compression's plan, masks and scales."""
    return _summary(source)[0]


def summary_total(source: Compression | Summarized) -> SummaryTotal:
    return _summary(source)[1]


def _summary(source: Compression | Summarized) -> tuple[list[SummaryRow], SummaryTotal]:
    if isinstance(source, Compression):
        return summarize(source)
    return list(source.rows), source.total


def summarize(compression: Compression) -> tuple[list[SummaryRow], SummaryTotal]:
    """The rows and the total line, from one copy of the compression's masks and scales."""
    masks, quant = compression.masks(), compression.quant_params()
    plan = compression.plan
    return _rows(plan, masks, quant), _total(plan.entries, masks, quant)


# A plan entry as one rule saw it: the entry and the keys that rule set on it.
_Credit = tuple[PlanEntry, frozenset[str]]


def _rows(plan: Plan, masks: dict, quant: dict) -> list[SummaryRow]:
    """One row per rule, in source order, crediting it with every tensor it set at least one
    key of (not only those whose last key it set): a statement that gave only a granularity
    counts its tensors, and their dtype stays with the statement that set it."""
    groups: dict[tuple[str, Mode], list[_Credit]] = {}
    for entry in plan.entries:
        for rule, keys in _rules_of(entry, plan).items():
            groups.setdefault((rule, entry.mode), []).append((entry, keys))
    rows = [_row(origin, mode, found, masks, quant) for (origin, mode), found in groups.items()]
    return sorted(rows, key=_source_order)


def _total(entries, masks: dict, quant: dict) -> SummaryTotal:
    """The total line: each tensor once, however many rules set its keys."""
    found = [m for m in (_mask(masks, e) for e in entries) if m is not None]
    bits = {p["quant_dtype"] for p in (_quant(quant, e) for e in entries) if p is not None}
    zeros, elements = _zeros(found), sum(m.numel() for m in found)
    tensors = len({e.key for e in entries})
    return SummaryTotal(tensors, zeros, elements, tuple(sorted(bits, key=_dtype_order)))


def _rules_of(entry: PlanEntry, plan: Plan) -> dict[str, frozenset[str]]:
    """The rules that set keys of the entry, each with its keys; the matching rule when every
    key is a template's (a statement with no settings of its own)."""
    keys: dict[str, set[str]] = {}
    for key, origin in entry.key_origins.items():
        rule = plan.statement_of(origin)
        if rule is not None:
            keys.setdefault(rule, set()).add(key)
    return {rule: frozenset(set_keys) for rule, set_keys in keys.items()} or {
        entry.origin: frozenset()
    }


def _row(origin: str, mode: Mode, found: list[_Credit], masks: dict, quant: dict) -> SummaryRow:
    pruned = [m for m in (_mask(masks, entry) for entry, _ in found) if m is not None]
    params = [_quant(quant, entry) for entry, keys in found if "quant_dtype" in keys]
    bits = sorted({p["quant_dtype"] for p in params if p is not None}, key=_dtype_order)
    zeros, elements = _zeros(pruned), sum(m.numel() for m in pruned)
    align = any("align" in keys for _, keys in found)
    return SummaryRow(origin, mode, len(found), zeros, elements, tuple(bits), align)


def _mask(masks: dict, entry: PlanEntry):
    return masks.get(entry.module, {}).get(entry.target) if entry.mode is Mode.PRUNE else None


def _quant(quant: dict, entry: PlanEntry) -> dict | None:
    return quant.get(entry.module, {}).get(entry.target) if entry.mode is Mode.QUANTIZE else None


def _zeros(masks: list) -> int:
    return sum(int((~m).sum().item()) for m in masks)


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
    rows, total = _summary(source)
    lines = [HEADER, *(row.cells() for row in rows)]
    if rows:
        lines.append(total.cells())
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = [_format(line, widths) for line in lines]
    text.insert(1, _format(tuple("-" * w for w in widths), widths))
    if rows:
        text.insert(len(text) - 1, text[1])
    return "\n".join(text)


def _format(cells: tuple[str, ...], widths: list[int]) -> str:
    """Text columns left-aligned, number columns right-aligned."""
    out = [
        cell.rjust(width) if i in (2, 3) else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(cells, widths))
    ]
    return "  ".join(out).rstrip()
