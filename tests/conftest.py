"""Shared fixtures: registry isolation and the tiny deterministic models the engine tests use."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dsl_compress.schema.registry import DEFAULT_REGISTRY

FC1_WEIGHT = [[1.0, 2, 3, 4], [-5, 6, 7, 8], [0.1, 0.2, 0.3, 0.4], [9, 10, 11, 12]]
# Row L1 norms [26, 10, 6, 22], the fc2 of nni-semantics.md §4.6.
FC2_WEIGHT = [[6.0, 7, 6, 7], [1, 2, 3, 4], [1, 1, 2, 2], [4, 5, 6, 7]]


@pytest.fixture
def here(tmp_path, monkeypatch):
    """The test's own folder as the working folder (files named relative to it, as CI does)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def isolated_registry():
    """No test leaks a registration into another: the default registry is restored after each."""
    snapshot = DEFAULT_REGISTRY.snapshot()
    yield DEFAULT_REGISTRY
    DEFAULT_REGISTRY.restore(snapshot)


class TwoLinear(nn.Module):
    """fc1 and fc2 (4x4) with the weights of the NNI worked examples."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor(FC1_WEIGHT))
            self.fc2.weight.copy_(torch.tensor(FC2_WEIGHT))
            self.fc1.bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
            self.fc2.bias.copy_(torch.tensor([-0.1, -0.2, -0.3, -0.4]))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class ConvBn(nn.Module):
    """conv1 -> bn1 -> relu -> conv2 -> bn2: the page's conv-bn-relu pattern."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.bn2 = nn.BatchNorm2d(6)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))

    def forward(self, x):
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


class CustomizedModule(nn.Module):
    """The page's module, smaller; the output's last dim follows p1's rows (the page's text)."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.p1 = nn.Parameter(torch.randn(20, 10, generator=gen))
        self.p2 = nn.Parameter(torch.randn(20, 5, generator=gen))

    def forward(self, x, y):
        return x @ self.p1.T + y @ self.p2.T


@pytest.fixture
def two_linear():
    return TwoLinear()


@pytest.fixture
def conv_bn():
    return ConvBn()


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert list(state) == list(saved)
    for key, value in saved.items():
        assert torch.equal(state[key], value), key


class Aliased(nn.Module):
    """One block reachable as 'a' and 'b', and fc2 sharing fc1's weight (tied)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.b = self.a
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4, bias=False)
        self.fc2.weight = self.fc1.weight

    def forward(self, x):
        return self.fc2(self.fc1(self.b(self.a(x))))
