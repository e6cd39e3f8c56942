"""compressed-tensors' quantization schemes in .rules terms: the preset names llm-compressor
accepts (``PRESET_SCHEMES``, 0.20.1) and one ``QuantizationArgs`` turned into our settings, or
into the reasons it has no NNI equivalent (float formats, dynamic activations)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# A scheme: its weights, input_activations and output_activations args (None: not quantized).
Scheme = Mapping[str, Any]
ROLES = {"weights": "weight", "input_activations": "_input_", "output_activations": "_output_"}


def _int(bits: int, strategy: str, group: int | None = None, **extra: Any) -> dict[str, Any]:
    args = {"num_bits": bits, "type": "int", "symmetric": True, "strategy": strategy}
    return args | ({"group_size": group} if group else {}) | extra


def _float(bits: int, strategy: str, group: int | None = None, **extra: Any) -> dict[str, Any]:
    return _int(bits, strategy, group, **extra) | {"type": "float"}


_TOKEN_INT8 = _int(8, "token", dynamic=True)
_FP8_TOKEN = _float(8, "token", dynamic=True)
_NVFP4 = _float(4, "tensor_group", 16)


def _presets() -> dict[str, Scheme]:
    table: dict[str, Scheme] = {"UNQUANTIZED": {}}
    for bits in range(2, 9):
        weights = _int(bits, "group", 128)
        table[f"W{bits}A16"] = {"weights": weights}
        if bits <= 4:  # compressed-tensors names W2A4..W4A4 only
            table[f"W{bits}A4"] = {
                "weights": weights,
                "input_activations": _int(4, "token", dynamic=True),
            }
        if bits < 8:
            table[f"W{bits}A8"] = {"weights": weights, "input_activations": _TOKEN_INT8}
    int8 = {"weights": _int(8, "channel"), "input_activations": _TOKEN_INT8}
    table |= {"W8A8": int8, "INT8": int8}
    table["W4A16_ASYM"] = {"weights": _int(4, "group", 128) | {"symmetric": False}}
    table["W4AFP8"] = {"weights": _int(4, "group", 128), "input_activations": _FP8_TOKEN}
    table["FP8"] = {"weights": _float(8, "tensor"), "input_activations": _float(8, "tensor")}
    table["FP8_DYNAMIC"] = {"weights": _float(8, "channel"), "input_activations": _FP8_TOKEN}
    table["FP8_BLOCK"] = {
        "weights": _float(8, "block", block_structure=[128, 128]),
        "input_activations": _float(8, "group", 128, dynamic=True),
    }
    table["NVFP4A16"] = {"weights": _NVFP4}
    table["NVFP4"] = {"weights": _NVFP4, "input_activations": _NVFP4 | {"dynamic": "local"}}
    mx = {4: _float(4, "group", 32), 6: _float(6, "group", 32), 8: _float(8, "group", 32)}
    table["MXFP4A16"] = {"weights": mx[4]}
    table["MXFP4"] = {"weights": mx[4], "input_activations": mx[4] | {"dynamic": True}}
    table["MXFP4XFP8"] = {
        "weights": mx[4],
        "input_activations": _float(8, "group", 128, dynamic=True),
    }
    table["MXFP6A16"] = {"weights": mx[6]}
    table["MXFP6A8"] = {"weights": mx[6], "input_activations": mx[8] | {"dynamic": True}}
    table["MXFP8A16"] = {"weights": mx[8]}
    table["MXFP8"] = {"weights": mx[8], "input_activations": mx[8] | {"dynamic": True}}
    return table


PRESETS: dict[str, Scheme] = _presets()

# Args keys that steer how scales are found or stored, not which values are representable.
CALIBRATION_KEYS = ("actorder", "observer", "observer_kwargs", "scale_dtype", "zp_dtype")
_GRANULARITY_KEYS = ("num_bits", "type", "symmetric", "strategy", "group_size", "block_structure")


@dataclass(frozen=True)
class ArgsSettings:
    """One args object converted: our settings (empty when it has no NNI equivalent), why not
    (the reasons), and the calibration keys it carried that are not settings."""

    settings: tuple[tuple[str, Any], ...]
    reasons: tuple[str, ...] = ()
    calibration: tuple[str, ...] = ()


def strategy_of(args: Mapping[str, Any]) -> str:
    """The strategy, inferred as compressed-tensors' validator infers a missing one."""
    if args.get("strategy"):
        return str(args["strategy"])
    if args.get("block_structure"):
        return "block"
    group = args.get("group_size")
    return "tensor" if group is None else ("channel" if group == -1 else "group")


def convert_args(args: Mapping[str, Any]) -> ArgsSettings:
    """Our quant_dtype, quant_scheme and granularity for one QuantizationArgs (a complete
    replacement, all three always written so that no other statement's key leaks in)."""
    calibration = tuple(k for k in CALIBRATION_KEYS if args.get(k) not in (None, {}, False))
    unknown = sorted(set(args) - set(_GRANULARITY_KEYS) - set(CALIBRATION_KEYS) - {"dynamic"})
    reasons = [f"unknown QuantizationArgs key {key!r}" for key in unknown]
    bits, kind = args.get("num_bits", 8), args.get("type", "int")
    if kind != "int":
        reasons.append(f"{kind} {bits}-bit values (a float format) have no NNI 3.0 equivalent")
    elif not isinstance(bits, int) or not 2 <= bits <= 8:
        reasons.append(f"num_bits {bits!r}: NNI 3.0 integer types have 2 to 8 bits")
    if args.get("dynamic"):
        reasons.append(
            f"dynamic={args['dynamic']!r} scales (computed at run time) have no NNI equivalent"
        )
    granularity = _granularity(args, reasons)
    if reasons:
        return ArgsSettings((), tuple(reasons), calibration)
    symmetric = args.get("symmetric", True) is not False
    dtype = f"int{bits}" if symmetric else f"uint{bits}"
    scheme = "symmetric" if symmetric else "affine"
    settings = (("quant_dtype", dtype), ("quant_scheme", scheme), ("granularity", granularity))
    return ArgsSettings(settings, (), calibration)


def _granularity(args: Mapping[str, Any], reasons: list[str]) -> Any:
    strategy = strategy_of(args)
    if strategy == "tensor":
        return "default"
    if strategy == "channel":
        return "out_channel"
    if strategy == "group" and isinstance(args.get("group_size"), int):
        return [1, args["group_size"]]
    if strategy == "block" and len(args.get("block_structure") or ()) == 2:
        return list(args["block_structure"])
    reasons.append(f"strategy {strategy!r} has no NNI 3.0 granularity")
    return None
