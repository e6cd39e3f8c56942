"""`apply --format compressed-tensors`: a streamed run written as a Hugging Face model folder that
transformers and vLLM load (config.json with its quantization_config, the source folder's
tokenizer and generation files, the weights in the compressed-tensors layout), with our own
masks and plan beside it in a folder of their own."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from dsl_compress.deploy.ct_args import ModuleScheme
from dsl_compress.deploy.ct_config import quantization_config
from dsl_compress.deploy.ct_tensors import (
    input_tensors,
    planned_input,
    planned_weight,
    weight_tensors,
)
from dsl_compress.diagnostics import fail
from dsl_compress.engine.quantize import QuantParams
from dsl_compress.engine.stream import StreamRun
from dsl_compress.engine.stream_data import PlannedTensor, StreamSink
from dsl_compress.io.json_text import json_text
from dsl_compress.io.outputs import write_plan_files
from dsl_compress.io.shard_writer import ShardedWriter
from dsl_compress.io.stream_outputs import OutputFile
from dsl_compress.plan import Plan

# Where our own outputs go: a folder of their own, so that a loader globbing *.safetensors
# at the top (vLLM without an index) sees the model's files only.
EXTRAS = "dsl-compress"
# Source-folder files that are weights (written anew) or config.json (rewritten), not copied.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".gguf")


@dataclass(frozen=True)
class CompressedTensorsFormat:
    """The layout of a compressed-tensors model folder for a run whose quantized modules have
    ``schemes``, built from the Hugging Face folder ``source`` (its config and tokenizer);
    ``modules`` names every module of the model and ``ignored`` its Linear modules left as
    they are (config.json lists both kinds of target exactly)."""

    schemes: Mapping[str, ModuleScheme]
    source: Path
    modules: tuple[str, ...]
    ignored: tuple[str, ...]
    # compressed-tensors keeps each scale in its weight's dtype (see StreamFormat).
    scales_like_weights = True

    def files(self, run: StreamRun) -> list[OutputFile]:
        """The model's safetensors (sharded the Hugging Face way) and our masks beside them."""
        model, sources = self._model_tensors(run)
        return [
            OutputFile("model", tuple(model), {"format": "pt"}, sources.__getitem__),
            OutputFile("masks", run.layout.masks, subfolder=EXTRAS),
        ]

    def _model_tensors(self, run: StreamRun) -> tuple[list[PlannedTensor], dict[str, str]]:
        """Every tensor of the model file and the checkpoint tensor each comes from: a
        quantized weight's packed or int8 values, scale, shape and zero point; an input's
        scale under its module; any other tensor as it is (one name of a tied tensor)."""
        planned, sources, dtypes = [], {}, {}
        for tensor in run.layout.model:
            if tensor.name in _duplicates(run.tied):
                continue
            module, _, target = tensor.name.rpartition(".")
            if target == "weight":
                dtypes[module] = tensor.dtype  # an input's scale is kept in its weight's dtype
            parts = [(target, tensor.shape, tensor.dtype)]
            if target == "weight" and module in self.schemes:
                parts = planned_weight(self.schemes[module], tensor.shape, tensor.dtype)
            for name, shape, dtype in parts:
                planned.append(PlannedTensor(_joined(module, name), shape, dtype))
                sources[_joined(module, name)] = tensor.name
        for module, scheme in self.schemes.items():
            if scheme.input_activations is not None:
                for name, shape, dtype in planned_input(scheme.input_activations, dtypes[module]):
                    planned.append(PlannedTensor(f"{module}.{name}", shape, dtype))
                    sources[f"{module}.{name}"] = f"{module}._input_0"
        return planned, sources

    def sink(self, writers: Mapping[str, ShardedWriter]) -> StreamSink:
        """What turns the run's tensors into this layout's, as they arrive."""
        return _CompressedSink(writers["model"], writers["masks"], self)

    def finish(self, plan: Plan, staging: Path) -> list[Path]:
        """config.json with the quantization_config, the source's other small files, and our
        plan files in the extras folder."""
        config = json.loads((self.source / "config.json").read_text(encoding="utf-8"))
        if self.schemes:
            config["quantization_config"] = quantization_config(
                self.schemes, self.modules, self.ignored
            )
        else:  # pruned only: a plain dense checkpoint with zeros, as llm-compressor writes it
            config.pop("quantization_config", None)
        written = [staging / "config.json"]
        written[0].write_text(json_text(config), encoding="utf-8")
        for path in sorted(self.source.iterdir()):
            if _copied(path):
                shutil.copyfile(path, staging / path.name)
                written.append(staging / path.name)
        return written + write_plan_files(plan, staging / EXTRAS)


