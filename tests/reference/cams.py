"""CAM-family maps written from the papers, one sample and one channel at a time.

Deliberately naive: per-sample forward passes, explicit loops over channels and pixels, plain
``torch.autograd.grad`` on a stored activation, no shared code with xcam.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .capture import features_and_grad


def gradcam(model, module, x: Tensor, cls: int, use_input: bool = False) -> Tensor:
    f, g = features_and_grad(model, module, x, cls, use_input)
    c, h, w = f.shape
    out = torch.zeros(h, w, dtype=torch.float64)
    for k in range(c):
        wk = sum(float(g[k, i, j]) for i in range(h) for j in range(w)) / (h * w)
        out += wk * f[k].double()
    return out.clamp(min=0)


def gradcampp(model, module, x: Tensor, cls: int, use_input: bool = False) -> Tensor:
    f, g = features_and_grad(model, module, x, cls, use_input)
    f, g = f.double(), g.double()
    c, h, w = f.shape
    out = torch.zeros(h, w, dtype=torch.float64)
    for k in range(c):
        total = float(f[k].sum())
        wk = 0.0
        for i in range(h):
            for j in range(w):
                gij = float(g[k, i, j])
                denom = 2 * gij**2 + total * gij**3
                alpha = gij**2 / denom if denom != 0 else 0.0
                wk += alpha * max(gij, 0.0)
        out += wk * f[k]
    return out.clamp(min=0)


def cam(model, pool: nn.Module, linear: nn.Linear, x: Tensor, cls: int) -> Tensor:
    store = {}
    handle = pool.register_forward_pre_hook(lambda m, a: store.__setitem__("f", a[0].detach()))
    try:
        model.eval()
        with torch.no_grad():
            model(x[None])
    finally:
        handle.remove()
    f = store["f"][0].double()
    out = torch.zeros(f.shape[1:], dtype=torch.float64)
    for k in range(f.shape[0]):
        out += float(linear.weight[cls, k].detach()) * f[k]
    return out.clamp(min=0)


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
