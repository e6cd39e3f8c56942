"""llm-compressor's SparseGPTModifier and WandaPruningModifier as prune statements. Their targets
are containers: every Linear/Conv inside is pruned under the name ``f"{container}.{sub}"``, so a
Linear target names itself ``lm_head.`` and ``ignore: [lm_head]`` misses it (K154); the
conversion reproduces that, and reports the solver as an algorithm."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from dsl_compress.diagnostics import fail
from dsl_compress.tools.convert.conversion import ConvertedStatement
from dsl_compress.tools.convert.ct_match import ModuleInfo, match_name
from dsl_compress.tools.convert.lc_recipe import Modifier
from dsl_compress.tools.convert.part import Part, note
from dsl_compress.tools.convert.selection_check import Wanted
from dsl_compress.tools.convert.selectors import name_selector, prefix_regex, regex_selector
from dsl_compress.vocab import Mode

SPARSITY_MODIFIERS = ("SparseGPTModifier", "WandaPruningModifier")
# The layer types llm-compressor prunes (get_prunable_layers: Linear, _ConvNd, transformers' Conv1D).
PRUNABLE_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "_ConvNd", "Conv1D")
_ALGORITHM_KEYS = ("block_size", "dampening_frac", "preserve_sparsity_mask", "offload_hessians")
_ALGORITHM_KEYS += (
    "sparsity_profile",
    "owl_m",
    "owl_lmbda",
    "sequential_targets",
    "sequential_update",
)
_KNOWN_KEYS = {
    "sparsity",
    "mask_structure",
    "targets",
    "ignore",
    "index",
    "group",
    "start",
    "end",
    "update",
}
_KNOWN_KEYS |= set(_ALGORITHM_KEYS)
_NM = re.compile(r"(\d+):(\d+)$")


def convert_sparsity(modifier: Modifier, modules: tuple[ModuleInfo, ...] | None) -> Part:
    """One sparsity modifier: statements, notes and (with modules) each pruned tensor's setting."""
    notes = _modifier_notes(modifier)
    settings = _settings(modifier, notes)
    targets = _as_list(modifier.args.get("targets", ["Linear"]))
    ignore = _as_list(modifier.args.get("ignore", []))
    per_layer = isinstance(modifier.args.get("sparsity"), list) and settings is not None
    statements = (
        []
        if settings is None or per_layer
        else [s for t in targets for s in _target_statements(t, settings, modifier)]
    )
    if per_layer and modules is None:
        notes.append(
            note(
                "K160",
                modifier.at("sparsity"),
                "a list of sparsities (one per target layer) needs the model: not converted",
            )
        )
    wanted = {}
    if modules is not None and settings is not None:
        chosen = _selection(modules, targets, ignore, modifier, notes)
        wanted = {
            (name, "weight", Mode.PRUNE): Wanted(s, modifier.origin) for name, s in chosen.items()
        }
    trapped = len(notes)
    statements += _ignore_statements(ignore, targets, modules, wanted, modifier, notes)
    if any(n.code == "K154" for n in notes[trapped:]) and statements and statements[0].mode:
        comment = (
            "llm-compressor prunes lm_head here: its ignore entry misses names ending in '.' (K154)"
        )
        statements[0] = replace(statements[0], comment=comment)
    return Part(tuple(statements), tuple(notes), wanted)


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


def _modifier_notes(modifier: Modifier) -> list:
    notes = [
        note(
            "K151",
            modifier.origin,
            f"{modifier.kind}'s solver (which weights it prunes and how it updates the rest) is an algorithm, not a setting: converted as magnitude pruning at the same ratio and structure",
        )
    ]
    notes += modifier.knob_notes(_ALGORITHM_KEYS, "steers the algorithm")
    for key in sorted(set(modifier.args) - _KNOWN_KEYS):
        notes.append(
            note(
                "K160",
                modifier.at(key),
                f"{modifier.kind} has no argument {key!r}: not converted (llm-compressor would reject it)",
            )
        )
    return notes


