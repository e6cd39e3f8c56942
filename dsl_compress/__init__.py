"""dsl-compress: declarative compression rules for PyTorch models, compatible with NNI 3.0.

The public names load on first use (PEP 562), so the command can parse, format and lint rules
without importing torch until a model is involved.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> (module, attribute in it).
_EXPORTS = {
    "apply": ("api", "apply"),
    "distill": ("api", "distill"),
    "prune": ("api", "prune"),
    "quantize": ("api", "quantize"),
    "run_plan": ("api", "run_plan"),
    "CompressionError": ("diagnostics", "CompressionError"),
    "CompressionWarning": ("diagnostics", "CompressionWarning"),
    "Diagnostic": ("diagnostics", "Diagnostic"),
    "Severity": ("diagnostics", "Severity"),
    "Compression": ("engine", "Compression"),
    "format": ("formatter", "format_rules"),
    "Mode": ("modes", "Mode"),
    "Plan": ("plan", "Plan"),
    "PlanEntry": ("plan", "PlanEntry"),
    "build_plan": ("resolve", "build_plan"),
    "Compiled": ("ruleset", "Compiled"),
    "RuleSet": ("ruleset", "RuleSet"),
    "load": ("ruleset", "load"),
    "parse": ("ruleset", "parse"),
    "DEFAULT_REGISTRY": ("settings", "DEFAULT_REGISTRY"),
    "DistillationSetting": ("settings", "DistillationSetting"),
    "PruningSetting": ("settings", "PruningSetting"),
    "QuantizationSetting": ("settings", "QuantizationSetting"),
    "Registry": ("settings", "Registry"),
    "canonicalize": ("settings", "canonicalize"),
}

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dsl_compress' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(f"dsl_compress.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # what type checkers and IDEs see
    from dsl_compress.api import apply, distill, prune, quantize, run_plan
    from dsl_compress.diagnostics import (
        CompressionError,
        CompressionWarning,
        Diagnostic,
        Severity,
    )
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
