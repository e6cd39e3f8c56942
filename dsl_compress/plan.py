"""The plan: one resolved setting per (module, target, mode), and the NNI config_list it round-trips to."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from dsl_compress.diagnostics import Diagnostic, Severity, at_statement, span_of_origin
from dsl_compress.schema.granularity import BlockKernel, parse_granularity
from dsl_compress.vocab import TargetKind, Mode

# A tensor of the model as every stage addresses it: (module name, target name), e.g.
# ("layer1.0.conv1", "weight") or ("fc", "_input_0").
Key = tuple[str, str]

# NNI's schema has no None granularity; these list forms mean the same blocks at any rank:
# all-ones kernel = element-wise pruning, all-(-1) kernel = one per-tensor quantization scale.
_NONE_GRANULARITY = {Mode.PRUNE: [1], Mode.QUANTIZE: [[-1], "back", -1]}


@dataclass(frozen=True)
class PlanEntry:
    """One compression target with its fully resolved setting and where each key came from."""

    module: str
    target: str
    mode: Mode
    module_type: str
    setting: Mapping[str, Any]
    origin: str
    key_origins: Mapping[str, str] = field(default_factory=dict, compare=False)
    metric: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.module, self.target)

    @property
    def kind(self) -> TargetKind:
        return TargetKind.of(self.target)

    @property
    def subject(self) -> str:
        """How diagnostics name this target."""
        return f"module '{self.module}' target '{self.target}'"

    @property
    def kernel(self) -> BlockKernel | None:
        """The block kernel of the resolved granularity; None for element-wise / per-tensor."""
        kernel = parse_granularity(self.setting.get("granularity"), self.subject)
        return kernel if isinstance(kernel, BlockKernel) else None

    def get(self, key: str, default: Any = None) -> Any:
        value = self.setting.get(key, default)
        return default if value is None else value

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "target": self.target,
            "mode": self.mode.value,
            "module_type": self.module_type,
            "setting": copy.deepcopy(dict(self.setting)),
            "metric": self.metric,
            "origin": self.origin,
            "key_origins": dict(self.key_origins),
        }


@dataclass(frozen=True)
class Plan:
    """Plain data: every entry of every mode, plus the warnings found while resolving them."""

    entries: tuple[PlanEntry, ...]
    diagnostics: tuple[Diagnostic, ...] = field(default=(), compare=False)
    # The statement ('file:line:col') each setting origin of key_origins belongs to; an origin
    # not here (a config_list's, an align's) is its statement itself.
    statements: Mapping[str, str] = field(default_factory=dict, compare=False)

    def statement_of(self, origin: str) -> str | None:
        """The statement or config that set a key with this origin; None for a template's."""
        return None if origin.startswith("template ") else self.statements.get(origin, origin)

    def of_mode(self, mode: Mode) -> tuple[PlanEntry, ...]:
        return tuple(e for e in self.entries if e.mode is mode)

    def find(self, module: str, target: str, mode: Mode) -> PlanEntry | None:
        return self._by_key.get((module, target, mode))

    @functools.cached_property
    def _by_key(self) -> dict[tuple[str, str, Mode], PlanEntry]:
        return {(e.module, e.target, e.mode): e for e in self.entries}

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.WARNING)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.entries]

    def to_config_list(self, mode: Mode | str) -> list[dict[str, Any]]:
        """NNI 3.0 config_list that reproduces this plan under NNI's own first-wins semantics."""
        return [_entry_config(e) for e in self.of_mode(Mode(mode))]


def tensor_name(module: str, target: str) -> str:
    """A tensor's dotted name, 'module.target' (just 'target' on the root module): the key of
    every output file and of a state dict."""
    return f"{module}.{target}" if module else target


def _copied(value: Any) -> Any:
    return value if isinstance(value, (str, int, float)) else copy.deepcopy(value)


def _entry_config(entry: PlanEntry) -> dict[str, Any]:
    setting = {k: _copied(v) for k, v in entry.setting.items() if v is not None}
    if "granularity" in entry.setting and entry.setting["granularity"] is None:
        setting["granularity"] = copy.deepcopy(_NONE_GRANULARITY[entry.mode])
    config: dict[str, Any] = {
        "op_names": [entry.module],
        "target_names": [entry.target],
        "target_settings": {entry.target: setting},
    }
    if entry.mode is Mode.QUANTIZE:
        config["quant_dtype"] = entry.setting.get("quant_dtype")
    return config


def locate_in_rules(diags: Iterable[Diagnostic], plan: Plan) -> list[Diagnostic]:
    """Engine diagnostics about a tensor, located at the statement that configured it and
    speaking .rules there; a plan from a config_list keeps them as they are."""
    origins = {entry.subject: entry.origin for entry in plan.entries}
    by_name = {f"{e.module}.{e.target}": e.origin for e in plan.entries}
    out = []
    for diag in diags:
        subject = diag.subject or ""
        origin = origins.get(subject) or next((o for n, o in by_name.items() if n in subject), "")
        span = span_of_origin(origin)
        if diag.span is None and span is not None:
            diag = at_statement(diag, span, f"{diag.subject}: {diag.message}")
        out.append(diag)
    return out
