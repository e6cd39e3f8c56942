"""The prune benchmark's cases: each one's config_list, its NNI 3.0 pruner, and its plain-torch floor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

import dsl_compress as dc

RATIO = 0.5

Floor = Callable[[nn.Module, float], list[torch.Tensor]]


def row_l1(weight: torch.Tensor) -> torch.Tensor:
    """Row L1 norms as NNI computes them (t.norm(p=1)), to the bit; abs().sum() rounds otherwise."""
    return torch.linalg.vector_norm(weight.detach(), ord=1, dim=1)


def floor_l1(model: nn.Module, ratio: float) -> list[torch.Tensor]:
    """One pass: row L1 norms, the k smallest rows, a (broadcast) bool mask per weight."""
    masks = []
    for layer in model:
        norms = row_l1(layer.weight)
        k = int(norms.numel() * ratio)
        pruned = torch.topk(norms, k, largest=False).indices
        keep = torch.ones_like(norms, dtype=torch.bool)
        keep[pruned] = False
        masks.append(keep[:, None].expand_as(layer.weight))
    return masks


def floor_level(model: nn.Module, ratio: float) -> list[torch.Tensor]:
    """One pass per weight: kthvalue of |w|, then a comparison."""
    masks = []
    for layer in model:
        w = layer.weight.detach().abs().flatten()
        k = int(w.numel() * ratio)
        threshold = torch.kthvalue(w, k).values
        masks.append(layer.weight.detach().abs() > threshold)
    return masks


def floor_global(model: nn.Module, ratio: float) -> list[torch.Tensor]:
    """Row L1 norms of every layer, one kthvalue over all of them, a row mask per weight."""
    per_layer = [row_l1(layer.weight) for layer in model]
    norms = torch.cat(per_layer)
    k = int(norms.numel() * ratio)
    threshold = torch.kthvalue(norms, k).values
    return [(layer_norms > threshold)[:, None] for layer_norms in per_layer]


@dataclass(frozen=True)
class PruneCase:
    """One benchmark case: the same job for dsl-compress, NNI 3.0 and the floor."""

    name: str
    slug: str
    metric: str
    nni_pruner: str
    floor: Floor
    global_group: bool = False

    def config_list(self, ratio: float = RATIO) -> list[dict]:
        """The config_list both sides get (NNI's keys; ours reads the same list)."""
        config = {"op_types": ["Linear"], "sparse_ratio": ratio}
        if self.global_group:
            config["global_group_id"] = 0
        return [config]


CASES = (
    PruneCase("l1 out_channel", "l1", "l1", "L1NormPruner", floor_l1),
    PruneCase("level element-wise", "level", "level", "LevelPruner", floor_level),
    PruneCase("l1 global group", "global", "l1", "L1NormPruner", floor_global, global_group=True),
)

BY_SLUG = {case.slug: case for case in CASES}


def run_ours(case: PruneCase, model: nn.Module) -> dc.Compression:
    """The whole job: plan, metrics, masks installed on the model, then the model restored."""
    compression = dc.prune(model, case.config_list(), case.metric)
    compression.restore()
    return compression
