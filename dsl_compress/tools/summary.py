"""Reports: what a compression did per rule (tensors matched, sparsity reached, bits), as a table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Protocol

from dsl_compress.diagnostics import span_of_origin
from dsl_compress.engine.compression import Compression
from dsl_compress.vocab import Mode
from dsl_compress.plan import Key, Plan, PlanEntry

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
    """The rows and the total line, from one pass over the compression's masks and scales."""
    counts = {
        key: (int((~mask).sum().item()), mask.numel())
        for key, mask in compression.mask_table.items()
    }
    dtypes = {key: params.qrange.quant_dtype for key, params in compression.quant_table.items()}
    return summarize_counts(compression.plan, counts, dtypes)


def summarize_counts(
    plan: Plan, mask_counts: Mapping[Key, tuple[int, int]], quant_dtypes: Mapping[Key, str]
) -> tuple[list[SummaryRow], SummaryTotal]:
    """The rows and the total line from each mask's (zeros, elements) and each quantized
    tensor's dtype: what a streamed run keeps of the tensors it handed on."""
    tables = _Tables(mask_counts, quant_dtypes)
    return _rows(plan, tables), _total(plan.entries, tables)


@dataclass(frozen=True)
class _Tables:
    """Per tensor: a mask's (zeros, elements), a quantizer's dtype."""

    mask_counts: Mapping[Key, tuple[int, int]]
    quant_dtypes: Mapping[Key, str]

    def mask(self, entry: PlanEntry) -> tuple[int, int] | None:
        return self.mask_counts.get(entry.key) if entry.mode is Mode.PRUNE else None

    def dtype(self, entry: PlanEntry) -> str | None:
        return self.quant_dtypes.get(entry.key) if entry.mode is Mode.QUANTIZE else None


# A plan entry as one rule saw it: the entry and the keys that rule set on it.
_Credit = tuple[PlanEntry, frozenset[str]]


def _rows(plan: Plan, tables: _Tables) -> list[SummaryRow]:
    """One row per rule, in source order, crediting it with every tensor it set at least one
    key of (not only those whose last key it set): a statement that gave only a granularity
    counts its tensors, and their dtype stays with the statement that set it."""
    groups: dict[tuple[str, Mode], list[_Credit]] = {}
    for entry in plan.entries:
        for rule, keys in _rules_of(entry, plan).items():
            groups.setdefault((rule, entry.mode), []).append((entry, keys))
    rows = [_row(origin, mode, found, tables) for (origin, mode), found in groups.items()]
    return sorted(rows, key=_source_order)


def _total(entries, tables: _Tables) -> SummaryTotal:
    """The total line: each tensor once, however many rules set its keys."""
    found = [c for c in (tables.mask(e) for e in entries) if c is not None]
    bits = {d for d in (tables.dtype(e) for e in entries) if d is not None}
    zeros, elements = sum(z for z, _ in found), sum(n for _, n in found)
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


def _row(origin: str, mode: Mode, found: list[_Credit], tables: _Tables) -> SummaryRow:
    pruned = [c for c in (tables.mask(entry) for entry, _ in found) if c is not None]
    dtypes = [tables.dtype(entry) for entry, keys in found if "quant_dtype" in keys]
    bits = sorted({d for d in dtypes if d is not None}, key=_dtype_order)
    zeros, elements = sum(z for z, _ in pruned), sum(n for _, n in pruned)
    align = any("align" in keys for _, keys in found)
    return SummaryRow(origin, mode, len(found), zeros, elements, tuple(bits), align)


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


def distill_text(report) -> str:
    """The distillation loss of an apply (a ``DistillReport``), one line per target and the
    lambda-weighted total."""
    lines = [
        f"distillation loss over {report.batches} calibration batch(es), compressed vs teacher:"
    ]
    for figure in report.targets:
        links = ", ".join(figure.links)
        lines.append(
            f"  {figure.name} <- {links} ({figure.method}, lambda {figure.weight:g}): "
            f"{figure.loss:.6g}"
        )
    lines.append(f"  total (sum of lambda * loss): {report.total:.6g}")
    return "\n".join(lines)
