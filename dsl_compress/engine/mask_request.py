"""MaskRequest: what the mask stages know of one pruning target (setting, shape, metric)."""

from __future__ import annotations

import functools

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from dsl_compress.diagnostics import fail
from dsl_compress.plan import Key, PlanEntry
from dsl_compress.schema.granularity import BlockKernel, parse_granularity
from dsl_compress.vocab import TargetKind

if TYPE_CHECKING:
    import torch

# Torch-free, so that the checks of settings and shapes (mask_checks) run without torch.
Masks = dict[Key, "torch.Tensor"]


@dataclass(frozen=True)
class MaskRequest:
    """One pruning target: its canonical NNI setting, its shape and (when active) its metric."""

    module: str
    target: str
    kind: TargetKind
    setting: Mapping[str, Any]
    shape: tuple[int, ...] | None
    # A tensor, or a zero-argument callable computing it on use: then only one target's
    # element-wise metric is alive at a time instead of one per target.
    metric: torch.Tensor | Callable[[], torch.Tensor] | None = None

    @property
    def key(self) -> Key:
        return (self.module, self.target)

    @property
    def name(self) -> str:
        return f"{self.module}.{self.target}"

    def get(self, key: str) -> Any:
        return self.setting.get(key)

    @property
    def stage(self) -> str | None:
        """The one of the dependency, global, ratio, align stages the target falls into, if any."""
        if self.get("dependency_group_id") is not None:
            return "dependency"
        if self.get("global_group_id") is not None:
            return "global"
        if self.get("sparse_ratio") is not None or self.get("mask_structure") is not None:
            return "ratio"  # N:M pruning is a ratio stage ranked per group of M elements
        if self.get("align") is not None:
            return "align"
        return None

    @property
    def makes_mask(self) -> bool:
        """Whether a stage before align computes a mask for the target from its own metric."""
        return self.get("sparse_threshold") is not None or self.stage not in (None, "align")

    @functools.cached_property
    def kernel(self) -> BlockKernel | None:
        """The granularity's block kernel, parsed once per request (the stages read it often)."""
        kernel = parse_granularity(self.get("granularity"), subject=self.name)
        if isinstance(kernel, str):
            fail("X803", f"granularity of {self.name} was not resolved", subject=self.name)
        return kernel


# NNI's rule: a target gets a metric iff it has a ratio or a threshold; or, ours, an N:M
# mask_structure, whose ratio is N/M.
_ACTIVE_KEYS = ("sparse_ratio", "sparse_threshold", "mask_structure")


def is_active(entry: PlanEntry) -> bool:
    """Whether the target is ranked by a metric (see _ACTIVE_KEYS)."""
    return any(entry.get(key) is not None for key in _ACTIVE_KEYS)


def ranked(entry: PlanEntry) -> bool:
    """Whether the mask stage computes a metric for the entry: an active parameter."""
    return entry.kind is TargetKind.PARAMETER and is_active(entry)


def checked_request(entry: PlanEntry, shape: tuple[int, ...] | None) -> MaskRequest:
    """What the checks of settings and shapes (``mask_checks``) read of an entry: the request
    the mask stage builds, with a metric that is never computed, as the checks ask only whether
    a target has one."""
    metric = _metric_for_checks if ranked(entry) else None
    return MaskRequest(entry.module, entry.target, entry.kind, entry.setting, shape, metric)


def _metric_for_checks() -> None:
    fail(
        "X803",
        "a metric was asked of a request built for the checks of settings and shapes only",
        subject="mask checks",
    )
