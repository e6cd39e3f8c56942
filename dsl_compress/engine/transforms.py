"""The per-tensor transform the engine installs (quantize, then mask) and the cache of its result."""

from __future__ import annotations

from typing import Any, Callable, Sequence

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
        self._steps = _StepsFor()

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
        if eager_without_graph(x):
            steps = self._steps.of(x, self.scale, self.zero_point, self.quant)
            if steps is not None:
                return steps.apply(x)
        return fake_quantize(x, self.scale, self.zero_point, qrange, kernel)


class _IntZeroPoint:
    """The zero point as int32 for the fused kernels, read once per change of the zero point
    rather than on every forward (a read of a GPU tensor waits for the device)."""

    def __init__(self) -> None:
        self._stamp: tuple | None = None
        self._value: torch.Tensor | None = None

    def of(self, zero_point: torch.Tensor) -> torch.Tensor | None:
        stamp = _stamp(zero_point)
        if stamp != self._stamp:
            self._value, self._stamp = integer_zero_point(zero_point), stamp
        return self._value


class _StepsFor:
    """The fake-quant constants (:class:`PreparedSteps`) for the latest tensor's shape, dtype
    and device, worked out again only when those, or the scale and zero point, change: an
    activation tap otherwise broadcasts the scale and checks its kind on every forward."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._quant: QuantParams | None = None
        self._value: PreparedSteps | None = None

    def of(
        self, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, quant: QuantParams
    ) -> PreparedSteps | None:
        key = (x.shape, x.dtype, x.device, _stamp(scale), _stamp(zero_point))
        if key != self._key or quant is not self._quant:
            scale = broadcast_blocks(scale, x, quant.kernel, "tensor")
            zero_point = broadcast_blocks(zero_point, x, quant.kernel, "tensor")
            qmin, qmax = quant.qrange.qmin, quant.qrange.qmax
            self._value = prepare_steps(x, scale, zero_point, qmin, qmax)
            self._key, self._quant = key, quant
        return self._value

    def __getstate__(self) -> dict:
        return vars(_StepsFor())


def eager_without_graph(tensor: Any) -> bool:
    """A plain strided tensor with data that needs no graph, outside tracing and compiling:
    the prepared steps may run on it (anything else takes :func:`fake_quantize`'s checks)."""
    if type(tensor) not in _PLAIN or tensor.layout is not torch.strided:
        return False
    if tensor.device.type == "meta":
        return False
    if torch.is_grad_enabled() and tensor.requires_grad:
        return False
    return not (torch.jit.is_tracing() or _compiling())


# ----- the result cache -----

# Plain tensors only: subclasses (fake, functorch-wrapped, distributed) may not have a stable
# data pointer or version counter, so their results are always computed.
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _stamp(tensor: torch.Tensor | None) -> tuple | None:
    """What changes when a tensor's contents may have changed, short of reading them.

    ``_version`` counts in-place writes through the tensor and its views (optimizer
    steps, ``copy_`` under no_grad, ``load_state_dict``); the data pointer, dtype, device
    and shape change when ``.data`` is reassigned or the module is moved or cast.
    """
    if tensor is None:
        return None
    return (tensor._version, tensor.data_ptr(), tensor.dtype, tensor.device, tensor.shape)


def cacheable(tensor: Any) -> bool:
    """Whether a result computed from ``tensor`` may be kept: no graph needed, no tracing."""
    return eager_without_graph(tensor) and not tensor.is_inference()


def _compiling() -> bool:
    """torch.compile is tracing (torch.compiler.is_compiling exists from torch 2.3 on)."""
    check = getattr(torch.compiler, "is_compiling", None)
    return bool(check is not None and check())


class ResultCache:
    """One result and the tensors it came from; stale as soon as any of them is written.

    The inputs are held (so their ids stay theirs) and compared by identity and
    :func:`_stamp`. The result's own stamp is checked too, so a caller that writes into
    the served tensor does not poison later reads. Results are computed without a graph
    and outside inference mode: an inference tensor has no version counter and cannot be
    saved for backward or set into a parameter, and a normal one serves in every mode.
    Writes through ``tensor.data`` bypass the version counter, as they bypass autograd's
    checks: such a write into an unchanged storage is not seen. Pickling or deep-copying
    drops the entry.
    """

    def __init__(self) -> None:
        self._inputs: tuple = ()
        self._stamps: tuple = ()
        self._result: torch.Tensor | None = None
        self._result_stamp: tuple | None = None

    def get(
        self,
        settings: Sequence[object],
        inputs: Sequence[torch.Tensor | None],
        compute: Callable[[], torch.Tensor],
    ) -> torch.Tensor:
        """The kept result if ``settings`` (by identity) and ``inputs`` are unchanged, else a new one."""
        current = (*settings, *inputs)
        stamps = tuple(_stamp(t) for t in inputs)
        if self._fresh(current, stamps):
            return self._result  # type: ignore[return-value]
        self.clear()
        with torch.inference_mode(False), torch.no_grad():
            result = compute()
        self._inputs, self._stamps = current, stamps
        self._result, self._result_stamp = result, _stamp(result)
        return result

    def clear(self) -> None:
        """Forget the kept result (and the references to its inputs)."""
        self._inputs, self._stamps = (), ()
        self._result = self._result_stamp = None

    def _fresh(self, current: tuple, stamps: tuple) -> bool:
        result = self._result
        if result is None or len(current) != len(self._inputs):
            return False
        if any(a is not b for a, b in zip(current, self._inputs)) or stamps != self._stamps:
            return False
        return _stamp(result) == self._result_stamp

    def __getstate__(self) -> dict:
        return vars(ResultCache())
