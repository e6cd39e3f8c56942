"""`convert --from modelopt`: a ModelOpt quant_cfg as .rules. Each statement selects exactly the
quantizers whose last matching cfg entry is its entry and that end enabled (a regex of
lookaheads over the later entries), so the statements are disjoint and ModelOpt's
"later entry wins" order holds whatever our precedence; checked per tensor with a model."""

from __future__ import annotations

from dataclasses import replace

from typing import Any

from dsl_compress.tools.convert.conversion import Conversion, ConvertedStatement
from dsl_compress.tools.convert.ct_match import modules_of
from dsl_compress.tools.convert.modelopt_cfg import (
    convert_attrs,
    entries_of,
    pattern_notes,
    read_config,
)
from dsl_compress.tools.convert.modelopt_match import (
    DEFAULT_ATTRS,
    DEFAULT_ENABLED,
    QUANTIZED_TYPES,
    QUANTIZERS,
    Entry,
    final_states,
    module_regex,
)
from dsl_compress.tools.convert.part import note
from dsl_compress.tools.convert.selection_check import Wanted, checked
from dsl_compress.tools.convert.selectors import regex_selector
from dsl_compress.vocab import Mode

_DEFAULT = Entry("*", None, DEFAULT_ATTRS, None, "ModelOpt's default quantizer (8-bit per tensor)")


def convert_modelopt(text: str, path: str, mode: Mode | None, model: Any) -> Conversion:
    """The quant_cfg at ``path`` as .rules (``mode`` unused: it quantizes); with ``model``, every
    quantizer checked against ModelOpt's own order rules (re-implemented in modelopt_match)."""
    value, notes = read_config(text, path)
    entries, order_notes = entries_of(value, path)
    notes = list(notes) + order_notes + pattern_notes(entries)
    modules = modules_of(model) if model is not None else None
    types = sorted({m.type_name for m in modules} & set(QUANTIZED_TYPES)) if modules else ["Linear"]
    statements, reported = [], set()
    for module_type in types:
        for quantizer in QUANTIZERS:
            statements += _statements(entries, module_type, quantizer, notes, reported)
    header = [f"converted from the ModelOpt quant_cfg {path} (0.47 order rules)"]
    if order_notes:
        header.append('ModelOpt 0.47 applies "default" in place: see the K156 note')
    if modules is None:
        header.append(
            "without a model only Linear is converted (ModelOpt also quantizes Conv1d/2d/3d)"
        )
    conversion = Conversion(tuple(statements), tuple(notes), source=path, header=tuple(header))
    if model is None:
        return conversion
    pairs = [(m.name, m.type_name) for m in modules]
    conversion = replace(conversion, notes=conversion.notes + _embeddings(modules, entries))
    return checked(conversion, _wanted(final_states(pairs, entries)), model)


def _embeddings(modules, entries: tuple[Entry, ...]) -> tuple:
    """K160 for the embeddings whose weight quantizer ModelOpt's entries leave enabled: it
    quantizes them too, the converted rules do not (a quantized embedding is not deployable
    in vLLM or transformers)."""
    pairs = [(m.name, m.type_name) for m in modules]
    states = final_states(pairs, entries, ("Embedding",))
    enabled = sorted(
        name
        for (name, quantizer), state in states.items()
        if quantizer == "weight_quantizer" and state.enabled
    )
    if not enabled:
        return ()
    message = (
        f"ModelOpt also quantizes the weights of the embedding(s) {', '.join(enabled)}: not "
        "converted (no serving stack loads a quantized embedding)"
    )
    hint = "quantize them with `register quantize Embedding { weight }` if you mean it"
    return (note("K160", enabled[0], message, hint=hint),)


def _relevant(
    entries: tuple[Entry, ...], module_type: str, quantizer: str
) -> list[tuple[Entry, str]]:
    """The entries that can reach this kind of quantizer on this type, each with its module regex."""
    found = []
    for entry in entries:
        regex = module_regex(entry.pattern, quantizer)
        parent = entry.parent_class.split(".")[-1] if entry.parent_class else module_type
        if regex is not None and parent == module_type:
            found.append((entry, regex))
    return found


