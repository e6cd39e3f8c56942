"""A ModelOpt ``quant_cfg`` read as ModelOpt 0.47 reads it: the list form as it is, the legacy
dict form entry by entry in dict order with ``"default"`` rewritten to ``"*"`` in place (K156
where that disables what came before), ``nn.Class`` keys as parent classes; and each entry's
attributes in .rules terms, or why they have none."""

from __future__ import annotations

import ast
from typing import Any, Mapping

from dsl_compress.diagnostics import Diagnostic, fail
from dsl_compress.schema.config_text import bounded_json
from dsl_compress.tools.convert.modelopt_match import QUANTIZERS, Entry, module_regex
from dsl_compress.tools.convert.part import note

_CALIBRATION_KEYS = ("calibrator", "fake_quant", "use_constant_amax", "pass_through_bwd", "backend")


def read_config(text: str, path: str) -> tuple[Any, tuple[Diagnostic, ...]]:
    """The quant_cfg of a JSON or Python-literal text (a whole config's ``quant_cfg`` taken
    from it, its ``algorithm`` reported)."""
    try:
        value = bounded_json(text)
    except ValueError:
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError) as problem:
            fail("K150", f"{path}: not JSON nor a Python literal ({problem})")
        except (RecursionError, MemoryError):  # Python's parser overflows on deep nesting
            fail("K150", f"{path}: not JSON, and nested too deeply to read as a Python literal")
    notes = ()
    if isinstance(value, dict) and "quant_cfg" in value:
        if value.get("algorithm") not in (None, "max"):
            notes = (
                note(
                    "K151",
                    f"{path}:algorithm",
                    f"algorithm {value['algorithm']!r} calibrates the scales; it is not a setting: not converted",
                ),
            )
        value = value["quant_cfg"]
    if not isinstance(value, (list, dict)):
        fail("K150", f"{path}: a quant_cfg is a list of entries or a dict of patterns")
    return value, notes


def entries_of(value: Any, path: str) -> tuple[tuple[Entry, ...], list[Diagnostic]]:
    """The normalised entries, and the notes about the order ModelOpt applies them in."""
    if isinstance(value, list):
        return (
            tuple(_list_entry(item, f"{path}:quant_cfg[{i}]") for i, item in enumerate(value)),
            [],
        )
    entries, notes = [], []
    for key, item in value.items():
        origin = f"{path}:quant_cfg[{key!r}]"
        if str(key).startswith("nn.") and isinstance(item, dict):
            entries += [_entry(pattern, cfg, origin, parent=key) for pattern, cfg in item.items()]
        else:
            entries.append(_entry("*" if key == "default" else str(key), item, origin))
    keys = list(value)
    if "default" in keys and keys.index("default") > 0 and _disables(value["default"]):
        notes.append(_default_last_note(f"{path}:quant_cfg['default']", keys.index("default")))
    return tuple(entries), notes


def _disables(item: Any) -> bool:
    return isinstance(item, dict) and item.get("enable") is False


def _default_last_note(origin: str, before: int) -> Diagnostic:
    return note(
        "K156",
        origin,
        f'"default" comes after {before} other key(s) and disables: ModelOpt 0.47 applies it in '
        "place (as '*'), turning off every quantizer those keys set (<=0.40 applied it first; 0.47 "
        "then stops: no weight quantizer is enabled). Converted as 0.47 does",
        hint='move "default" first if the older meaning was intended',
    )


def _list_entry(item: Any, origin: str) -> Entry:
    if not isinstance(item, dict) or "quantizer_name" not in item:
        fail("K150", f"{origin}: a list entry is a dict with quantizer_name")
    unknown = set(item) - {"quantizer_name", "parent_class", "cfg", "enable"}
    if unknown or ("cfg" not in item and "enable" not in item):
        fail(
            "K150",
            f"{origin}: an entry has quantizer_name, parent_class and cfg or enable (ModelOpt rejects {sorted(unknown) or 'neither'})",
        )
    cfg = item.get("cfg")
    return Entry(
        str(item["quantizer_name"]),
        item.get("parent_class"),
        _attrs(cfg, origin),
        item.get("enable"),
        origin,
    )


