"""The per-tensor transform the engine installs: quantize, then mask."""

from __future__ import annotations

import torch

from dsl_compress.engine.quant_math import (
    broadcast_blocks,
    fake_quantize,
    fused_fake_quantize,
    fused_kernels_pay_off,
    integer_zero_point,
    quant_codes,
)
from dsl_compress.diagnostics import fail
from dsl_compress.engine.quant_steps import PreparedSteps, prepare_steps
from dsl_compress.engine.quantize import QuantParams
from dsl_compress.engine.result_cache import (
    ResultCache,
    SharedResult,
    cacheable,
    eager_without_graph,
    quantizer_token,
    stamp,
)

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


# The mask apply methods whose results integer codes hold (an 'add' mask leaves -1000s).
CODED_METHODS = ("mul", "bypass")


def masked_codes(
    x: torch.Tensor, quant: QuantParams, mask: torch.Tensor | None, method: str
) -> torch.Tensor:
    """The integer codes of what :class:`TargetTransform` makes of ``x`` (quantize, then mask):
    a pruned element's code is the zero point, so the codes dequantize to the transform's
    value. Only 'mul' and 'bypass' masks leave values codes can hold."""
    if mask is None or method == "bypass":
        mask = None
    elif method not in CODED_METHODS:
        fail("X803", f"apply_method {method!r} leaves values no integer code holds")
    return quant_codes(x, quant.scale, quant.zero_point, quant.qrange, quant.kernel, keep=mask)


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
        shared: SharedResult | None = None,
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
        self._int_zero_point = _IntZeroPoint()
        self._prepared = _Prepared()
        # Taps without a mask share their latest result with taps of the same quantizer.
        self.shared = shared if quant is not None and mask is None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cache:
            return self._tapped(x)
        if not cacheable(x):
            # Training (a graph through x) or tracing: compute, and drop what training will change.
            self._results.clear()
            return self._compute(x)
        settings = (self.quant, self.fused, self.apply_method)
        tensors = (x, self.scale, self.zero_point, self.mask)
        return self._results.get(settings, tensors, lambda: self._compute(x))

    def _tapped(self, x: torch.Tensor) -> torch.Tensor:
        """An activation: the prepared steps where they apply, the shared result where it may
        be served (the checks run once per forward, on the path every tap takes)."""
        if self.quant is None or not eager_without_graph(x):
            return self._compute(x)
        prepared = self._prepared.of(x, self.scale, self.zero_point, self.quant, self.fused)
        if self.shared is None or x.is_inference() or torch.is_inference_mode_enabled():
            return self._compute(x, prepared)
        return self.shared.get(x, prepared.token, lambda: self._compute(x, prepared))

    def _compute(self, x: torch.Tensor, prepared: _Prepared | None = None) -> torch.Tensor:
        if self.quant is not None:
            x = self._quantize(x, prepared)
        if self.mask is not None:
            x = apply_mask(x, self.mask, self.apply_method)
        return x

    def _quantize(self, x: torch.Tensor, prepared: _Prepared | None) -> torch.Tensor:
        qrange, kernel = self.quant.qrange, self.quant.kernel
        fused = self.fused and fused_kernels_pay_off(x.device)
        int_zero_point = self._int_zero_point.of(self.zero_point) if fused else None
        if int_zero_point is not None:
            args = (x, self.scale, self.zero_point, qrange, kernel)
            return fused_fake_quantize(*args, int_zero_point=int_zero_point)
        if prepared is None and eager_without_graph(x):
            prepared = self._prepared.of(x, self.scale, self.zero_point, self.quant, self.fused)
        if prepared is not None and prepared.steps is not None:
            return prepared.steps.apply(x)
        return fake_quantize(x, self.scale, self.zero_point, qrange, kernel)


class _IntZeroPoint:
    """The zero point as int32 for the fused kernels, read once per change of the zero point
    rather than on every forward (a read of a GPU tensor waits for the device)."""

    def __init__(self) -> None:
        self._stamp: tuple | None = None
        self._value: torch.Tensor | None = None

    def of(self, zero_point: torch.Tensor) -> torch.Tensor | None:
        current = stamp(zero_point)
        if current != self._stamp:
            self._value, self._stamp = integer_zero_point(zero_point), current
        return self._value


class _Prepared:
    """For the latest tensor's shape, dtype and device: the fake-quant constants
    (:class:`PreparedSteps`) and the quantizer's token (:func:`quantizer_token`), worked out
    again only when those, or the scale and zero point, change: a tap otherwise broadcasts
    the scale, checks its kind and reads it on every forward."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._quant: QuantParams | None = None
        self.steps: PreparedSteps | None = None
        self.token: tuple = ()

    def of(
        self,
        x: torch.Tensor,
        scale: torch.Tensor,
        zero_point: torch.Tensor,
        quant: QuantParams,
        fused: bool,
    ) -> _Prepared:
        key = (x.shape, x.dtype, x.device, fused, stamp(scale), stamp(zero_point))
        if key != self._key or quant is not self._quant:
            self.token = quantizer_token((quant.qrange, quant.kernel, fused), scale, zero_point)
            scale = broadcast_blocks(scale, x, quant.kernel, "tensor")
            zero_point = broadcast_blocks(zero_point, x, quant.kernel, "tensor")
            qmin, qmax = quant.qrange.qmin, quant.qrange.qmax
            self.steps = prepare_steps(x, scale, zero_point, qmin, qmax)
            self._key, self._quant = key, quant
        return self

    def __getstate__(self) -> dict:
        return vars(_Prepared())
