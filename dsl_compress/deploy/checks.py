"""A plan checked for deployment before any work: what a compressed-tensors checkpoint cannot
hold (F101, errors) and what the target server refuses (vLLM: V101-V105, errors when it is
the target, warnings otherwise); the schemes of what it can hold."""

from __future__ import annotations

from typing import Any

from dsl_compress.deploy.ct_args import ModuleScheme
from dsl_compress.deploy.ct_schemes import ct_schemes, other_module_types, tied_quantized
from dsl_compress.deploy.findings import merged
from dsl_compress.deploy.model_shape import ModelShape
from dsl_compress.deploy.vllm_checks import vllm_findings
from dsl_compress.diagnostics import Diagnostic, Severity, source_order
from dsl_compress.plan import Plan


def deployment_findings(
    plan: Plan, model: Any, target: str | None = None
) -> tuple[dict[str, ModuleScheme], list[Diagnostic]]:
    """The schemes of ``plan`` on ``model`` (a torch module, a skeleton or a manifest's
    stand-in) and every finding at once, one per rule and problem. A quantized module type
    the format skips is F101, or V104 when vLLM is the ``target``."""
    shape = ModelShape.of(model)
    schemes, found = ct_schemes(plan, shape)
    found += tied_quantized(plan, shape, schemes)
    found += other_module_types(plan, shape, "V104" if target == "vllm" else "F101")
    served = vllm_findings(plan, shape, schemes)
    severity = Severity.ERROR if target == "vllm" else Severity.WARNING
    return schemes, sorted(merged(found) + merged(served, severity), key=source_order)
