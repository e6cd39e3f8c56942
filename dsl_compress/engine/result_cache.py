"""What a transform may keep between forwards: the stamp that tells a tensor changed and the
cache of a weight's transformed value."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from dsl_compress.engine.quant_steps import functorch_wrapped


def eager_without_graph(tensor: Any) -> bool:
    """A plain strided tensor with data that needs no graph, outside tracing and compiling:
    the prepared steps may run on it (anything else takes :func:`fake_quantize`'s checks)."""
    if type(tensor) not in _PLAIN or tensor.layout is not torch.strided:
        return False
    if tensor.device.type == "meta" or functorch_wrapped(tensor):
        return False
    if torch.is_grad_enabled() and tensor.requires_grad:
        return False
    return not (torch.jit.is_tracing() or _compiling())


# Plain tensors only: subclasses (fake, distributed) may not have a stable data pointer or
# version counter, so their results are always computed.
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def stamp(tensor: torch.Tensor | None) -> tuple | None:
    """What changes when a tensor's contents may have changed, short of reading them.

    ``_version`` counts in-place writes through the tensor and its views (optimizer
    steps, ``copy_`` under no_grad, ``load_state_dict``); the data pointer, dtype, device
    and shape change when ``.data`` is reassigned or the module is moved or cast.
    """
    if tensor is None:
        return None
    if tensor.is_inference():
        # No version counter: a stamp equal to no other, so nothing made from it is kept.
        return (object(),)
    return (tensor._version, tensor.data_ptr(), tensor.dtype, tensor.device, tensor.shape)


def cacheable(tensor: Any) -> bool:
    """Whether a result computed from ``tensor`` may be kept: no graph needed, no tracing."""
    return eager_without_graph(tensor) and not tensor.is_inference()


# torch.compiler.is_compiling exists from torch 2.3 on.
_IS_COMPILING = getattr(torch.compiler, "is_compiling", None)


def _compiling() -> bool:
    """torch.compile is tracing."""
    return bool(_IS_COMPILING is not None and _IS_COMPILING())


class ResultCache:
    """One result and the tensors it came from; stale as soon as any of them is written.

    The inputs are held (so their ids stay theirs) and compared by identity and
    :func:`stamp`. The result's own stamp is checked too, so a caller that writes into
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
        stamps = tuple(stamp(t) for t in inputs)
        if self._fresh(current, stamps):
            return self._result  # type: ignore[return-value]
        self.clear()
        with torch.inference_mode(False), torch.no_grad():
            result = compute()
        self._inputs, self._stamps = current, stamps
        self._result, self._result_stamp = result, stamp(result)
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
        return stamp(result) == self._result_stamp

    def __getstate__(self) -> dict:
        return vars(ResultCache())
