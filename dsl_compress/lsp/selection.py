"""What a selector matches in a manifest's model: the tensors (module.target) it names, read
as the statement reads it, for hover."""

from __future__ import annotations

from dsl_compress.diagnostics import CompressionError
from dsl_compress.language.syntax import Selector
from dsl_compress.resolve.check import target_words
from dsl_compress.resolve.model_index import ModelIndex
from dsl_compress.resolve.selectors import compile_selector
from dsl_compress.schema.registry import DEFAULT_REGISTRY
from dsl_compress.vocab import INPUT_PREFIX, OUTPUT_PREFIX, Mode


def selected_tensors(selector: Selector, mode: Mode | None, index: ModelIndex) -> list[str]:
    """The tensors ``selector`` names, in model order: its target segment's, else each module
    type's template targets (of ``mode``, or of every kind), else the module's parameters."""
    modes = (mode,) if mode is not None else tuple(Mode)
    words = frozenset().union(*(target_words(DEFAULT_REGISTRY, m) for m in modes))
    compiled, _ = compile_selector(selector, words)
    if compiled is None:
        return []
    try:
        modules = compiled.names(index)
    except CompressionError:  # E224: a pattern too costly to match; lint reports it
        return []
    found = []
    for module in modules:
        targets = compiled.targets or _template_targets(index, module, modes)
        found.extend(f"{module}.{t}" for t in targets if has_target(index, module, t))
    return found


def _template_targets(index: ModelIndex, module: str, modes: tuple[Mode, ...]) -> list[str]:
    type_name = index.type_names[module]
    targets: dict[str, None] = {}
    for mode in modes:
        registry = DEFAULT_REGISTRY[mode]
        if mode is not Mode.DISTILL and type_name in registry:
            targets.update(dict.fromkeys(registry.template(type_name)))
    return list(targets) or parameters(index, module)


def parameters(index: ModelIndex, module: str) -> list[str]:
    return [name for name, p in index.modules[module]._parameters.items() if p is not None]


def has_target(index: ModelIndex, module: str, target: str) -> bool:
    return target.startswith((INPUT_PREFIX, OUTPUT_PREFIX)) or target in parameters(index, module)
