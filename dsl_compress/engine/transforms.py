"""The per-tensor transform the engine installs: simulated quantization, then the mask."""

from __future__ import annotations

import torch

from dsl_compress.engine.quant_math import fake_quantize, fused_fake_quantize
from dsl_compress.engine.quantize import QuantParams
from dsl_compress.engine.result_cache import ResultCache, cacheable

# NNI's 'add' apply method pushes pruned positions to a large negative value (before a softmax).
ADD_PENALTY = -1000.0


def apply_mask(x: torch.Tensor, mask: torch.Tensor, method: str) -> torch.Tensor:
    """Apply a bool mask (True = kept) the way NNI's apply methods do."""
    if method == "mul":
        return x * mask
    if method == "add":
        return x + torch.where(mask, 0.0, ADD_PENALTY).to(x.dtype)
    if method == "bypass":
        return x
    raise ValueError(f"apply_method {method!r} is not 'mul', 'add' or 'bypass'")


class TargetTransform(torch.nn.Module):
    """Quantize-then-mask for one tensor; used as a parametrization or as an activation tap.

    With ``cache=True`` (parametrizations) the result is kept and served again while the
    tensor, its scale, zero point and mask are unchanged and no graph is needed through it
    (see :class:`ResultCache`): a weight is fake-quantized once per change, not on every
    forward. It costs one float copy of the tensor while the model runs without grad.
    """

    def __init__(
        self,
        mask: torch.Tensor | None = None,
        apply_method: str = "mul",
        quant: QuantParams | None = None,
        fused: bool = False,
        cache: bool = False,
    ):
        super().__init__()
        self.register_buffer("mask", mask)
        self.apply_method = apply_method
        self.quant = quant
        self.fused = fused
        self.register_buffer("scale", None if quant is None else quant.scale)
        self.register_buffer("zero_point", None if quant is None else quant.zero_point)
        self.cache = cache
        self._results = ResultCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cache:
            return self._compute(x)
        if not cacheable(x):
            # Training (a graph through x) or tracing: compute, and drop what training will change.
            self._results.clear()
            return self._compute(x)
        settings = (self.quant, self.fused, self.apply_method)
        tensors = (x, self.scale, self.zero_point, self.mask)
        return self._results.get(settings, tensors, lambda: self._compute(x))

    def _compute(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant is not None:
            quantize = fused_fake_quantize if self.fused else fake_quantize
            x = quantize(x, self.scale, self.zero_point, self.quant.qrange, self.quant.kernel)
        if self.mask is not None:
            x = apply_mask(x, self.mask, self.apply_method)
        return x
