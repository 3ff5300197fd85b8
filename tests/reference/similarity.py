"""The similarity target by hand: cosine similarity with loops, Grad-CAM of it from plain autograd.

Nothing is shared with xcam: the embedding is the model's output tensor, the activation is kept by
a forward hook, the gradient comes from ``torch.autograd.grad``, the sums are Python loops.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def cosine(e: Tensor, r: Tensor) -> float:
    """``<e, r> / (||e|| ||r||)`` for two (D,) vectors, summed one entry at a time in float64."""
    dot = sum(float(a) * float(b) for a, b in zip(e.tolist(), r.tolist()))
    ne = math.sqrt(sum(float(a) ** 2 for a in e.tolist()))
    nr = math.sqrt(sum(float(b) ** 2 for b in r.tolist()))
    return dot / (max(ne, 1e-8) * nr)


def gradcam_of_cosine(model: nn.Module, module: nn.Module, x: Tensor, r: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017, Eq. 1-2) of the cosine similarity, one (C, H, W) image.

    ``alpha_k = mean_ij dS / dA_k[i, j]``, map ``ReLU(sum_k alpha_k A_k)``, with ``S`` the cosine
    of ``model(x)`` (a (1, D) embedding) to ``r``; float64, loops over channels and pixels.
    """
    store: dict[str, Tensor] = {}

    def keep(mod: nn.Module, args: object, out: Tensor) -> Tensor:
        store["f"] = out.detach().clone().requires_grad_(True)
        return store["f"].clone()

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            e = model(x[None])[0]
            rr = r.to(e.dtype)
            score = (e * rr).sum() / (e.norm().clamp_min(1e-8) * rr.norm())
            (g,) = torch.autograd.grad(score, store["f"])
    finally:
        handle.remove()
    f, g = store["f"].detach()[0].double(), g[0].double()
    c, h, w = f.shape
    out = torch.zeros(h, w, dtype=torch.float64)
    for k in range(c):
        wk = sum(float(g[k, i, j]) for i in range(h) for j in range(w)) / (h * w)
        out += wk * f[k]
    return out.clamp(min=0)