def _settings(modifier: Modifier, notes: list) -> tuple | None:
    """Our settings for the ratio (per-layer lists filled in per container later)."""
    structure = str(modifier.args.get("mask_structure", "0:0"))
    nm = _NM.match(structure)
    if nm is None:
        notes.append(
            note(
                "K150",
                modifier.at("mask_structure"),
                f"mask_structure {structure!r} is not 'N:M': not converted",
            )
        )
        return None
    if int(nm.group(1)) > 0:
        ratio = int(nm.group(1)) / int(nm.group(2))
        if modifier.args.get("sparsity") not in (None, ratio):
            notes.append(
                note(
                    "K160",
                    modifier.at("sparsity"),
                    f"sparsity {modifier.args['sparsity']!r} is unused under mask_structure {structure!r} (llm-compressor prunes N of every M): not converted",
                )
            )
        return (("mask_structure", structure),)
    sparsity = modifier.args.get("sparsity")
    if not isinstance(sparsity, (int, float, list)) or isinstance(sparsity, bool):
        notes.append(
            note(
                "K150",
                modifier.at("sparsity") if "sparsity" in modifier.args else modifier.origin,
                f"{modifier.kind} needs a sparsity: nothing converted",
            )
        )
        return None
    return (("sparse_ratio", sparsity), ("granularity", None))


def _target_statements(
    target: str, settings: tuple, modifier: Modifier
) -> list[ConvertedStatement]:
    origin = modifier.at("targets") if "targets" in modifier.args else modifier.origin
    if target in PRUNABLE_TYPES:
        return [ConvertedStatement(Mode.PRUNE, f"{target}.weight", settings, origin)]
    if target.startswith("re:"):
        scope = regex_selector(f"(?:{prefix_regex(target[3:])})(?:\\..*)?")
    elif "." in target or not target[:1].isupper():
        scope = (
            name_selector(target) + ".**"
            if name_selector(target) == target
            else regex_selector(re.escape(target) + r"(?:\..*)?")
        )
    else:
        return []
    comment = f"{target!r} is a container: every Linear inside it is pruned"
    return [ConvertedStatement(Mode.PRUNE, f"Linear.weight in {scope}", settings, origin, comment)]


def _is_prunable(module: ModuleInfo) -> bool:
    return any(name in PRUNABLE_TYPES for name in module.class_names)


def containers(modules: tuple[ModuleInfo, ...], targets: list[str]) -> list[ModuleInfo]:
    """The layers ``get_layers`` returns: a name or re: match, an exact type name, or a module
    one of whose own parameters' dotted names matches."""
    return [m for m in modules if any(match_name(m.name, t) or m.type_name == t for t in targets)]


def _selection(
    modules: tuple, targets: list[str], ignore: list[str], modifier: Modifier, notes: list
) -> dict:
    """Each pruned module's settings: later containers overwrite, as the module-keyed dicts do."""
    layers = containers(modules, targets)
    for target in targets:
        if not any(match_name(m.name, target) or m.type_name == target for m in modules):
            notes.append(
                note(
                    "K161",
                    modifier.at("targets") if "targets" in modifier.args else modifier.origin,
                    f"target {target!r} matches no module (llm-compressor raises 'Could not find targets')",
                )
            )
    sparsity, chosen = modifier.args.get("sparsity"), {}
    if isinstance(sparsity, list) and len(sparsity) != len(layers):
        fail(
            "K150",
            f"sparsity lists {len(sparsity)} value(s) for "
            f"{len(layers)} target layer(s); llm-compressor refuses a list of another length",
            subject=modifier.at("sparsity"),
            hint="give one value per layer the targets select, or one float for all",
        )
    for index, layer in enumerate(layers):
        for sub in _prunable_inside(modules, layer):
            if not any(match_name(source_name(layer, sub), entry) for entry in ignore):
                chosen[sub.name] = _layer_settings(modifier, sparsity, index)
    return chosen


def _layer_settings(modifier: Modifier, sparsity: Any, index: int) -> tuple:
    structure = str(modifier.args.get("mask_structure", "0:0"))
    if not structure.startswith("0:"):
        return (("mask_structure", structure),)
    ratio = sparsity[index] if isinstance(sparsity, list) and index < len(sparsity) else sparsity
    return (("sparse_ratio", ratio), ("granularity", None))


