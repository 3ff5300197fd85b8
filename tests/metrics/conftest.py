"""Small models with known outputs, and inputs, for the metric tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn


@pytest.fixture(autouse=True, scope="package")
def _one_thread() -> Iterator[None]:
    """Tiny models on a shared machine: one intra-op thread avoids OpenMP barrier stalls (a
    100x slowdown when other processes hold the cores); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RegionLogit(nn.Module):
    """Two classes: ``logit0 = scale * sum_{c, p} weight[p] * x[c, p]``, ``logit1 = 0``.

    The target probability is ``sigmoid(logit0)``, so every curve can be written by hand.
    """

    def __init__(self, weight: Tensor, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("weight", weight.float())
        self.scale = scale
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        logit0 = self.scale * (x * self.weight).sum(dim=(1, 2, 3))
        return torch.stack([logit0, torch.zeros_like(logit0)], dim=1)


class Counting(nn.Module):
    """Wraps a model and records the batch size and grad mode of every call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[int] = []
        self.grad_enabled: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append(int(x.shape[0]))
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.model(x)


class SmallNet(nn.Module):
    def __init__(self, n_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@pytest.fixture
def net() -> nn.Module:
    torch.manual_seed(0)
    return SmallNet().eval()


@pytest.fixture
def images() -> Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.fixture
def rand_maps() -> Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(4))
