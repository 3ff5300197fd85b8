"""CAM-family maps written from the papers, one sample and one channel at a time.

Deliberately naive: per-sample forward passes, explicit loops over channels and pixels, plain
``torch.autograd.grad`` on a stored activation, no shared code with xcam.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _features_and_grad(model: nn.Module, module: nn.Module, x: Tensor, cls: int,
                       use_input: bool = False) -> tuple[Tensor, Tensor]:
    store: dict[str, Tensor] = {}

    if use_input:
        def pre(mod, args):
            t = args[0].detach().clone().requires_grad_(True)
            store["f"] = t
            return (t,)
        handle = module.register_forward_pre_hook(pre)
    else:
        def hook(mod, args, out):
            t = out.detach().clone().requires_grad_(True)
            store["f"] = t
            return t
        handle = module.register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            out = model(x[None])
            (g,) = torch.autograd.grad(out[0, cls], store["f"])
    finally:
        handle.remove()
    return store["f"].detach()[0], g[0]


def gradcam(model, module, x: Tensor, cls: int, use_input: bool = False) -> Tensor:
    f, g = _features_and_grad(model, module, x, cls, use_input)
    c, h, w = f.shape
    out = torch.zeros(h, w, dtype=torch.float64)
    for k in range(c):
        wk = sum(float(g[k, i, j]) for i in range(h) for j in range(w)) / (h * w)
        out += wk * f[k].double()
    return out.clamp(min=0)


def gradcampp(model, module, x: Tensor, cls: int, use_input: bool = False) -> Tensor:
    f, g = _features_and_grad(model, module, x, cls, use_input)
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
