"""Pausing Python's cyclic garbage collector while the command reads rules.

Only the command does this, for the whole of a text job (lint, fmt, compile, explain) or the
rules-reading part of apply: the process is ours. Library calls never touch the collector,
which belongs to whatever program imported us (a training job, a notebook).
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside: parsing and resolving allocate objects that all stay alive,
    so every collection would scan them in vain (over half the time of a 10,000-statement
    parse). Reference counting still frees garbage; the collector resumes as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
