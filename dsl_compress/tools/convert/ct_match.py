"""compressed-tensors' module selection (``compressed_tensors.utils.match``, 0.20.1), re-implemented
over module names and class names so that a converter can say, per module, what a recipe's
``targets`` and ``ignore`` select there and which target wins."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from dsl_compress.stand_in import StandInModule

# The module types compressed-tensors quantizes; a target selecting any other type is skipped.
QUANTIZABLE_TYPES = ("Linear", "Embedding")


@dataclass(frozen=True)
class ModuleInfo:
    """One module as the matching reads it: its dotted name, its type's name, and the names of
    every class in its type's MRO (a manifest's stand-in has only its own type: a manifest
    records the type's name, not its bases)."""

    name: str
    type_name: str
    class_names: tuple[str, ...]


def class_names(module: Any) -> tuple[str, ...]:
    """The class names compressed-tensors compares a class target with: the MRO of a torch module
    (vLLM's ``LinearBase`` also answers to ``Linear``), the type alone for a stand-in."""
    if isinstance(module, StandInModule):
        return (type(module).__name__,)
    names = tuple(cls.__name__ for cls in type(module).__mro__ if cls is not object)
    return names + (("Linear",) if "LinearBase" in names else ())


def modules_of(model: Any) -> tuple[ModuleInfo, ...]:
    """Every module of ``model`` (a torch module or a stand-in), in ``named_modules()`` order."""
    return tuple(
        ModuleInfo(name, type(module).__name__, class_names(module))
        for name, module in model.named_modules()
    )


def match_name(name: str, target: str) -> bool:
    """``re:PATTERN`` by ``re.match`` (anchored at the start only), anything else by equality."""
    if target.startswith("re:"):
        return re.match(target[3:], name) is not None
    return target == name


def is_match(module: ModuleInfo, targets: Iterable[str]) -> bool:
    """Whether any target names the module or one of its classes."""
    return any(
        match_name(module.name, target) or target in module.class_names for target in targets
    )


def ranked_targets(module: ModuleInfo, targets: Iterable[str]) -> list[str]:
    """The targets that match the module, best first, as ``match_targets`` ranks them: name
    matches (exact names before ``re:`` patterns, each bucket alphabetical by the pattern's
    text), then class matches (alphabetical)."""
    ordered = sorted(targets, key=lambda target: ("re:" in target, target))
    ranked = [target for target in ordered if match_name(module.name, target)]
    classes = [t for t in ordered if t in module.class_names and t not in ranked]
    return ranked + classes


def winning_targets(
    modules: Iterable[ModuleInfo], targets: Mapping[str, Any], ignore: Iterable[str]
) -> dict[str, str]:
    """For every module that compressed-tensors' ``apply_quantization_config`` gives a scheme:
    the target whose scheme it gets (``targets`` maps each target to its scheme, later groups'
    duplicates already folded in, as its OrderedDict does). Types other than Linear and
    Embedding are matched but skipped, as the library skips them."""
    ignore = tuple(ignore)
    chosen = {}
    for module in modules:
        if not is_match(module, targets) or is_match(module, ignore):
            continue
        if not any(kind in module.class_names for kind in QUANTIZABLE_TYPES):
            continue
        chosen[module.name] = ranked_targets(module, targets)[0]
    return chosen
