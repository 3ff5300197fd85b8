from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torchvision
from torch import nn

from tests.nets import TinyNet, randomize_bn


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for tiny models (OpenMP barriers stall when other jobs hold the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny() -> nn.Module:
    torch.manual_seed(0)
    model = TinyNet()
    randomize_bn(model, torch.Generator().manual_seed(1))
    return model.eval()


@pytest.fixture(scope="session")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    randomize_bn(model, torch.Generator().manual_seed(2))
    return model.eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
