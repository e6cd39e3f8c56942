"""The benchmark model's weights passed between processes: one torch.save file, loaded without a copy."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from workloads import linear_stack


def save_weights(model: nn.Module, path: Path) -> Path:
    """The model's state_dict as a plain torch file (NNI's venv may lack safetensors)."""
    torch.save(model.state_dict(), path)
    return path


def load_stack(path: Path, layers: int, width: int) -> nn.Module:
    """:func:`workloads.linear_stack` holding the saved weights, with one copy of them in memory.

    The module is built on the meta device and the loaded tensors are assigned, not copied,
    so loading never holds the weights twice and the peak RSS after loading is the model.
    """
    with torch.device("meta"):
        model = linear_stack(layers, width)
    model.load_state_dict(torch.load(path, weights_only=True), assign=True)
    return model
