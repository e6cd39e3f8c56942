"""A global group's threshold: an exact weighted k-th value by radix selection, never a sort."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from dsl_compress.diagnostics import fail

MetricPass = Callable[[], Iterable[tuple[torch.Tensor, int]]]

# Every float32 maps to an int32 key whose order is torch.sort's: negatives count down from
# -0x0 by magnitude, -0.0 joins +0.0 at key 0, and every NaN (either sign, any payload) is
# clamped to one magnitude above +inf's. That magnitude opens a 16-bit bin of its own, so the
# top 16 bits of a key (0x7F81 + key >> 16, from -NaN at 0 up to +NaN at 0xFF02) are bins in
# which NaN never shares with a number; the -NaN bin is moved onto the +NaN bin after a pass.
_NAN_MAGNITUDE = 0x7F810000
_TOP_OFFSET = 0x7F81
_TOP_BINS = 2 * _TOP_OFFSET + 1
_NEG_NAN_BIN = 0
_NAN_BIN = _TOP_BINS - 1
_LOW_BINS = 1 << 16
_CANONICAL_NAN_BITS = 0x7FC00000
_UPCAST = (torch.float16, torch.bfloat16)


def weighted_threshold(
    members: MetricPass, count: int, reduce: Callable[[torch.Tensor], None] | None = None
) -> torch.Tensor:
    """``min{v : W(<=v) > count}``: the smallest metric value whose entries, with every smaller
    one, weigh more than ``count``; the largest value when no value does.

    ``members()`` yields each member's float32 metric (any shape and device; float16 and
    bfloat16 are widened exactly) with the positive int weight (grain) of each of its entries.
    The order is torch.sort's on CPU, on every device: -0.0 equals +0.0, and NaN of either
    sign is above +inf (CUDA's sort puts a negative NaN first in large tensors). This is the
    value the old concatenate-sort-cumsum gave, bit for bit, except that a zero comes back as
    +0.0 and a NaN as the canonical NaN (the sort picked either zero, and any NaN payload;
    ``>=`` reads them alike). The result is a 0-dim float32 on the first member's device. Pruning what lies
    below it prunes the smallest entries whose weights add up to at most ``count``; ties at the
    threshold are kept, as in NNI's heap walk.

    Two radix passes over the keys' 16-bit halves, each calling ``members()`` once (once in
    all when the threshold is NaN): memory for 2^16 int64 bins and one member's temporaries.
    In a distributed run each process passes its own members and ``reduce`` sums each pass's
    bins over every process (in place): the sums are exact, so every process selects the
    same threshold, the one a single process selects over all members.
    """
    if count < 0:
        fail("X803", f"a global threshold needs a count >= 0, got {count}")
    top = _histogram(members, _TOP_BINS, _top_digits, reduce)
    top.fold(_NEG_NAN_BIN, _NAN_BIN)
    if top.total == 0:
        fail("X803", "a global threshold was asked of a group with no metric entries")
    rest = min(count, top.total - 1)
    bin_, rest = top.select(rest)
    if bin_ == _NAN_BIN:
        return _float_of(None, top.device)
    base = (bin_ - _TOP_OFFSET) << 16
    low = _histogram(members, _LOW_BINS + 2, lambda metric: _low_digits(metric, base), reduce)
    low.drop(0)  # the keys below the bin, -NaN's among them, are in ``rest`` already
    digit, _ = low.select(rest)
    return _float_of(base + digit - 1, top.device)


def _histogram(
    members: MetricPass,
    bins: int,
    digits: Callable[[torch.Tensor], torch.Tensor | None],
    reduce: Callable[[torch.Tensor], None] | None,
) -> _Histogram:
    """One pass: every member's digits counted, each member released before the next is read
    (a streamed member is loaded when yielded, so two alive at once would double the peak)."""
    histogram = _Histogram(bins)
    pending = iter(members())
    while (item := next(pending, None)) is not None:
        metric, grain = item
        histogram.add(digits(metric), grain, metric)
        del item, metric
    if reduce is not None:
        reduce(histogram.summed())
    return histogram


class _Histogram:
    """Exact int64 weights per bin, kept on the first member's device."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.counts: torch.Tensor | None = None
        self.device = torch.device("cpu")

    def add(self, digits: torch.Tensor | None, grain: int, metric: torch.Tensor) -> None:
        if self.counts is None:
            self.device = metric.device
            self.counts = torch.zeros(self.bins, dtype=torch.int64, device=self.device)
        if digits is None:
            return
        if grain < 1:
            fail("X803", f"a global group member's grain must be a positive int, got {grain}")
        found = torch.bincount(digits, minlength=self.bins)
        self.counts += found.to(self.device) * grain

    def summed(self) -> torch.Tensor:
        """The bins, made (zero) if no member was counted, for a sum over processes."""
        if self.counts is None:
            self.counts = torch.zeros(self.bins, dtype=torch.int64, device=self.device)
        return self.counts

    def fold(self, source: int, target: int) -> None:
        if self.counts is not None:
            self.counts[target] += self.counts[source]
            self.drop(source)

    def drop(self, bin_: int) -> None:
        if self.counts is not None:
            self.counts[bin_] = 0

    @property
    def total(self) -> int:
        return 0 if self.counts is None else int(self.counts.sum())

    def select(self, rest: int) -> tuple[int, int]:
        """The first bin whose cumulative weight exceeds ``rest``, and ``rest`` less the weight
        of the bins below it."""
        reached = self.counts.cumsum(0)
        bin_ = int(
            torch.searchsorted(reached, torch.tensor([rest], device=self.device), right=True)
        )
        return bin_, rest - (int(reached[bin_ - 1]) if bin_ else 0)


def _keys(metric: torch.Tensor) -> torch.Tensor | None:
    """Flat int32 keys in torch.sort's order (module comment), or None for an empty metric."""
    if metric.numel() == 0:
        return None
    if metric.dtype in _UPCAST:
        metric = metric.to(torch.float32)
    if metric.dtype != torch.float32:
        fail("X803", f"a global group's metric must be float32, got {metric.dtype}")
    bits = metric.detach().contiguous().view(torch.int32).reshape(-1)
    if bool(bits.min() >= 0):  # no sign bit set: a metric of norms, the usual case
        return bits.clamp(max=_NAN_MAGNITUDE)
    keys = (bits & 0x7FFFFFFF).clamp_(max=_NAN_MAGNITUDE)
    sign = bits >> 31  # 0 or -1: (m ^ -1) - (-1) == -m
    return keys.bitwise_xor_(sign).sub_(sign)


def _top_digits(metric: torch.Tensor) -> torch.Tensor | None:
    keys = _keys(metric)
    return None if keys is None else keys.bitwise_right_shift_(16).add_(_TOP_OFFSET)


def _low_digits(metric: torch.Tensor, base: int) -> torch.Tensor | None:
    """1 + the low 16 bits of keys in ``[base, base + 0xFFFF]``; 0 below it, 0x10001 above."""
    keys = _keys(metric)
    return None if keys is None else keys.clamp_(base - 1, base + _LOW_BINS).sub_(base - 1)


def _float_of(key: int | None, device: torch.device) -> torch.Tensor:
    """The float32 of a key (None: NaN), built from its bits so subnormals survive."""
    if key is None:
        bits = _CANONICAL_NAN_BITS
    else:
        bits = key if key >= 0 else -key - (1 << 31)  # the sign bit on |key|, as an int32
    return torch.tensor(bits, dtype=torch.int32, device=device).view(torch.float32)
