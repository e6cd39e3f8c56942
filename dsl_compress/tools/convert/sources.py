"""The converters by source tool, and which tool a source file was written for when the
command is not told (`--from`)."""

from __future__ import annotations

from dsl_compress.diagnostics import CompressionError, error
from dsl_compress.schema.config_text import bounded_json
from dsl_compress.tools.convert.conversion import Converter
from dsl_compress.tools.convert.llmcompressor import convert_llmcompressor
from dsl_compress.tools.convert.modelopt import convert_modelopt
from dsl_compress.tools.convert.nni import convert_nni

CONVERTERS: dict[str, Converter] = {
    "nni": convert_nni,
    "llmcompressor": convert_llmcompressor,
    "modelopt": convert_modelopt,
}
"""Every source tool `convert --from` takes, with its converter."""


def guess_source(text: str, path: str) -> str:
    """The tool ``text`` was written for: a JSON list or per-mode object of configs is NNI's, a
    YAML recipe with ``*_stage`` keys llm-compressor's, a dict with ``quant_cfg`` or a list of
    ``quantizer_name`` entries (JSON or a Python literal) ModelOpt's; K105 when it cannot
    tell."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        # ModelOpt 0.47's list form is a list of entries each naming its quantizer_name.
        return "modelopt" if "quantizer_name" in text else "nni"
    if stripped.startswith("{"):
        if "quant_cfg" in text:
            return "modelopt"
        try:
            data = bounded_json(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and data and set(data) <= {"prune", "quantize", "distill"}:
            return "nni"
    elif "_stage" in text and ":" in text:
        return "llmcompressor"
    elif "quant_cfg" in text:
        return "modelopt"
    raise CompressionError(
        [
            error(
                "K105",
                "cannot tell which tool this source was written for (an NNI config_list is a JSON list "
                "or an object by kind, a llm-compressor recipe YAML with *_stage keys, a ModelOpt "
                "config a dict with quant_cfg)",
                subject=path,
                hint="give --from nni|llmcompressor|modelopt",
            )
        ]
    )
