"""What a deployment target refuses in a plan, as lint reports it (`lint --target vllm`) and as
`apply --format compressed-tensors` checks it before any work (torch-free: a manifest's
stand-in serves as the model)."""

from __future__ import annotations

from typing import Any

from dsl_compress.deploy.ct_schemes import ModelShape, ct_schemes
from dsl_compress.deploy.vllm_checks import vllm_findings
from dsl_compress.diagnostics import Diagnostic, Severity
from dsl_compress.plan import Plan


def target_findings(
    plan: Plan, model: Any, target: str, severity: Severity = Severity.ERROR
) -> list[Diagnostic]:
    """F101 for what a compressed-tensors checkpoint cannot hold, then ``target``'s own
    refusals (V101-V104) at ``severity``, each located at its rule."""
    shape = ModelShape.of(model)
    # vLLM names a module type it does not quantize under its own code (V104).
    schemes, found = ct_schemes(plan, shape, module_types=target != "vllm")
    if target == "vllm":
        found += vllm_findings(plan, shape, schemes, severity)
    return found
