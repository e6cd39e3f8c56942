"""One NNI 3.0 config as .rules statements: its selection, its shorthand (reaching only the keys
a template has), its target_settings (explicit targets) and its aligns, each statement carrying
the config it came from; what cannot be written is a K103 note."""

from __future__ import annotations

from typing import Any, Mapping

from dsl_compress.diagnostics import Diagnostic, warning
from dsl_compress.schema.key_sets import CONFIG_RULES, setting_keys
from dsl_compress.schema.registry import DEFAULT_REGISTRY
from dsl_compress.tools.convert.conversion import ConvertedStatement
from dsl_compress.tools.convert.nni_selectors import module_selectors, selector_text
from dsl_compress.tools.convert.selectors import name_selector
from dsl_compress.vocab import Mode

# NNI keys the language spells otherwise.
_SPELLING = {"global_group_id": "group"}
# Keys an align statement takes beside its dims.
_ALIGN_KEYS = ("granularity", "apply_method")


def config_statements(
    config: Mapping[str, Any], mode: Mode, origin: str, excepts: tuple[str, ...]
) -> tuple[list[ConvertedStatement], list[Diagnostic]]:
    """The statements of one config, in the order our precedence needs (the shorthand first,
    then each target_settings entry, which overrides it as in NNI)."""
    selectors = module_selectors(config)
    notes = [_not_converted(origin, key, why) for key, why in _config_only(config, mode)]
    shorthand = {k: v for k, v in config.items() if k in setting_keys(mode)}
    per_target = dict(config.get("target_settings") or {})
    names = config.get("target_names")
    parts: list[tuple[str | None, dict]] = []
    if names is None:
        parts.append((None, shorthand))
        parts.extend((t, _with_dtype(mode, s, shorthand)) for t, s in per_target.items())
    else:
        for target in names:
            reach = {k: v for k, v in shorthand.items() if k in _template_keys(mode, target)}
            own = per_target.get(target, per_target.get(_bare(target), {}))
            parts.append((target, _with_dtype(mode, {**reach, **own}, shorthand)))
    out: list[ConvertedStatement] = []
    for target, settings in _grouped(parts):
        for selector in selectors:
            where = "" if out else origin  # the block's first statement names the config
            made, found = _statements(mode, selector, target, settings, where, excepts)
            out.extend(made)
            notes.extend(found)
    return out, notes


def _grouped(parts: list[tuple[str | None, dict]]) -> list[tuple[str | None, dict]]:
    """Targets with equal settings in one statement (``{weight,bias}``)."""
    groups: list[tuple[list[str], dict]] = []
    for target, settings in parts:
        same = next((g for g in groups if g[1] == settings and target and g[0]), None)
        if same is not None and "align" not in settings:
            same[0].append(target)
        else:
            groups.append(([target] if target else [], settings))
    return [(_targets_text(targets), settings) for targets, settings in groups]


def _targets_text(targets: list[str]) -> str | None:
    if not targets:
        return None
    return targets[0] if len(targets) == 1 else "{" + ",".join(targets) + "}"


def _statements(mode, selector, target, settings, origin, excepts):
    """One compress statement, and an align statement for an ``align`` key."""
    settings = dict(settings)
    align = settings.pop("align", None) if mode is Mode.PRUNE else None
    out, notes = [], []
    if align is not None:
        made = _align(selector, target, align, settings, origin, excepts)
        if made is None:
            notes.append(_not_converted(origin or "the config", "align", _ALIGN_WHY))
        else:
            out.append(made)
            settings = {k: v for k, v in settings.items() if k not in _ALIGN_KEYS}
            if not settings:
                return out, notes
    spelled = tuple((_SPELLING.get(k, k), v) for k, v in settings.items())
    text = selector_text(selector, target)
    out.insert(0, ConvertedStatement(mode, text, spelled, origin, excepts=excepts))
    return out, notes


_ALIGN_WHY = (
    "an align without module_name follows the selected module's own target, which .rules can "
    "write only for a module selected by its exact name"
)


def _align(selector, target, align, settings, origin, excepts) -> ConvertedStatement | None:
    """``align SEL.target with SOURCE.target_name dims=[...]``; SOURCE is module_name, or the
    selected module itself (written only when the selector is its exact name)."""
    path, scope = selector
    source = align.get("module_name")
    if source is None:
        if scope is not None or path.startswith('re"') or target is None:
            return None
        source_text = path
    else:
        source_text = name_selector(source)
    if target is None:
        return None
    keys = [("dims", list(align.get("dims") or [0]))]
    keys += [(k, settings[k]) for k in _ALIGN_KEYS if k in settings]
    return ConvertedStatement(
        Mode.PRUNE,
        selector_text(selector, target),
        tuple(keys),
        origin,
        excepts=excepts,
        align_with=f"{source_text}.{align.get('target_name', 'weight')}",
    )


def _with_dtype(mode: Mode, settings: Mapping, shorthand: Mapping) -> dict:
    """A quantization target of target_settings takes the config's quant_dtype (as our
    config_list reading does: NNI requires the key there)."""
    settings = dict(settings)
    if mode is Mode.QUANTIZE and "quant_dtype" not in settings and "quant_dtype" in shorthand:
        settings["quant_dtype"] = shorthand["quant_dtype"]
    return settings


def _bare(target: str) -> str:
    for prefix in ("_input_", "_output_"):
        if target.startswith(prefix):
            return prefix
    return target


def _template_keys(mode: Mode, target: str) -> set[str]:
    """The keys the built-in templates of ``mode`` hold for ``target`` (a shorthand reaches
    only those)."""
    table = DEFAULT_REGISTRY[mode]
    keys: set[str] = set()
    for type_name in table.names():
        template = table.template(type_name)
        keys.update(template.get(target, template.get(_bare(target), {})))
    return keys


def _config_only(config: Mapping[str, Any], mode: Mode) -> list[tuple[str, str]]:
    return [
        (key, "module fusion has no .rules statement (dsl-compress does not fuse modules)")
        for key in CONFIG_RULES[mode]
        if config.get(key)
    ]


def _not_converted(origin: str, key: str, why: str) -> Diagnostic:
    return warning(
        "K103",
        f"not converted: {origin} {key}, because {why}",
        subject=origin,
        hint="write it by hand if it is still wanted",
    )
