"""A Grad-CAM wrapper that counts, sleeps and fails on request (resume and failure tests)."""

from __future__ import annotations

import torch
from torch import nn


class Counting:
    """Grad-CAM at ``features`` that counts the images it explains; it can sleep (``XCAM_TEST_SLEEP`` seconds)
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
        cls.calls += int(inputs.shape[0])  # images, so that counts do not depend on the batches
        if cls.calls in cls.fail_on:
            raise ValueError(f"planned failure on call {cls.calls}")
        time.sleep(float(os.environ.get("XCAM_TEST_SLEEP", "0")))
        return self.inner(inputs, targets)

    @classmethod
    def reset(cls) -> None:
        cls.calls, cls.fail_on, cls.interrupt_after = 0, set(), None


def counting_gradcam(model: nn.Module) -> Counting:
    return Counting(model)