def _prunable_inside(modules: tuple, layer: ModuleInfo) -> list[ModuleInfo]:
    prefix = layer.name + "." if layer.name else ""
    return [
        m
        for m in modules
        if (m.name == layer.name or m.name.startswith(prefix)) and _is_prunable(m)
    ]


def source_name(layer: ModuleInfo, sub: ModuleInfo) -> str:
    """The name llm-compressor gives a pruned module, ``f"{layer}.{sub}"``: ``lm_head.`` when
    the layer is the module itself."""
    if sub.name == layer.name:
        rest = ""
    else:
        rest = sub.name[len(layer.name) + 1 :] if layer.name else sub.name
    return f"{layer.name}.{rest}"


def _ignore_statements(ignore, targets, modules, wanted, modifier: Modifier, notes: list) -> list:
    statements = []
    for entry in ignore:
        if modules is None:
            statements += _static_ignore(entry, targets, modifier, notes)
        else:
            statements += _checked_ignore(entry, targets, modules, wanted, modifier, notes)
    return statements


def _exclude(entry: str, origin: str, comment: str | None = None) -> ConvertedStatement:
    selector = (
        regex_selector(prefix_regex(entry[3:])) if entry.startswith("re:") else name_selector(entry)
    )
    return ConvertedStatement(None, selector, (), origin, comment, exclude_from=Mode.PRUNE)


def _misses_self_names(entry: str) -> bool:
    """An entry that cannot match a name ending in '.': an exact name, a regex ending in '$'."""
    return not entry.startswith("re:") or (entry.endswith("$") and not entry.endswith("\\.$"))


def _static_ignore(entry: str, targets: list[str], modifier: Modifier, notes: list) -> list:
    origin = modifier.at("ignore")
    self_named = [t for t in targets if t in PRUNABLE_TYPES]
    if not (self_named and _misses_self_names(entry)):
        return [_exclude(entry, origin)]
    notes.append(_trap_note(entry, origin, f"a layer selected by {self_named[0]!r}"))
    if len(self_named) == len(targets):
        return []
    return [
        _exclude(
            entry,
            origin,
            f"{entry!r} does not reach layers selected by {self_named[0]!r} (named 'x.')",
        )
    ]


def _checked_ignore(entry, targets, modules, wanted, modifier: Modifier, notes: list) -> list:
    origin = modifier.at("ignore")
    candidates = {}
    for layer in containers(modules, targets):
        for sub in _prunable_inside(modules, layer):
            candidates.setdefault(sub.name, []).append(source_name(layer, sub))
    # Each container prunes its layers unless their name under it is ignored: a module two
    # containers reach (a layer named as its own container too) is left alone only by both.
    ignored = {
        name for name, names in candidates.items() if all(match_name(n, entry) for n in names)
    }
    removed = {name for name in candidates if match_name(name, entry)}
    if removed == ignored:
        return [_exclude(entry, origin)]
    pruned = sorted(removed - ignored)
    if pruned:
        missed = next(n for n in candidates[pruned[0]] if not match_name(n, entry))
        notes.append(_trap_note(entry, origin, f"'{pruned[0]}' (named '{missed}')"))
    comment = f"exact names: {entry!r} ignores only these, as llm-compressor names layers"
    return [_exclude(name, origin, comment) for name in sorted(ignored)]


def _trap_note(entry: str, origin: str, what: str):
    return note(
        "K154",
        origin,
        f"ignore {entry!r} does not match {what}: llm-compressor names pruned layers "
        "'<target>.<sub>', so it prunes it anyway (llm-compressor #1142)",
        hint=f"ignore it in the recipe with an unanchored pattern such as 're:.*{_last(entry)}'; "
        "the converted rules prune it, as the recipe does",
    )


def _last(entry: str) -> str:
    """The last dotted segment of an ignore entry (its module's own name)."""
    return entry.removeprefix("re:").rstrip("$").rpartition(".")[2] or entry
