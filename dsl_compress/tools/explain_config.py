"""explain for an NNI config_list: for each tensor, the config that set it (the first config
that selects a tensor wins, as in NNI 3.0) and where that config is in the file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dsl_compress.plan import PlanEntry
from dsl_compress.resolve.config_input import ConfigInput
from dsl_compress.schema.config_text import subject_span
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.tools.explain import (
    Candidate,
    Explanation,
    KeyDecision,
    NoSettings,
    TensorExplanation,
)
from dsl_compress.tools.explain_target import select_target, tensors_without_plan

if TYPE_CHECKING:
    import torch

FIRST_WINS = "the first config that selects this tensor (NNI 3.0: the first config wins)"


def explain_config_list(
    config: ConfigInput, model: torch.nn.Module, metric: str | None, target: str | None = None
) -> Explanation:
    """Every planned tensor, or those the selector ``target`` picks (read as a .rules statement
    reads it, as for rules), and with a target the picked tensors no config selects; L106 when
    it picks no tensor."""
    plan = config.plan(model, metric)
    if target is None:
        return Explanation(tuple(_explained(entry, config) for entry in plan.entries))
    index = ModelIndex.of(model)
    selection = select_target(target, index, plan)
    picked = [e for e in plan.entries if selection.picks(e.module, e.target)]
    unset = tensors_without_plan(selection, index, plan)
    return Explanation(
        tuple(_explained(entry, config) for entry in picked),
        tuple(NoSettings(module, name, ()) for module, name in unset),
    )


def _explained(entry: PlanEntry, config: ConfigInput) -> TensorExplanation:
    where = _where(entry.origin, entry, config)
    decisions = tuple(
        KeyDecision(key, Candidate(value, _where(origin, entry, config), "config"), reason, ())
        for key, value in sorted(entry.setting.items())
        if value is not None
        for origin in [entry.key_origins.get(key, entry.origin)]
        for reason in [_reason(origin)]
    )
    setting = {k: v for k, v in entry.setting.items() if v is not None}
    return TensorExplanation(
        entry.module, entry.target, entry.mode, (where,), decisions, setting, entry.metric
    )


def _where(origin: str, entry: PlanEntry, config: ConfigInput) -> str:
    """'config_list[1] at c.json:3:5', or the origin itself (a template) when it has no place."""
    span = subject_span(config.spans.get(entry.mode, {}), origin)
    return f"{origin} at {span}" if span is not None else origin


def _reason(origin: str) -> str:
    if origin.startswith("template "):
        return f"the default of the {origin.removeprefix('template ')} template"
    return FIRST_WINS
