"""The command's progress bars: the engine's progress(done, total, label) calls drawn by tqdm on
stderr when it is a terminal, nothing otherwise."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator

# Done/total, elapsed<remaining and rate, then the label last: labels (tensor names) vary in
# length from one step to the next, and at the end they do not shift the bar.
KNOWN_TOTAL = (
    "{percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}] {desc}"
)
UNKNOWN_TOTAL = "{n_fmt} [{elapsed}, {rate_fmt}] {desc}"


class Bars:
    """A progress callback: one bar per count (a new one when the total changes or the count
    starts again), closed when its count is done; ``close`` ends the one still drawn."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._bar: Any = None
        self._total = 0

    def __call__(self, done: int, total: int, label: str) -> None:
        if self._bar is None or total != self._total or done < self._bar.n:
            self.close()
            self._bar = self._open(total)
            self._total = total
        self._bar.set_description_str(label, refresh=False)
        self._bar.update(done - self._bar.n)
        if total and done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _open(self, total: int) -> Any:
        from tqdm import tqdm  # only a command on a terminal draws

        return tqdm(
            total=total or None,  # 0: the count has no known end (calibration from an iterator)
            file=self._stream,
            bar_format=KNOWN_TOTAL if total else UNKNOWN_TOTAL,
            unit="step",
            dynamic_ncols=True,
            disable=False,
        )


@contextlib.contextmanager
def progress_bars() -> Iterator[Callable[[int, int, str], None] | None]:
    """Bars on stderr while it is a terminal, else None (silent); the last bar is closed on
    leaving, errors and interrupts included, so a message that follows starts on its own line."""
    if not sys.stderr.isatty():
        yield None
        return
    bars = Bars(sys.stderr)
    try:
        yield bars
    finally:
        bars.close()