def _entry(pattern: str, item: Any, origin: str, parent: str | None = None) -> Entry:
    if not isinstance(item, dict):
        fail("K150", f"{origin}: the value of a quant_cfg key is a dict of attributes")
    attrs = {k: v for k, v in item.items() if k != "enable"}
    return Entry(pattern, parent, attrs or None, item.get("enable"), origin)


def _attrs(cfg: Any, origin: str) -> Mapping[str, Any] | None:
    if cfg is None or isinstance(cfg, dict):
        return cfg
    if isinstance(cfg, list):
        return {"_sequential": cfg}
    fail("K150", f"{origin}: cfg must be a dict of attributes (or a list of them)")


def pattern_notes(entries: tuple[Entry, ...]) -> list[Diagnostic]:
    """Patterns that select more than their author probably meant, or nothing at all."""
    notes = []
    for entry in entries:
        kinds = [q for q in QUANTIZERS if module_regex(entry.pattern, q) is not None]
        if entry.pattern.startswith("re:"):
            notes.append(
                note(
                    "K157",
                    entry.origin,
                    f"{entry.pattern!r}: ModelOpt patterns are fnmatch globs, 're:' is literal text: it selects nothing",
                )
            )
        elif entry.pattern != "*" and entry.enables and len(kinds) > 1:
            notes.append(
                note(
                    "K157",
                    entry.origin,
                    f"{entry.pattern!r} matches the {', '.join(kinds)} of every module it names, not only the weights",
                    hint=f"end it with the quantizer: {entry.pattern.rstrip('*')}.weight_quantizer",
                )
            )
    return notes


def convert_attrs(attrs: Mapping[str, Any], quantizer: str) -> tuple[tuple, list[str], list[str]]:
    """(settings, reasons there are none, calibration keys not converted) for one quantizer's
    final attributes: int num_bits, axis 0 / None, block_sizes {-1: g}."""
    reasons, calibration = [], [k for k in _CALIBRATION_KEYS if k in attrs]
    if "_sequential" in attrs:
        return (
            (),
            ["a list of cfgs (several formats in sequence) has no NNI equivalent"],
            calibration,
        )
    bits = attrs.get("num_bits", 8)
    if not isinstance(bits, int) or isinstance(bits, bool):
        reasons.append(f"num_bits {bits!r} is a float format: no NNI equivalent")
    elif not 2 <= bits <= 8:
        reasons.append(f"num_bits {bits}: NNI integer types have 2 to 8 bits")
    for key in ("unsigned", "narrow_range"):
        if attrs.get(key):
            reasons.append(f"{key}=True has no NNI equivalent")
    if attrs.get("type") == "dynamic":
        reasons.append("type='dynamic' (scales at run time) has no NNI equivalent")
    known = {
        "num_bits",
        "axis",
        "block_sizes",
        "unsigned",
        "narrow_range",
        "type",
        "enable",
        "bias",
        "trt_high_precision_dtype",
    }
    reasons += [
        f"attribute {key!r} is not converted"
        for key in sorted(set(attrs) - known - set(_CALIBRATION_KEYS))
    ]
    granularity = _granularity(attrs, quantizer, reasons)
    if reasons:
        return (), reasons, calibration
    settings = (
        ("quant_dtype", f"int{bits}"),
        ("quant_scheme", "symmetric"),
        ("granularity", granularity),
    )
    return settings, [], calibration


def _granularity(attrs: Mapping[str, Any], quantizer: str, reasons: list[str]) -> Any:
    blocks = attrs.get("block_sizes")
    if blocks:
        sizes = {str(k): v for k, v in blocks.items()}
        if (
            set(sizes) - {"-1", "type"}
            or sizes.get("type", "static") != "static"
            or "-1" not in sizes
        ):
            reasons.append(
                f"block_sizes {blocks!r}: only {{-1: g}} (static groups along the input) converts"
            )
            return None
        return [1, int(sizes["-1"])]
    axis = attrs.get("axis")
    if axis is None:
        return "default"
    if axis == 0 and quantizer == "weight_quantizer":
        return "out_channel"
    reasons.append(
        f"axis {axis!r} on the {quantizer}: only axis 0 of a weight (per output channel) converts"
    )
    return None
