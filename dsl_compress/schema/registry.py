"""The settings registry: NNI 3.0's built-in templates per module type and mode, registering
more, and canonicalisation of one config against them."""

from __future__ import annotations

import copy
import sys
from typing import TYPE_CHECKING, Any, Iterator, Mapping

if TYPE_CHECKING:
    import torch

from dsl_compress.diagnostics import did_you_mean, fail
from dsl_compress.schema.key_sets import template_takes
from dsl_compress.stand_in import StandInModule
from dsl_compress.vocab import INPUT_PREFIX, OUTPUT_PREFIX, Mode, expand_bare_target

# ---- the templates NNI 3.0 ships -----------------------------------------------------------------

Template = dict[str, dict[str, Any]]


def pruning_weight_template() -> dict[str, Any]:
    return {
        "sparse_ratio": None,
        "max_sparse_ratio": None,
        "min_sparse_ratio": None,
        "sparse_threshold": None,
        "global_group_id": None,
        "dependency_group_id": None,
        "granularity": "default",
        "internal_metric_block": None,
        "apply_method": "mul",
    }


def pruning_bias_template(weight_out_dim: int = 0) -> dict[str, Any]:
    """The bias follows the weight's mask along the weight's output dim."""
    return {
        "align": {"module_name": None, "target_name": "weight", "dims": [weight_out_dim]},
        "apply_method": "mul",
    }


def quant_target_template() -> dict[str, Any]:
    return {
        "quant_dtype": None,
        "quant_scheme": None,
        "granularity": "default",
        "apply_method": "clamp_round",
    }


def distill_template() -> Template:
    """The template every module type gets for distillation: its output only."""
    return {"_output_": {"lambda": None, "link": None, "apply_method": None}}


_WEIGHTED = (
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
)
_PRUNE_WITH_BIAS = _WEIGHTED + ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
_QUANT_WITH_WEIGHT = _WEIGHTED + ("BatchNorm1d", "BatchNorm2d")
_QUANT_ACTIVATIONS = ("ReLU", "ReLU6", "Hardtanh", "MaxPool2d")

# Types whose weight is stored [in, out], transposed relative to nn.Linear's [out, in]: the
# `Conv1D` of Hugging Face transformers (GPT-2 and kin; `forward` is `x @ weight + bias`).
# Matched by class name, as the registry is. NNI 3.0 ships no template for them.
TRANSPOSED_WEIGHTS: dict[str, frozenset[str]] = {"Conv1D": frozenset({"weight"})}

# What a channel granularity means on an [in, out] weight: NNI's names assume [out, in, ...].
_TRANSPOSED_CHANNELS = {"out_channel": [-1, 1], "in_channel": [1, -1]}


def layout_granularity(type_name: str, target: str, value: Any) -> Any:
    """``value`` with 'out_channel'/'in_channel' written as the block list that means the same
    channels on a transposed weight (Conv1D's out_channel is [-1, 1]); other values unchanged."""
    if target in TRANSPOSED_WEIGHTS.get(type_name, ()) and isinstance(value, str):
        return _TRANSPOSED_CHANNELS.get(value, value)
    return value


def builtin_templates(mode: Mode) -> dict[str, Template]:
    """Fresh copies of NNI 3.0's registry for one mode (distillation's is empty)."""
    if mode is Mode.PRUNE:
        table = {
            name: {"weight": pruning_weight_template(), "bias": pruning_bias_template()}
            for name in _PRUNE_WITH_BIAS
        }
        table["Embedding"] = {"weight": pruning_weight_template()}
        for name in TRANSPOSED_WEIGHTS:
            table[name] = {"weight": pruning_weight_template(), "bias": pruning_bias_template(1)}
        return table
    if mode is Mode.QUANTIZE:
        full = ("_input_", "weight", "bias", "_output_")
        weighted = (*_QUANT_WITH_WEIGHT, *TRANSPOSED_WEIGHTS)
        table = {name: {t: quant_target_template() for t in full} for name in weighted}
        for name in _QUANT_ACTIVATIONS:
            table[name] = {t: quant_target_template() for t in ("_input_", "_output_")}
        return table
    return {}