def _copied(path: Path) -> bool:
    """The source folder's files a model folder keeps: tokenizer, generation config, chat
    template, licence and the like; not the weights, their index or config.json."""
    name = path.name
    if not path.is_file() or name == "config.json" or name.endswith(".index.json"):
        return False
    return not name.endswith(_WEIGHT_SUFFIXES)


def _joined(module: str, name: str) -> str:
    return f"{module}.{name}" if module else name


def _duplicates(tied: Mapping[str, tuple[str, ...]]) -> set[str]:
    """Every name of a tied tensor but its first, which alone is written (as save_pretrained
    does; the model ties the others on loading)."""
    return {name for names in tied.values() for name in names[1:]}


class _CompressedSink:
    """Turns each final tensor into the compressed-tensors layout as it arrives: a quantized
    weight's integer codes packed (or as int8) with its scale in the weight's dtype."""

    def __init__(self, model: ShardedWriter, masks: ShardedWriter, layout: CompressedTensorsFormat):
        self._model, self._masks, self._layout = model, masks, layout
        self._planned = model.planned
        self._params: dict[str, QuantParams] = {}

    def quant(self, name: str, params: QuantParams) -> None:
        """A weight's scales are kept for its values; an input's are written at once."""
        module, _, target = name.rpartition(".")
        if target == "weight":
            self._params[name] = params
            return
        args = self._layout.schemes[module].input_activations
        dtype = self._planned[f"{module}.input_scale"].dtype
        if args is None:
            fail("X803", f"{name} was observed, but {module} quantizes no input")
        made = input_tensors(args, params.scale, params.zero_point, params.qrange.qmin, dtype)
        for part, tensor in made.items():
            self._model.write(f"{module}.{part}", tensor)

    def model(self, name: str, tensor: torch.Tensor, codes=None) -> None:
        """A quantized weight as its packed (or int8) codes, scale and shape; any other tensor
        as it is; a second name of a tied tensor not at all."""
        if name not in self._planned and name not in self._params:
            return  # a second name of a tied tensor
        params = self._params.pop(name, None)
        if params is None:
            self._model.write(name, tensor)
            return
        if codes is None:
            fail("X803", f"{name} is quantized but its integer codes were not handed on")
        module = name.rpartition(".")[0]
        made = weight_tensors(
            self._layout.schemes[module],
            codes(),
            params.scale,
            params.zero_point,
            params.qrange.qmin,
            tensor.dtype,
        )
        for part, value in made.items():
            self._model.write(_joined(module, part), value)

    def mask(self, name: str, mask: torch.Tensor) -> None:
        """A mask, written to our own masks file."""
        self._masks.write(name, mask)

    def read_mask(self, name: str) -> torch.Tensor:
        """A mask written earlier, read back (a plan that calibrates through its masks)."""
        return self._masks.read(name)


def compressed_tensors_format(
    schemes: Mapping[str, ModuleScheme], skeleton: torch.nn.Module, source: Path
) -> CompressedTensorsFormat:
    """The folder layout for quantized modules of ``schemes`` (checked before: see
    :func:`dsl_compress.deploy.checks.deployment_findings`) on ``skeleton``, built from the
    Hugging Face folder ``source`` (its config and tokenizer)."""
    types = {name: type(module).__name__ for name, module in skeleton.named_modules()}
    ignored = tuple(
        name for name, kind in types.items() if kind == "Linear" and name not in schemes
    )
    return CompressedTensorsFormat(dict(schemes), source, tuple(types), ignored)