def _statements(entries, module_type: str, quantizer: str, notes: list, reported: set) -> list:
    relevant = [(_DEFAULT, ".*")] + _relevant(entries, module_type, quantizer)
    statements = []
    for position, (entry, regex) in enumerate(relevant):
        if entry.attrs is None:
            continue
        selected = _selection_regex(relevant, position, DEFAULT_ENABLED[quantizer])
        if selected is None:
            continue
        settings, reasons, calibration = convert_attrs(entry.attrs, quantizer)
        if (entry.origin, quantizer) not in reported:
            reported.add((entry.origin, quantizer))
            notes += _attr_notes(entry, quantizer, reasons, calibration)
        if settings:
            statements.append(_statement(module_type, quantizer, selected, settings, entry))
    return statements


def _selection_regex(relevant: list, position: int, default_enabled: bool) -> str | None:
    """Modules whose quantizer takes this entry's attributes and ends enabled: one alternative per
    entry that may have the last say (this one, or a later enabling toggle)."""
    alternatives = []
    for last in range(position, len(relevant)):
        entry = relevant[last][0]
        enables = default_enabled if last == 0 else entry.enables
        if not enables or (last > position and entry.attrs is not None):
            continue
        later_cfgs = [r for e, r in relevant[position + 1 : last] if e.attrs is not None]
        positives = [relevant[position][1]] + ([relevant[last][1]] if last > position else [])
        negatives = later_cfgs + [r for _, r in relevant[last + 1 :]]
        if ".*" not in negatives:
            alternatives.append(_lookaheads(positives, negatives))
    if not alternatives:
        return None
    return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"


def _lookaheads(positives: list[str], negatives: list[str]) -> str:
    positives = [p for p in dict.fromkeys(positives) if p != ".*"]
    if not negatives and len(positives) <= 1:
        return positives[0] if positives else ".*"
    ahead = "".join(f"(?=(?:{p})\\Z)" for p in positives)
    return ahead + "".join(f"(?!(?:{n})\\Z)" for n in dict.fromkeys(negatives)) + ".*"


def _statement(
    module_type: str, quantizer: str, selected: str, settings: tuple, entry: Entry
) -> ConvertedStatement:
    target = QUANTIZERS[quantizer]
    selector = f"{module_type}.{target}"
    if selected != ".*":
        selector += " in " + regex_selector(selected)
    comment = None
    if selected.startswith("(?") and "(?!" in selected:
        comment = "ModelOpt: later entries win; the lookaheads leave out what they change"
    if (
        entry.pattern != "*"
        and sum(module_regex(entry.pattern, q) is not None for q in QUANTIZERS) > 1
    ):
        wide = f"{entry.pattern!r} reaches every quantizer of the modules it names (K157)"
        comment = f"{comment}\n{wide}" if comment else wide
    return ConvertedStatement(Mode.QUANTIZE, selector, settings, entry.origin, comment)


def _attr_notes(entry: Entry, quantizer: str, reasons: list[str], calibration: list[str]) -> list:
    notes = []
    if reasons:
        notes.append(
            note(
                "K152",
                entry.origin,
                f"{quantizer}: {'; '.join(reasons)}: not converted, left unquantized",
            )
        )
    if calibration:
        notes.append(
            note(
                "K151",
                entry.origin,
                f"{quantizer}: {', '.join(calibration)} steer calibration, not settings: not converted",
            )
        )
    return notes


def _wanted(states: dict) -> dict:
    wanted = {}
    for (module, quantizer), state in states.items():
        if state.enabled:
            settings, _, _ = convert_attrs(state.attrs, quantizer)
            if settings:
                wanted[(module, QUANTIZERS[quantizer], Mode.QUANTIZE)] = Wanted(
                    settings, state.origin
                )
    return wanted
