"""Selectors as .rules spells them for the names other tools select by: an exact module name, a
class name, and a regular expression matched the way the source tool matches it."""

from __future__ import annotations

import re

_SEGMENT = re.compile(r"[A-Za-z0-9_]+$")
_TYPE_WORD = re.compile(r"[A-Z][A-Za-z0-9_]*$")
_TARGET_WORD = re.compile(r"(weight|bias|_input_\w*|_output_\w*)$")
_RESERVED = {"with", "from", "in", "except"}
_GLOBAL_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")


def regex_selector(pattern: str, target: str | None = None) -> str:
    """``re"..."`` (matched against the whole module name), its quotes escaped; with a target."""
    text = 're"' + pattern.replace('"', '\\"') + '"'
    return f"{text}.{target}" if target else text


def prefix_regex(pattern: str) -> str:
    """The whole-name regex that matches exactly the names ``re.match(pattern, name)`` does
    (NNI's op_names_re, compressed-tensors' ``re:`` targets): ``(?:pattern).*``, or
    ``pattern`` itself where it already ends in an unescaped ``.*``, or without its closing
    ``$`` (where it has no alternation)."""
    flags = _GLOBAL_FLAGS.match(pattern)
    if flags:  # Python wants global flags such as (?i) at the very start: they stay there
        rest = pattern[flags.end() :]
        # In verbose mode a '#' comment runs to the line's end: close the group on a new line.
        return flags.group() + (f"(?:{rest}\n).*" if "x" in flags.group() else prefix_regex(rest))
    if "|" not in pattern and pattern.endswith(".*") and not pattern.endswith("\\.*"):
        return pattern
    if "|" not in pattern and pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1]
    return f"(?:{pattern}).*"


def name_selector(name: str, target: str | None = None) -> str:
    """An exact module name, with a target: the name itself where .rules reads it as one, else
    an escaped regex (a CamelCase single segment would read as a type, a last segment
    ``weight`` as a target, a keyword as itself)."""
    segments = name.split(".")
    plain = bool(name) and all(_SEGMENT.match(s) and s not in _RESERVED for s in segments)
    if len(segments) == 1 and _TYPE_WORD.match(name):
        plain = False
    if len(segments) > 1 and _TARGET_WORD.match(segments[-1]):
        plain = False
    if plain:
        return f"{name}.{target}" if target else name
    return regex_selector(re.escape(name), target)


def type_selector(type_name: str, target: str | None = None) -> str:
    """A module type: its exact class name."""
    return f"{type_name}.{target}" if target else type_name
