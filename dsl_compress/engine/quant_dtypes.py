"""quant_dtype ranges, torch-free: what each quant_dtype maps to, read by the numerics
(``quant_math``) and by the checks of settings that lint runs without torch."""

from __future__ import annotations

from dataclasses import dataclass

from dsl_compress.diagnostics import did_you_mean, fail
from dsl_compress.vocab import QUANT_DTYPES


@dataclass(frozen=True)
class QuantRange:
    """The integer range a quant_dtype maps to: ``[qmin, qmax]`` inclusive."""

    qmin: int
    qmax: int
    quant_dtype: str

    @property
    def bits(self) -> int:
        return _bits(self.quant_dtype)


def quant_range(quant_dtype: str | None, subject: str = "quant_dtype") -> QuantRange:
    """The range of ``quant_dtype``; None means int8, as in NNI.

    ``int<b>`` is NNI's narrow symmetric range ``[-(2^(b-1)) + 1, 2^(b-1) - 1]`` (int8 is
    [-127, 127]) and ``uint<b>`` is ``[0, 2^b - 1]``. NNI takes any ``int<b>``; we accept
    b = 2..8 only, because that is the set this project specifies (C106 says so), and
    reject anything else with C106.
    """
    if quant_dtype is None:
        quant_dtype = "int8"
    if not isinstance(quant_dtype, str) or quant_dtype not in QUANT_DTYPES:
        _reject_dtype(quant_dtype, subject)
    bits = _bits(quant_dtype)
    if quant_dtype.startswith("uint"):
        return QuantRange(0, 2**bits - 1, quant_dtype)
    return QuantRange(-(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1, quant_dtype)


def _bits(quant_dtype: str) -> int:
    return int(quant_dtype.removeprefix("u").removeprefix("int"))


def _reject_dtype(value: object, subject: str) -> None:
    word = f"int{value}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    hint = "use one of int2..int8 or uint2..uint8 (None means int8)"
    suggestion = did_you_mean(word, QUANT_DTYPES)
    fail(
        "C106",
        f"quant_dtype {value!r} of {subject} is not int2..int8 or uint2..uint8",
        subject=subject,
        hint=f"{suggestion} {hint}" if suggestion else hint,
    )
