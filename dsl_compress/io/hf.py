"""`--model hf:DIR`: a local Hugging Face model folder's architecture, built with no weights in it.

The class is the one config.json's ``architectures`` names, built from the config by
``transformers`` with every parameter on the meta device; its weights are the folder's
checkpoint, loaded by ``weights.load_weights``. Nothing is ever downloaded: the folder must
exist, and the config is read with ``local_files_only``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import torch

from dsl_compress.diagnostics import CompressionError, did_you_mean, fail
from dsl_compress.io.specs import exc_text

HF_PREFIX = "hf:"
INSTALL_HINT = "pip install 'dsl-compress[hf]'"


def is_hf_spec(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(HF_PREFIX)


def hf_folder(spec: str) -> Path:
    """The folder an ``hf:`` spec names; a name that is no folder here (a hub id) is refused."""
    folder = Path(spec[len(HF_PREFIX) :])
    if folder.is_dir():
        return folder
    if folder.exists():
        _spec_error(spec, f"'{folder}' is a file, not a model folder", "pass the folder itself")
    _spec_error(
        spec,
        f"no local folder '{folder}': hf: reads a model folder on this machine and never "
        "downloads one",
        "download it first (e.g. `huggingface-cli download ID --local-dir DIR`), then pass "
        "hf:DIR",
    )
    raise AssertionError("unreachable")


def hf_skeleton(spec: str) -> torch.nn.Module:
    """The folder's model class, built from its config with parameters on the meta device, ties
    applied and in eval mode (as ``from_pretrained`` leaves a model)."""
    folder = hf_folder(spec)
    transformers = _transformers(spec)
    config = _config(spec, folder, transformers)
    cls = _model_class(spec, folder, config, transformers)
    with _parameters_on_meta(), _user_code(spec, f"building {cls.__name__} from its config"):
        model = cls._from_config(config, **_dtype_argument(config, transformers))
        if hasattr(model, "tie_weights"):
            model.tie_weights()
    return model.eval()


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Every parameter registered meanwhile goes to the meta device; buffers are built for real.

    A whole ``torch.device("meta")`` context would leave the buffers that ``__init__`` computes
    and checkpoints do not hold (rotary ``inv_freq``, ``position_ids``) without values, and the
    model could never run; parameters are all a checkpoint replaces. This is what transformers'
    own low-memory loading did (``init_empty_weights(include_buffers=False)``).
    """

    def to_meta(module: torch.nn.Module, name: str, param: Any) -> Any:
        if param is None or param.is_meta:
            return None  # kept as it is: a tie re-registers a parameter already on meta
        return torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    handle = torch.nn.modules.module.register_module_parameter_registration_hook(to_meta)
    try:
        yield
    finally:
        handle.remove()


def _transformers(spec: str) -> Any:
    try:
        import transformers
    except ImportError:
        _spec_error(spec, f"hf: models need transformers: {INSTALL_HINT}", None)
    return transformers


def _config(spec: str, folder: Path, transformers: Any) -> Any:
    file = folder / "config.json"
    if not file.is_file():
        _spec_error(
            spec,
            f"'{folder}' has no config.json",
            "hf: takes a folder written by save_pretrained (config.json and safetensors)",
        )
    with _user_code(spec, f"reading '{file}'"):
        return transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)


def _model_class(spec: str, folder: Path, config: Any, transformers: Any) -> type:
    names = getattr(config, "architectures", None) or []
    where = folder / "config.json"
    if not names:
        _spec_error(
            spec,
            f"'{where}' names no architectures",
            'add the model class, e.g. "architectures": ["LlamaForCausalLM"]',
        )
    cls = getattr(transformers, names[0], None)
    if not isinstance(cls, type) or not issubclass(cls, transformers.PreTrainedModel):
        known = [n for n in dir(transformers) if n[:1].isupper()]
        _spec_error(
            spec,
            f"'{where}' names the architecture '{names[0]}', which transformers "
            f"{transformers.__version__} does not have",
            did_you_mean(names[0], known) or "upgrade transformers, or fix the name",
        )
    return cls


def _dtype_argument(config: Any, transformers: Any) -> dict[str, Any]:
    """Build in the config's dtype: transformers 5 does so itself, 4.x must be told."""
    if int(transformers.__version__.split(".")[0]) >= 5:
        return {}
    dtype = getattr(config, "torch_dtype", None)
    return {"torch_dtype": getattr(torch, dtype) if isinstance(dtype, str) else dtype}


@contextlib.contextmanager
def _user_code(spec: str, doing: str) -> Iterator[None]:
    """transformers' own errors (an unknown model_type, a bad config) as one L101 line."""
    try:
        yield
    except CompressionError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever transformers raises becomes one diagnostic
        _spec_error(spec, f"{doing} raised {exc_text(exc)}", None)


def _spec_error(spec: str, message: str, hint: str | None) -> None:
    fail("L101", message, subject=spec, hint=hint)
