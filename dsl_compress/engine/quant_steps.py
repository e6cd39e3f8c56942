"""The exact fake-quant formula run step by step in place, and its constants prepared once for
the transforms that run it on every forward."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Elements per slice of the chunked formula: 512 KiB of float32 stays in cache between steps.
_CHUNK = 1 << 17
# Only tensors above this many elements go through in slices. Below it the float32 working
# copy (4 MiB at most) stays in the caches anyway, and each slice costs eight more op calls:
# on one CPU thread a bf16 or fp32 tensor of 2^16..2^20 elements ran 5-20% slower chunked,
# while from 2^21 on the slices win (up to 4x at 2^23, where whole-tensor temporaries are
# fresh pages on every call).
_CHUNK_FROM = 1 << 20


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the fake-quant formula runs in for a tensor of ``dtype``: float32 for fp16
    and bf16 (whose 8- and 11-bit mantissas cannot hold ``x / scale`` to the nearest
    integer step of int8), the tensor's own dtype from float32 up."""
    return torch.promote_types(dtype, torch.float32)


def clamp_round(x, scale, zero_point, qmin: int, qmax: int) -> torch.Tensor:
    """``(round(clamp(x / scale + zp, qmin, qmax)) - zp) * scale`` on ``x`` raised to
    :func:`compute_dtype`, step by step as written; the result has ``x``'s dtype.

    Each step runs in place on one buffer, which gives the same bits as the out-of-place
    expression when the buffer already has the expression's dtype and shape (zero point
    shaped and typed like the scale, float32 or the compute dtype); a per-tensor scale on a
    large contiguous CPU tensor goes through in cache-sized chunks. Anything else, tracing
    and ``torch.func`` transforms are the expression.
    """
    work = compute_dtype(x.dtype)
    if torch.jit.is_tracing() or functorch_wrapped(x) or not same_kind(zero_point, scale, work):
        # A traced graph records the expression itself, with no shape-dependent branches;
        # vmap has batching rules for the out-of-place ops, not for in-place clamp.
        y = x.to(work)
        return (
            (torch.round(torch.clamp(y / scale + zero_point, qmin, qmax)) - zero_point) * scale
        ).to(x.dtype)
    return run_steps(x, scale, zero_point, qmin, qmax, work)


def functorch_wrapped(tensor: torch.Tensor) -> bool:
    """A tensor inside a ``torch.func`` transform (vmap's batched, grad's tracking tensors):
    its type is plain, but it has no storage of its own (no data pointer to read)."""
    return _IS_WRAPPED is not None and bool(_IS_WRAPPED(tensor))


# torch._C._functorch is private; without it no wrapped tensor can be told apart.
_IS_WRAPPED = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)


def same_kind(zero_point: torch.Tensor, scale: torch.Tensor, work: torch.dtype) -> bool:
    """Whether the in-place steps give the expression's bits: a zero point shaped and typed
    like the scale, and a scale no wider than the dtype the steps run in."""
    return (
        zero_point.shape == scale.shape
        and zero_point.dtype == scale.dtype
        and torch.promote_types(work, scale.dtype) == work
    )


def run_steps(x, scale, zero_point, qmin: int, qmax: int, work: torch.dtype) -> torch.Tensor:
    """The formula's steps in place on one buffer of ``work`` dtype (in slices for a large
    tensor)."""
    if x.numel() <= _CHUNK_FROM or not _chunkable(x, scale):
        y = torch.div(x, scale) if x.dtype == work else x.to(work).div_(scale)
        return _steps(y, scale, zero_point, qmin, qmax).to(x.dtype)
    return _chunked(x, scale, zero_point, qmin, qmax, work)


def _chunked(x, scale, zero_point, qmin, qmax, work) -> torch.Tensor:
    """The formula over flat cache-sized slices of a contiguous tensor, into one output of
    ``x``'s dtype; a narrower ``x`` is raised to ``work`` one slice at a time."""
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    flat_x, flat_out = x.reshape(-1), out.view(-1)
    # One-element, one-dimensional: a kept-dims scale such as (1, 1) would broadcast each flat
    # chunk to (1, n). The scale's dtype is the work dtype, so the division runs in it.
    scale, zero_point = scale.reshape(1), zero_point.reshape(1)
    scratch = None if x.dtype == work else torch.empty(_CHUNK, dtype=work, device=x.device)
    for start in range(0, flat_x.numel(), _CHUNK):
        source, target = flat_x[start : start + _CHUNK], flat_out[start : start + _CHUNK]
        if scratch is None:
            torch.div(source, scale, out=target)
            _steps(target, scale, zero_point, qmin, qmax)
        else:
            # Raising to work is exact, so copying first divides the same values; a
            # same-dtype division is faster than one that converts as it reads.
            chunk = scratch[: target.numel()].copy_(source).div_(scale)
            target.copy_(_steps(chunk, scale, zero_point, qmin, qmax))
    return out


def _chunkable(x: torch.Tensor, scale: torch.Tensor) -> bool:
    """A per-tensor scale on a contiguous CPU tensor: the formula may run over flat slices."""
    return (
        scale.numel() == 1
        and scale.dim() <= x.dim()
        and x.is_contiguous()
        and x.device.type == "cpu"
    )


def _steps(y: torch.Tensor, scale, zero_point, qmin: int, qmax: int) -> torch.Tensor:
    """The steps after the division, in place on ``y`` (which holds ``x / scale``)."""
    return y.add_(zero_point).clamp_(qmin, qmax).round_().sub_(zero_point).mul_(scale)


@dataclass(frozen=True)
class PreparedSteps:
    """The formula's constants for tensors of one shape, dtype and device, worked out once:
    the scale and zero point broadcast over the tensor and the dtype the steps run in.

    Nothing is read from the scale or zero point here, so a write into them (in place,
    through ``.data`` too) reaches the steps as long as the broadcast tensors are views of
    them; :class:`~dsl_compress.engine.transforms.TargetTransform` keeps prepared steps only
    then. The zero point is always subtracted back: leaving out ``- (+0.0)`` would need a
    read of the zero point that a ``.data`` write could make stale.
    """

    scale: torch.Tensor
    zero_point: torch.Tensor
    qmin: int
    qmax: int
    work: torch.dtype

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``clamp_round(x, ...)`` bit for bit, without its per-call checks."""
        return run_steps(x, self.scale, self.zero_point, self.qmin, self.qmax, self.work)


def prepare_steps(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int
) -> PreparedSteps | None:
    """The constants for tensors like ``x`` (scale and zero point already broadcastable
    over it), or None where :func:`clamp_round` would run the expression instead. Reads
    no tensor values (no device sync)."""
    work = compute_dtype(x.dtype)
    if not same_kind(zero_point, scale, work):
        return None
    return PreparedSteps(scale, zero_point, qmin, qmax, work)
