"""dsl-compress: declarative compression rules for PyTorch models, compatible with NNI 3.0."""

from __future__ import annotations

from dsl_compress.api import apply, distill, prune, quantize, run_plan
from dsl_compress.diagnostics import CompressionError, CompressionWarning, Diagnostic, Severity
from dsl_compress.engine import Compression
from dsl_compress.formatter import format_rules as format
from dsl_compress.modes import Mode
from dsl_compress.plan import Plan, PlanEntry
from dsl_compress.resolve import build_plan
from dsl_compress.ruleset import Compiled, RuleSet, load, parse
from dsl_compress.settings import (
    DEFAULT_REGISTRY,
    DistillationSetting,
    PruningSetting,
    QuantizationSetting,
    Registry,
    canonicalize,
)

__version__ = "0.1.0"

__all__ = [
    "Compiled",
    "RuleSet",
    "apply",
    "format",
    "load",
    "parse",
    "Compression",
    "CompressionError",
    "CompressionWarning",
    "DEFAULT_REGISTRY",
    "Diagnostic",
    "DistillationSetting",
    "Mode",
    "Plan",
    "PlanEntry",
    "PruningSetting",
    "QuantizationSetting",
    "Registry",
    "Severity",
    "build_plan",
    "canonicalize",
    "distill",
    "prune",
    "quantize",
    "run_plan",
]
