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
    "execute_plan": ("api", "execute_plan"),
    "EngineOptions": ("engine.options", "EngineOptions"),
    "CompressionError": ("diagnostics", "CompressionError"),
    "CompressionWarning": ("diagnostics", "CompressionWarning"),
    "Diagnostic": ("diagnostics", "Diagnostic"),
    "Severity": ("diagnostics", "Severity"),
    "Compression": ("engine.compression", "Compression"),
    "format": ("language.format", "format_rules"),
    "Mode": ("vocab", "Mode"),
    "Plan": ("plan", "Plan"),
    "PlanEntry": ("plan", "PlanEntry"),
    "build_plan": ("resolve.from_config", "build_plan"),
    "Compiled": ("resolve.ruleset", "Compiled"),
    "RuleSet": ("resolve.ruleset", "RuleSet"),
    "load": ("resolve.ruleset", "load"),
    "parse": ("resolve.ruleset", "parse"),
    "DEFAULT_REGISTRY": ("schema.registry", "DEFAULT_REGISTRY"),
    "DistillationSetting": ("schema.registry", "DistillationSetting"),
    "PruningSetting": ("schema.registry", "PruningSetting"),
    "QuantizationSetting": ("schema.registry", "QuantizationSetting"),
    "Registry": ("schema.registry", "Registry"),
    "canonicalize": ("schema.registry", "canonicalize"),
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
    "execute_plan",
    "EngineOptions",
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
    from dsl_compress.api import apply, distill, execute_plan, prune, quantize, run_plan
    from dsl_compress.diagnostics import (
        CompressionError,
        CompressionWarning,
        Diagnostic,
        Severity,
    )
    from dsl_compress.engine.compression import Compression
    from dsl_compress.engine.options import EngineOptions
    from dsl_compress.language.format import format_rules as format
    from dsl_compress.vocab import Mode
    from dsl_compress.plan import Plan, PlanEntry
    from dsl_compress.resolve.from_config import build_plan
    from dsl_compress.resolve.ruleset import Compiled, RuleSet, load, parse
    from dsl_compress.schema.registry import (
        DEFAULT_REGISTRY,
        DistillationSetting,
        PruningSetting,
        QuantizationSetting,
        Registry,
        canonicalize,
    )
