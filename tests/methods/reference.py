"""Slow, obviously-correct references written from the papers' equations.

One sample, one window, one channel or one noisy copy at a time; plain ``torch.autograd.grad``;
float64 accumulation; nothing shared with xcam.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


def features_and_grad(model: nn.Module, module: nn.Module, x: Tensor, cls: int) -> tuple[Tensor, Tensor]:
    """Output of ``module`` and ``dS^c/d output`` for one (C, H, W) image."""
    store: dict[str, Tensor] = {}

    def hook(mod, args, out):
        t = out.detach().clone().requires_grad_(True)
        store["f"] = t
        return t.clone()  # a later in-place op (ReLU(inplace=True)) must not touch the leaf

    handle = module.register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            out = model(x[None])
            (g,) = torch.autograd.grad(out[0, cls], store["f"])
    finally:
        handle.remove()
    return store["f"].detach()[0].double(), g[0].double()


def layercam(model, module, x, cls) -> Tensor:
    f, g = features_and_grad(model, module, x, cls)
    c, h, w = f.shape
    out = torch.zeros(h, w, dtype=torch.float64)
    for k in range(c):
        for i in range(h):
            for j in range(w):
                out[i, j] += max(float(g[k, i, j]), 0.0) * float(f[k, i, j])
    return out.clamp(min=0)


def hirescam(model, module, x, cls) -> Tensor:
    f, g = features_and_grad(model, module, x, cls)
    c, h, w = f.shape
    out = torch.zeros(h, w, dtype=torch.float64)
    for k in range(c):
        for i in range(h):
            for j in range(w):
                out[i, j] += float(g[k, i, j]) * float(f[k, i, j])
    return out.clamp(min=0)


def xgradcam(model, module, x, cls) -> Tensor:
    f, g = features_and_grad(model, module, x, cls)
    c, h, w = f.shape
    out = torch.zeros(h, w, dtype=torch.float64)
    for k in range(c):
        total = float(f[k].sum())
        if total == 0:
            continue
        wk = sum(float(f[k, i, j]) / total * float(g[k, i, j]) for i in range(h) for j in range(w))
        out += wk * f[k]
    return out.clamp(min=0)


def eigencam(model, module, x) -> Tensor:
    """First principal component by power iteration on the covariance (no SVD)."""
    f, _ = features_and_grad(model, module, x, 0)
    c, h, w = f.shape
    a = f.reshape(c, h * w).t()
    a = a - a.mean(0, keepdim=True)
    cov = a.t() @ a
    v = torch.ones(c, dtype=torch.float64) / math.sqrt(c)
    for _ in range(2000):
        v = cov @ v
        v = v / v.norm()
    if v.sum() < 0:
        v = -v
    return (a @ v).clamp(min=0).reshape(h, w)


def scorecam(model, module, x, cls, channels=None, subtract_baseline=False) -> Tensor:
    """Score-CAM for one image: a forward pass per feature map."""
    f, _ = features_and_grad(model, module, x, cls)
    ks = range(f.shape[0]) if channels is None else channels
    size = x.shape[-2:]

    def prob(img: Tensor) -> float:
        with torch.no_grad():
            return float(torch.softmax(model(img[None]).double(), 1)[0, cls])

    p0 = prob(torch.zeros_like(x)) if subtract_baseline else 0.0
    out = torch.zeros(f.shape[1:], dtype=torch.float64)
    for k in ks:
        up = F.interpolate(f[k][None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
        lo, hi = float(up.min()), float(up.max())
        mask = (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)
        out += (prob(x * mask) - p0) * f[k]
    return out.clamp(min=0)
