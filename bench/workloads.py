"""The benchmark models (and, from rules_workloads, the generated rules files), the same on every run."""

from __future__ import annotations

import torch
from torch import nn

from rules_workloads import STAGES


class Block(nn.Module):
    """Six small modules named as the generated rules expect: conv0/1, bn0/1, fc0/1."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(width, width, 1)
        self.conv1 = nn.Conv2d(width, width, 1)
        self.bn0 = nn.BatchNorm2d(width)
        self.bn1 = nn.BatchNorm2d(width)
        self.fc0 = nn.Linear(width, width)
        self.fc1 = nn.Linear(width, width)


def wide_model(modules: int, width: int = 2, device: str = "meta") -> nn.Module:
    """A model of about ``modules`` modules (``named_modules``): four stages of :class:`Block` s.

    Built on the meta device by default: rule resolution needs names, types and shapes only.
    """
    per_stage = max(1, modules // (7 * len(STAGES)))
    with torch.device(device):
        return nn.ModuleDict(
            {
                stage: nn.ModuleDict({f"block{i}": Block(width) for i in range(per_stage)})
                for stage in STAGES
            }
        )


def linear_stack(layers: int, width: int, seed: int = 0) -> nn.Sequential:
    """``layers`` x Linear(width, width), seeded: the mask-generation benchmark's model."""
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])
