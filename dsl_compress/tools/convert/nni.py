"""NNI 3.0 config_list → .rules: one group of statements per config, NNI's first-wins order
made explicit (configs reordered where .rules would let a later one win), excludes shared by a
whole list as `exclude` statements, and, with a model, the round trip checked and repaired."""

from __future__ import annotations

import re

from dataclasses import replace
from typing import Any

from dsl_compress.diagnostics import CompressionError, Diagnostic, raise_errors
from dsl_compress.resolve.config_input import ConfigInput, read_config_input
from dsl_compress.schema.config_text import parse_located_json
from dsl_compress.tools.convert.conversion import Conversion, ConvertedStatement
from dsl_compress.tools.convert.nni_configs import config_statements
from dsl_compress.tools.convert.nni_legacy import translate_legacy
from dsl_compress.tools.convert.nni_order import anchoring_notes, ordered_configs
from dsl_compress.tools.convert.nni_selectors import except_selectors, excludes_of
from dsl_compress.tools.convert.round_trip import check_round_trip
from dsl_compress.vocab import Mode

MODE_HINT = "give --mode prune|quantize|distill"


def convert_nni(text: str, path: str, mode: Mode | None, model: Any) -> Conversion:
    """A config_list (a list with ``mode``, or an object with a list per mode) as .rules."""
    config = _read(text, path, mode)
    statements: list[ConvertedStatement] = []
    notes: list[Diagnostic] = []
    lists: dict[Mode, list] = {}
    sources: dict[Mode, list[int]] = {}
    for each, config_list in config.lists.items():
        translated, found, sources[each] = translate_legacy(config_list, each)
        notes.extend(config.located(each, found))
        lists[each] = translated
    source = config
    config = ConfigInput(lists, config.spans)
    raise_errors(_renumbered(config.validate(), sources))
    for each, config_list in lists.items():
        made, found = _convert_list(config_list, each, model, len(lists) > 1)
        statements.extend(_renumbered_origins(made, sources[each], each))
        notes.extend(source.located(each, _renumbered(found, {each: sources[each]})))
    conversion = Conversion(tuple(statements), tuple(notes), path, _header(path, lists))
    if model is None:
        return conversion
    return check_round_trip(conversion, config, model, _renumbering(sources))


_INDEX = re.compile(r"config_list(\['\w+'\])?\[(\d+)\]")


def _renumbering(sources: dict[Mode, list[int]]):
    """``config_list[i]`` (or ``config_list['mode'][i]``) of the translated lists (NNI 2.x
    exclude configs dropped) as the source's config, in any text."""

    def source_index(found: re.Match) -> str:
        mode = Mode(found.group(1)[2:-2]) if found.group(1) else next(iter(sources))
        return f"config_list{found.group(1) or ''}[{sources[mode][int(found.group(2))]}]"

    return lambda text: _INDEX.sub(source_index, text)


def _renumbered(notes: list[Diagnostic], sources: dict[Mode, list[int]]) -> list[Diagnostic]:
    """Notes about the translated lists speaking of the source's configs."""
    renumber = _renumbering(sources)
    return [
        replace(
            note,
            message=renumber(note.message),
            subject=renumber(note.subject) if note.subject else None,
        )
        for note in notes
    ]


def _renumbered_origins(
    statements: list[ConvertedStatement], indices: list[int], mode: Mode
) -> list:
    """The statements' origins by the source's index."""
    renumber = _renumbering({mode: indices})
    return [replace(s, origin=renumber(s.origin)) for s in statements]


def _read(text: str, path: str, mode: Mode | None) -> ConfigInput:
    try:
        located = parse_located_json(text, path)
    except CompressionError as exc:
        raise CompressionError([_relabel(d) for d in exc.diagnostics]) from None
    plain = read_config_input(located.data, mode, mode_hint=MODE_HINT)
    roots = {m: ((m.value,) if isinstance(located.data, dict) else ()) for m in plain.lists}
    return ConfigInput(plain.lists, {m: located.subject_spans(r) for m, r in roots.items()})


def _relabel(diag: Diagnostic) -> Diagnostic:
    return Diagnostic("K105", diag.severity, diag.message, diag.span, diag.subject, diag.hint)


def _header(path: str, lists: dict) -> tuple[str, ...]:
    kinds = ", ".join(m.value for m in lists)
    return (f"converted from the NNI 3.0 config_list {path} ({kinds}) by dsl-compress convert",)


def _convert_list(config_list: list, mode: Mode, model: Any, by_mode: bool):
    """The statements of one mode's list: shared excludes first, then the configs in an order
    under which .rules precedence gives NNI's first-wins result."""
    shared = _shared_excludes(config_list)
    out = [ConvertedStatement(None, s, exclude_from=mode) for s in except_selectors(shared)]
    if out:
        out[0] = _with_comment(out[0], "every config of the list excludes these (exclude_op_*)")
    notes: list[Diagnostic] = []
    blocks = []
    for i, config in enumerate(config_list):
        origin = f"config_list[{i}]" if not by_mode else f"config_list['{mode.value}'][{i}]"
        excepts = () if shared else except_selectors(config)
        made, found = config_statements(config, mode, origin, excepts)
        blocks.append(made)
        notes.extend(_subject_fixed(found, i))
    order, comments, found = ordered_configs(config_list, mode, model)
    notes.extend(found)
    if model is not None:
        notes.extend(anchoring_notes(config_list, model))
    for i in order:
        block = blocks[i]
        if i in comments and block:
            block[0] = _with_comment(block[0], comments[i])
        out.extend(block)
    return out, notes


def _subject_fixed(notes: list[Diagnostic], index: int) -> list[Diagnostic]:
    """Notes located at the config (config.located finds ``config_list[i]`` in the file)."""
    subject = f"config_list[{index}]"
    return [Diagnostic(d.code, d.severity, d.message, d.span, subject, d.hint) for d in notes]


def _shared_excludes(config_list: list) -> dict:
    """The exclude_op_* keys when every config of the list has the same ones (then they are
    `exclude ... from KIND` statements), else {}."""
    if not config_list:
        return {}
    first = excludes_of(config_list[0])
    if not any(first.values()) or any(excludes_of(c) != first for c in config_list[1:]):
        return {}
    return {key: list(values) for key, values in first.items()}


def _with_comment(statement: ConvertedStatement, comment: str) -> ConvertedStatement:
    joined = comment if not statement.comment else f"{statement.comment}\n{comment}"
    return replace(statement, comment=joined)
