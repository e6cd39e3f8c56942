"""The per-tensor transform the engine installs: quantize, then mask."""

from __future__ import annotations

from dataclasses import dataclass

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
from dsl_compress.engine.result_cache import ResultCache, cacheable, eager_without_graph, stamp

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
            x = self._quantize(x)
        if self.mask is not None:
            x = apply_mask(x, self.mask, self.apply_method)
        return x

    def _quantize(self, x: torch.Tensor) -> torch.Tensor:
        qrange, kernel = self.quant.qrange, self.quant.kernel
        fused = self.fused and fused_kernels_pay_off(x.device)
        int_zero_point = self._int_zero_point.of(self.zero_point) if fused else None
        if int_zero_point is not None:
            args = (x, self.scale, self.zero_point, qrange, kernel)
            return fused_fake_quantize(*args, int_zero_point=int_zero_point)
        steps = None
        if eager_without_graph(x):
            steps = self._prepared.of(x, self.scale, self.zero_point, self.quant)
        if steps is not None:
            return steps.apply(x)
        return fake_quantize(x, self.scale, self.zero_point, qrange, kernel)


class _IntZeroPoint:
    """The zero point as int32 for the fused kernels, read once per change of the zero point
    rather than on every forward (a read of a GPU tensor waits for the device).

    A change is told by :func:`stamp`, so a write through ``zero_point.data`` into the same
    memory (which bypasses the version counter) is not seen here: assign or write the
    buffer itself. The exact path (:class:`_Prepared`) sees such writes.
    """

    def __init__(self) -> None:
        self._stamp: tuple | None = None
        self._value: torch.Tensor | None = None

    def of(self, zero_point: torch.Tensor) -> torch.Tensor | None:
        current = stamp(zero_point)
        if current != self._stamp:
            self._value, self._stamp = integer_zero_point(zero_point), current
        return self._value


class _Prepared:
    """The prepared steps (:class:`PreparedSteps`) for the latest input's shape, dtype and
    device, made again when those change or the scale, zero point or quantizer is another
    object or moved to other memory: a tap otherwise broadcasts the scale and checks its kind
    on every forward.

    Steps are kept only when their scale and zero point are views of the buffers, so every
    write into the buffers' memory (in place or through ``.data``) reaches them, as it
    reached the formula computed from the buffers on each forward; a broadcast that copies
    (blocks of several elements) is made on each forward. The buffers are held, so their
    ids and memory stay theirs. The latest steps and what they were made for are one
    immutable snapshot, read and replaced in one step, so concurrent forwards with inputs
    of other shapes or dtypes each get steps made for their own input.
    """

    def __init__(self) -> None:
        self._snapshot: _Snapshot | None = None

    def of(
        self, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, quant: QuantParams
    ) -> PreparedSteps | None:
        """Steps for ``x``, or None where :func:`fake_quantize` runs the expression."""
        layout = (x.shape, x.dtype, x.device, _memory(scale), _memory(zero_point))
        kept = self._snapshot
        if kept is not None and kept.made_for(scale, zero_point, quant, layout):
            return kept.steps
        broadcast = [broadcast_blocks(t, x, quant.kernel, "tensor") for t in (scale, zero_point)]
        steps = prepare_steps(x, *broadcast, quant.qrange.qmin, quant.qrange.qmax)
        if all(_same_memory(b, t) for b, t in zip(broadcast, (scale, zero_point))):
            self._snapshot = _Snapshot(scale, zero_point, quant, layout, steps)
        return steps

    def __getstate__(self) -> dict:
        return vars(_Prepared())


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """Prepared steps and the objects and layout they were made for."""

    scale: torch.Tensor
    zero_point: torch.Tensor
    quant: QuantParams
    layout: tuple
    steps: PreparedSteps | None

    def made_for(self, scale, zero_point, quant, layout: tuple) -> bool:
        # Identity, not ==: tensors compare elementwise.
        same = self.scale is scale and self.zero_point is zero_point and self.quant is quant
        return same and self.layout == layout


def _memory(tensor: torch.Tensor) -> tuple:
    """Where a tensor's values lie and how they are laid out (not what they are)."""
    return (tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.dtype, tensor.device)


def _same_memory(view: torch.Tensor, tensor: torch.Tensor) -> bool:
    """Whether ``view`` reads ``tensor``'s memory (so a write into it shows)."""
    if view is tensor:
        return True
    return view.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr()
