"""Perturbation and gradient references, one sample and one window at a time, float64."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def score(model: nn.Module, x: Tensor, cls: int) -> float:
    """The logit of class ``cls`` for one (C, H, W) image."""
    with torch.no_grad():
        return float(model(x[None])[0, cls])


def occlusion(model: nn.Module, x: Tensor, cls: int, window: tuple[int, int],
              stride: tuple[int, int], baseline: float | Tensor = 0.0) -> Tensor:
    """Mean over covering windows of ``S(x) - S(x occluded)``; (H, W) float64."""
    _, h, w = x.shape
    base = torch.as_tensor(baseline, dtype=x.dtype).expand_as(x)
    s0 = score(model, x, cls)
    total = torch.zeros(h, w, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    for iy in range(math.ceil((h - window[0]) / stride[0]) + 1):
        for ix in range(math.ceil((w - window[1]) / stride[1]) + 1):
            y0, x0 = iy * stride[0], ix * stride[1]
            ys, xs = slice(y0, y0 + window[0]), slice(x0, x0 + window[1])
            occluded = x.clone()
            occluded[:, ys, xs] = base[:, ys, xs]
            total[ys, xs] += s0 - score(model, occluded, cls)
            count[ys, xs] += 1
    return torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))


def input_gradient(model: nn.Module, x: Tensor, cls: int) -> Tensor:
    """``dS^c/dx`` for one (C, H, W) image, float64."""
    x = x.detach().clone().requires_grad_(True)
    model.eval()
    with torch.enable_grad():
        (g,) = torch.autograd.grad(model(x[None])[0, cls], x)
    return g.double()
