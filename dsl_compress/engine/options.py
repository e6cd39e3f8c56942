"""EngineOptions: how the engine computes and installs a plan, beside the plan and the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class EngineOptions:
    """What a run of the engine needs besides the model and the plan.

    ``calib``: calibration batches (a tensor, a tuple of inputs or a dict each), for the
    taylor metric, activation shapes and activation quantization. ``loss_fn(model, batch)``
    gives the loss whose gradients the taylor metric accumulates. ``seed`` seeds the random
    metric. ``teacher`` is the model distillation targets compare against. ``fused`` uses
    torch's fused fake-quant kernels off the CPU; ``cache_weights`` keeps each fake-quantized weight
    between forwards run without grad. ``progress(done, total, label)`` is called as each
    pruning metric is computed and after each calibration batch of activation quantization.
    """

    calib: Iterable[Any] | None = None
    loss_fn: LossFn | None = None
    seed: int = 0
    teacher: torch.nn.Module | None = None
    fused: bool = False
    cache_weights: bool = True
    progress: Progress | None = None
