"""Tiny models that the ``xcam`` command can build by name (``tests.compare.nets:tiny``)."""

from __future__ import annotations

import torch
from torch import nn


class Tiny(nn.Module):
    """Conv -> BN -> ReLU -> pool -> conv -> ReLU -> GAP -> Linear; weights fixed by a seed."""

    def __init__(self, num_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def tiny(num_classes: int = 5) -> nn.Module:
    """The same weights on every call (seeded; the caller's RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Tiny(num_classes)
        gen = torch.Generator().manual_seed(1)
        bn = model.features[1]
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
    return model.eval()


class Counting:
    """Grad-CAM at ``features`` that counts its calls; it can sleep (``XCAM_TEST_SLEEP`` seconds)
    and raise (``fail_on`` calls: ValueError; ``interrupt_after`` calls: KeyboardInterrupt)."""

    calls = 0
    fail_on: set[int] = set()
    interrupt_after: int | None = None

    def __init__(self, model: nn.Module) -> None:
        from xcam.methods import GradCAM

        self.inner = GradCAM(model, layer="features")

    def params(self) -> dict:
        return self.inner.params()

    def __call__(self, inputs: torch.Tensor, targets: object = None):
        import os
        import time

        cls = type(self)
        if cls.interrupt_after is not None and cls.calls >= cls.interrupt_after:
            raise KeyboardInterrupt
        cls.calls += 1
        if cls.calls in cls.fail_on:
            raise ValueError(f"planned failure on call {cls.calls}")
        time.sleep(float(os.environ.get("XCAM_TEST_SLEEP", "0")))
        return self.inner(inputs, targets)

    @classmethod
    def reset(cls) -> None:
        cls.calls, cls.fail_on, cls.interrupt_after = 0, set(), None


def counting_gradcam(model: nn.Module) -> Counting:
    return Counting(model)