# ---- the registry --------------------------------------------------------------------------------

_REGISTER_CALL = {
    Mode.PRUNE: "PruningSetting.register",
    Mode.QUANTIZE: "QuantizationSetting.register",
    Mode.DISTILL: "DistillationSetting.register",
}


def type_name_of(module: torch.nn.Module | StandInModule | type | str) -> str:
    """The class name NNI keys its registry by; parametrized modules report their original class,
    a manifest's stand-in the type name it recorded."""
    if isinstance(module, str):
        return module
    if isinstance(module, type):
        return module.__name__
    torch = sys.modules.get("torch")  # a module object means torch is loaded already
    if torch is not None and isinstance(module, torch.nn.Module):
        if "parametrizations" not in module._modules:  # the common case, without torch's lookup
            return type(module).__name__
        return torch.nn.utils.parametrize.type_before_parametrizations(module).__name__
    if isinstance(module, StandInModule):  # a manifest's module: its class bears the type name
        return type(module).__name__
    fail(
        "X803",
        f"expected a module, a module class or a class name, got {type(module).__name__}",
        subject="settings registry",
    )
    raise AssertionError("unreachable")


class SettingRegistry:
    """Templates of one mode, keyed by module class name; resolution never mutates the table."""

    def __init__(self, mode: Mode, templates: Mapping[str, Template]):
        self.mode = mode
        self._table: dict[str, Template] = {k: copy.deepcopy(v) for k, v in templates.items()}

    def register(self, type_name: str, setting: Template) -> None:
        """Store a deep copy of ``setting`` for ``type_name``, replacing any entry whole."""
        if not isinstance(type_name, str) or not type_name:
            fail(
                "X803", f"register needs a class name string, got {type_name!r}", subject="register"
            )
        _check_template(type_name, setting)
        self._table[type_name] = copy.deepcopy(setting)

    def unregister(self, type_name: str) -> None:
        self._table.pop(type_name, None)

    def __contains__(self, type_name: object) -> bool:
        return self.mode is Mode.DISTILL or type_name in self._table

    def names(self) -> list[str]:
        return sorted(self._table)

    def template(self, module: torch.nn.Module | type | str) -> Template:
        """A deep copy of the template for a module; an unregistered type is an error."""
        name = type_name_of(module)
        if name in self._table:
            return copy.deepcopy(self._table[name])
        if self.mode is Mode.DISTILL:
            return distill_template()
        hint = did_you_mean(name, self._table)
        how = f"register it with {_REGISTER_CALL[self.mode]}({name!r}, {{target: setting, ...}})"
        fail(
            "R301",
            f"module type '{name}' has no {self.mode.value} settings template",
            subject=f"{self.mode.value} registry",
            hint=f"{hint} Or {how}" if hint else how[0].upper() + how[1:],
        )
        raise AssertionError("unreachable")

    def get(self, module: torch.nn.Module | type | str, config: Mapping[str, Any]) -> dict:
        """Canonicalise one public config for one module into {target_name: setting}."""
        template = self.template(module)
        config = copy.deepcopy(dict(config))
        target_names = config.pop("target_names", None)
        target_settings = config.pop("target_settings", None) or {}
        _push_shorthand(template, config)
        for target, setting in target_settings.items():
            if target in template:
                template[target].update(copy.deepcopy(setting))
            else:
                template[target] = copy.deepcopy(setting)
        names = _expand_bare_prefixes(list(target_names or template))
        return {name: _lookup(template, name, type_name_of(module), self.mode) for name in names}

    def copy(self) -> "SettingRegistry":
        return SettingRegistry(self.mode, self._table)

    def snapshot(self) -> dict[str, Template]:
        return copy.deepcopy(self._table)

    def restore(self, snapshot: Mapping[str, Template]) -> None:
        self._table = copy.deepcopy(dict(snapshot))


