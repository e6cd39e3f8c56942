"""Small example models shipped with the package, for the README, the CLI and tests."""

from __future__ import annotations

import torch
from torch import nn


class ConvBnNet(nn.Module):
    """Three conv-bn-relu blocks and a linear head: the conv → BN align case in miniature."""

    def __init__(self, channels: tuple[int, ...] = (8, 16, 16), classes: int = 10):
        super().__init__()
        widths = (3, *channels)
        for i, (cin, cout) in enumerate(zip(widths, widths[1:]), start=1):
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, 3, padding=1))
            setattr(self, f"bn{i}", nn.BatchNorm2d(cout))
        self.blocks = len(channels)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.blocks + 1):
            x = self.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class BasicBlock(nn.Module):
    """A ResNet basic block: two conv-bn pairs and an identity or 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """A small ResNet (stem, two stages of two basic blocks, linear head)."""

    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
        self.layer2 = nn.Sequential(
            BasicBlock(width, 2 * width, 2), BasicBlock(2 * width, 2 * width)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


class TinyTransformerBlock(nn.Module):
    """A pre-norm transformer block: attention and an MLP over [batch, tokens, dim]."""

    def __init__(self, dim: int = 32, heads: int = 4, hidden: int = 64):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class TiedLanguageModel(nn.Module):
    """Token embedding, one MLP layer and an output head that shares the embedding's weight,
    as many language models tie them (lm_head.weight is embed.weight)."""

    def __init__(self, vocab: int = 64, dim: int = 16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.fc = nn.Linear(dim, dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lm_head(torch.relu(self.fc(self.embed(tokens))))


EXAMPLE_MODELS = {
    "cnn": (ConvBnNet, (2, 3, 16, 16)),
    "resnet": (TinyResNet, (2, 3, 16, 16)),
    "transformer": (TinyTransformerBlock, (2, 8, 32)),
}


def example_model(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A freshly initialised example model and one deterministic input batch for it."""
    factory, shape = EXAMPLE_MODELS[name]
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    return factory(), torch.randn(shape, generator=generator)


def cnn() -> nn.Module:
    """The bundled CNN, for `--model dsl_compress.models:cnn`."""
    return example_model("cnn")[0]


def resnet() -> nn.Module:
    """The bundled small ResNet, for `--model dsl_compress.models:resnet`."""
    return example_model("resnet")[0]


def transformer() -> nn.Module:
    """The bundled transformer block, for `--model dsl_compress.models:transformer`."""
    return example_model("transformer")[0]


def tied_lm() -> nn.Module:
    """A tiny language model whose lm_head shares the embedding's weight, for
    `--model dsl_compress.models:tied_lm` (its input: token ids)."""
    torch.manual_seed(0)
    return TiedLanguageModel()
