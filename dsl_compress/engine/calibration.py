"""Calibration runs: batches fed through a model in eval mode, with temporary taps when asked."""

from __future__ import annotations

from typing import Any, Callable

import torch

from dsl_compress.diagnostics import CompressionError, fail
from dsl_compress.engine.options import Progress
from dsl_compress.engine.taps import TapFn, install_tap


def run_batches(
    model: torch.nn.Module,
    batches,
    step: Callable[[Any], Any] | None = None,
    progress: Progress | None = None,
    label: str = "calibration",
) -> int:
    """Feed batches through the model in eval mode, restoring every module's training flag.

    ``progress(done, total, label)`` is called after each batch (total 0 when ``batches`` has
    no length).
    """
    flags = {m: m.training for m in model.modules()}
    total = len(batches) if hasattr(batches, "__len__") else 0
    model.eval()
    count = 0
    try:
        for batch in batches:
            guarded_batch(step or (lambda b: call_model(model, b)), batch, count)
            count += 1
            if progress is not None:
                progress(count, total, label)
    finally:
        for module, flag in flags.items():
            module.training = flag
    return count


BATCH_HINT = "a batch is a tensor, a tuple of positional inputs or a dict of keyword inputs"


def guarded_batch(
    step: Callable[[Any], Any],
    batch: Any,
    index: int,
    who: str = "the model",
    hint: str = BATCH_HINT,
) -> None:
    """A model (``who``) that rejects a batch is a clear error, not a traceback from inside it."""
    try:
        step(batch)
    except CompressionError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's model raised
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        fail(
            "L103",
            f"running {who} on calibration batch {index} raised {type(exc).__name__}: {message}",
            subject=f"calibration batch {index}",
            hint=hint,
        )


def run_with_taps(
    model: torch.nn.Module,
    taps: list[tuple[torch.nn.Module, str, TapFn]],
    batches,
    progress: Progress | None = None,
) -> None:
    """Run batches without gradients with temporary taps installed, removing them whatever happens."""
    handles = [install_tap(module, target, fn) for module, target, fn in taps]
    try:
        with torch.no_grad():
            run_batches(model, batches, progress=progress)
    finally:
        for handle in handles:
            handle.remove()


def call_model(model: torch.nn.Module, batch: Any) -> Any:
    """A batch is a tensor, a tuple/list of positional inputs, or a dict of keyword inputs."""
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def first_shapes(
    model: torch.nn.Module, targets: list[tuple[torch.nn.Module, str, Any]], batches
) -> dict[Any, tuple[int, ...]]:
    """The shape each (module, target) first shows, by the key given with it: batches are run
    one at a time until every target has shown one (usually the first) or none are left."""
    shapes: dict[Any, tuple[int, ...]] = {}

    def recorder(key: Any) -> TapFn:
        def record(tensor: torch.Tensor) -> None:
            shapes.setdefault(key, tuple(tensor.shape))

        return record

    taps = [(module, target, recorder(key)) for module, target, key in targets]
    for batch in batches:
        run_with_taps(model, taps, [batch])
        if len(shapes) == len(targets):
            break
    return shapes
