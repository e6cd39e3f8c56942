"""The quantization benchmark's models and inputs, torch only, so NNI's interpreter can import them too."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# One config for both engines: NNI 3.0's config_list keys, which dsl_compress takes as they are.
CONFIG_LIST = [
    {
        "op_types": ["Linear"],
        "target_names": ["weight"],
        "quant_dtype": "int8",
        "quant_scheme": "symmetric",
        "granularity": "out_channel",
    },
    {
        "op_types": ["Linear"],
        "target_names": ["_input_"],
        "quant_dtype": "int8",
        "quant_scheme": "affine",
    },
]

# Issue 9's LLM setting: int8 per-tensor symmetric weights and inputs of every Linear.
PER_TENSOR_CONFIG_LIST = [
    {
        "op_types": ["Linear"],
        "target_names": ["weight", "_input_"],
        "quant_dtype": "int8",
        "quant_scheme": "symmetric",
    }
]


class Mlp(nn.Module):
    """``depth`` x (Linear(width, width), ReLU)."""

    def __init__(self, width: int = 1024, depth: int = 4):
        super().__init__()
        self.layers = nn.Sequential(
            *[m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerBlock(nn.Module):
    """A pre-norm block with plain Linear projections, so every matmul is a quantized Linear."""

    def __init__(self, dim: int = 256, heads: int = 4, hidden: int = 1024):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        attn = F.scaled_dot_product_attention(
            self._split(self.q(y)), self._split(self.k(y)), self._split(self.v(y))
        )
        x = x + self.out(attn.transpose(1, 2).flatten(2))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = t.shape
        return t.view(batch, tokens, self.heads, dim // self.heads).transpose(1, 2)


# name: (factory, input shape of one batch, what it is)
MODELS = {
    "mlp": (Mlp, (64, 1024), "4 x (Linear(1024, 1024), ReLU), batch 64"),
    "llm_mlp": (
        lambda: Mlp(4096, 16),
        (256, 4096),
        "issue 9's GPU case: 16 x (Linear(4096, 4096), ReLU), 256 tokens (1 GB in fp32)",
    ),
    "transformer": (
        TransformerBlock,
        (8, 128, 256),
        "pre-norm block, dim 256, 4 heads, MLP 1024, 6 Linear, batch 8 x 128 tokens",
    ),
}


def build(name: str, seed: int = 0) -> nn.Module:
    """The named model, initialised from ``seed``, in eval mode."""
    factory = MODELS[name][0]
    torch.manual_seed(seed)
    return factory().eval()


def batches(name: str, count: int, seed: int = 1) -> list[torch.Tensor]:
    """``count`` deterministic input batches for the named model."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(MODELS[name][1], generator=generator) for _ in range(count)]
