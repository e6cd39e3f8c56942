"""The three compression modes, the closed set every stage keys its tables by."""

from __future__ import annotations

import enum


class Mode(str, enum.Enum):
    """A compression mode, named as the DSL and the CLI spell it."""

    PRUNE = "prune"
    QUANTIZE = "quantize"
    DISTILL = "distill"
