"""ModelOpt's quantizer selection (``set_quantizer_by_cfg``, 0.47): entries applied in order to
quantizer names ``<module>.weight_quantizer|input_quantizer|output_quantizer`` by ``fnmatch``;
a ``cfg`` entry replaces the attributes (enabling unless it says otherwise), an enable-only
entry toggles; and a glob on quantizer names turned into a regex on module names."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

QUANTIZERS = {
    "weight_quantizer": "weight",
    "input_quantizer": "_input_",
    "output_quantizer": "_output_",
}
# The module types ModelOpt gives quantizers here (its registry has more: RNNs, HF attention).
QUANTIZED_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d")
# A fresh quantizer: 8-bit per tensor; QuantLinear/QuantConv disable the output quantizer.
DEFAULT_ATTRS: Mapping[str, Any] = {"num_bits": 8, "axis": None}
DEFAULT_ENABLED = {"weight_quantizer": True, "input_quantizer": True, "output_quantizer": False}


@dataclass(frozen=True)
class Entry:
    """One normalised quant_cfg entry: the pattern, its parent class (None: any), the complete
    attributes (None: an enable-only entry), the enable value (None: not given), its origin."""

    pattern: str
    parent_class: str | None
    attrs: Mapping[str, Any] | None
    enable: bool | None
    origin: str

    @property
    def enables(self) -> bool:
        """The state the entry leaves a matched quantizer in (a cfg entry enables by default)."""
        return self.enable if self.enable is not None else self.attrs is not None


@dataclass(frozen=True)
class QuantizerState:
    enabled: bool
    attrs: Mapping[str, Any]
    origin: str


def applies(entry: Entry, module_type: str, quantizer_name: str) -> bool:
    """``fnmatch`` on the quantizer's full name (case-sensitive, as on Linux), within the
    parent class when the entry names one (``nn.Linear`` → ``Linear``)."""
    if entry.parent_class and entry.parent_class.split(".")[-1] != module_type:
        return False
    return fnmatch.fnmatchcase(quantizer_name, entry.pattern)


def final_states(
    modules: Iterable[tuple[str, str]],
    entries: Iterable[Entry],
    types: tuple[str, ...] = QUANTIZED_TYPES,
) -> dict:
    """Each quantizer's state after every entry, keyed (module, quantizer); ``modules`` are
    (name, type name) pairs, only those of ``types`` given quantizers."""
    entries = tuple(entries)
    states = {}
    for name, module_type in modules:
        if module_type not in types:
            continue
        for quantizer in QUANTIZERS:
            state = QuantizerState(DEFAULT_ENABLED[quantizer], DEFAULT_ATTRS, "ModelOpt's default")
            for entry in entries:
                if applies(entry, module_type, f"{name}.{quantizer}" if name else quantizer):
                    state = _applied(state, entry)
            states[(name, quantizer)] = state
    return states


def _applied(state: QuantizerState, entry: Entry) -> QuantizerState:
    if entry.attrs is None:
        return QuantizerState(bool(entry.enable), state.attrs, state.origin)
    return QuantizerState(entry.enables, entry.attrs, entry.origin)


def module_regex(pattern: str, quantizer: str) -> str | None:
    """A regex R with ``re.fullmatch(R, M)`` exactly when ``fnmatch(f"{M}.{quantizer}", pattern)``
    (the glob's right quotient by the literal suffix); None when no module name can match."""
    residues = {tuple(_tokens(pattern))[::-1]}
    for char in reversed(f".{quantizer}"):
        residues = {rest for tokens in residues for rest in _derivatives(tokens, char)}
    if not residues:
        return None
    alternatives = sorted("".join(_regex(t) for t in reversed(tokens)) for tokens in residues)
    return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"


def _tokens(pattern: str) -> list[tuple[str, str]]:
    tokens, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        end = pattern.find("]", i + 2) if char == "[" else -1
        if char == "*":
            tokens.append(("star", ""))
        elif char == "?":
            tokens.append(("any", ""))
        elif end != -1:
            tokens.append(("set", fnmatch.translate(pattern[i : end + 1])[4:-3]))
            i = end
        else:
            tokens.append(("lit", char))
        i += 1
    return tokens


def _derivatives(tokens: tuple, char: str) -> list[tuple]:
    """The token sequences (reversed) left after the sequence's first token consumes ``char``."""
    if not tokens:
        return []
    (kind, value), rest = tokens[0], tokens[1:]
    if kind == "star":
        return [tokens] + _derivatives(rest, char)
    if kind == "any" or (kind == "lit" and value == char):
        return [rest]
    if kind == "set" and re.fullmatch(value, char):
        return [rest]
    return []


def _regex(token: tuple[str, str]) -> str:
    kind, value = token
    return {"star": ".*", "any": "."}.get(kind) or (value if kind == "set" else re.escape(value))
