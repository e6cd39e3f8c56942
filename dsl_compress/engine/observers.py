"""Quantization statistics: per-block min/max of weights and running min/max of activations."""

from __future__ import annotations

import torch

from dsl_compress.diagnostics import fail
from dsl_compress.schema.granularity import BlockKernel


def weight_min_max(
    tensor: torch.Tensor, kernel: BlockKernel | None = None, subject: str = "weight"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max of ``tensor`` per block, in float32 and without gradient.

    Kernel None gives 0-d (per-tensor) stats; otherwise the stats have the kernel's keepdim
    block shape, e.g. ``[O, 1]`` for a Linear weight with out_channel. The reductions run
    in the tensor's own dtype and only their results are cast, which gives the same values
    as casting first because rounding to float32 is monotone.
    """
    with torch.no_grad():
        data = tensor.detach()
        if kernel is None:
            lo, hi = torch.aminmax(data)
        else:
            lo = kernel.shrink(data, _amin, subject)
            hi = kernel.shrink(data, _amax, subject)
        return lo.to(torch.float32), hi.to(torch.float32)


def _amin(tensor: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return torch.amin(tensor, dim=dims) if dims else tensor.clone()


def _amax(tensor: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return torch.amax(tensor, dim=dims) if dims else tensor.clone()


class MinMaxObserver:
    """Running min and max over every observed tensor (NNI PTQ's tracker, not an EMA).

    With a kernel the stats have the kernel's block shape for the observed tensor; for an
    activation ``[B, C, H, W]`` with per_channel (dim 1, NNI's meaning) that is
    ``[1, C, 1, 1]``, and for ``[B, T, C]`` it is ``[1, T, 1]``. The stats are float32
    tensors owned by the observer, updated in place; observed tensors are not kept.
    """

    def __init__(self, kernel: BlockKernel | None = None, subject: str = "tensor") -> None:
        self.kernel = kernel
        self.subject = subject
        self.min_val: torch.Tensor | None = None
        self.max_val: torch.Tensor | None = None

    @property
    def observed(self) -> bool:
        return self.min_val is not None

    def observe(self, x: torch.Tensor) -> None:
        """Fold one tensor's per-block min/max into the running stats."""
        lo, hi = weight_min_max(x, self.kernel, self.subject)
        if self.min_val is None or self.max_val is None:
            self.min_val, self.max_val = lo, hi
            return
        self._check_shape(lo.shape, self.min_val.shape, x)
        with torch.no_grad():
            torch.minimum(self.min_val, lo.to(self.min_val.device), out=self.min_val)
            torch.maximum(self.max_val, hi.to(self.max_val.device), out=self.max_val)

    def _check_shape(self, new: torch.Size, running: torch.Size, x: torch.Tensor) -> None:
        if new != running:
            fail(
                "P501",
                f"a tensor of shape {list(x.shape)} gives block stats of shape "
                f"{list(new)}, but earlier tensors gave {list(running)}",
                subject=self.subject,
                hint="a granularity that blocks the batch dim needs one batch size throughout",
            )