def _check_template(type_name: str, setting: Any) -> None:
    ok = isinstance(setting, Mapping) and all(
        isinstance(k, str) and isinstance(v, Mapping) for k, v in setting.items()
    )
    if not ok or not setting:
        fail(
            "R303",
            f"the template for '{type_name}' must be a non-empty dict of target name -> setting dict",
            subject=f"register {type_name}",
            hint="e.g. {'weight': {'sparse_ratio': None, 'granularity': 'default'}}",
        )


def _push_shorthand(template: Template, config: Mapping[str, Any]) -> None:
    """A top-level key reaches only the targets whose template already has that key (or, for
    a key of ours, the key it rides with: see key_sets.template_takes)."""
    for setting in template.values():
        for key, value in config.items():
            if template_takes(setting, key):
                setting[key] = copy.deepcopy(value)


def _expand_bare_prefixes(names: list[str]) -> list[str]:
    """Bare prefixes name the first input/output; those targets come after the named ones."""
    for bare in (INPUT_PREFIX, OUTPUT_PREFIX):
        if bare in names:
            names.remove(bare)
            names.append(expand_bare_target(bare))
    return names


def _lookup(template: Template, name: str, type_name: str, mode: Mode) -> dict:
    if name in template:
        return copy.deepcopy(template[name])
    for prefix in (INPUT_PREFIX, OUTPUT_PREFIX):
        if name.startswith(prefix) and prefix in template:
            return copy.deepcopy(template[prefix])
    known = sorted(template)
    hint = did_you_mean(name, known) or f"the {mode.value} template has {', '.join(known)}"
    fail(
        "R302",
        f"target '{name}' is not in the {mode.value} template of '{type_name}'",
        subject=f"{type_name}.{name}",
        hint=f"{hint}; or give it a setting in target_settings",
    )
    raise AssertionError("unreachable")


class Registry:
    """The three per-mode registries that one rule set or one process resolves against."""

    def __init__(self, tables: Mapping[Mode, SettingRegistry] | None = None):
        tables = tables or {m: SettingRegistry(m, builtin_templates(m)) for m in Mode}
        self._tables = {mode: tables[mode] for mode in Mode}

    def __getitem__(self, mode: Mode | str) -> SettingRegistry:
        return self._tables[Mode(mode)]

    def __iter__(self) -> Iterator[SettingRegistry]:
        return iter(self._tables.values())

    @property
    def prune(self) -> SettingRegistry:
        return self._tables[Mode.PRUNE]

    @property
    def quantize(self) -> SettingRegistry:
        return self._tables[Mode.QUANTIZE]

    @property
    def distill(self) -> SettingRegistry:
        return self._tables[Mode.DISTILL]

    def scoped(self) -> "Registry":
        """A copy to register into without touching this registry."""
        return Registry({mode: table.copy() for mode, table in self._tables.items()})

    def snapshot(self) -> dict[Mode, dict[str, Template]]:
        return {mode: table.snapshot() for mode, table in self._tables.items()}

    def restore(self, snapshot: Mapping[Mode, Mapping[str, Template]]) -> None:
        for mode, table in snapshot.items():
            self._tables[mode].restore(table)


DEFAULT_REGISTRY = Registry()
PruningSetting = DEFAULT_REGISTRY.prune
QuantizationSetting = DEFAULT_REGISTRY.quantize
DistillationSetting = DEFAULT_REGISTRY.distill


def canonicalize(
    module: torch.nn.Module | type | str,
    config: Mapping[str, Any],
    mode: Mode | str,
    registry: Registry | None = None,
) -> dict:
    """{target: setting} for one module and one public config, against ``registry`` or the default."""
    return (registry or DEFAULT_REGISTRY)[mode].get(module, config)
