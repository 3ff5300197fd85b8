"""Slow references of issue 17's CAM methods: one sample and one channel at a time, float64 sums.

Nothing is shared with xcam: plain forward hooks, plain ``torch.autograd``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _record(model: nn.Module, module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """``module``'s output and the model output for one (C, H, W) image, without gradients."""
    store: dict[str, Tensor] = {}
    handle = module.register_forward_hook(lambda m, a, out: store.__setitem__("f", out.detach().clone()))
    try:
        model.eval()
        with torch.no_grad():
            out = model(x[None])
    finally:
        handle.remove()
    return store["f"], out


def ablationcam(model: nn.Module, module: nn.Module, x: Tensor, cls: int) -> Tensor:
    """Ablation-CAM (Desai and Ramaswamy 2020): w_k = (y_c - y_c^k) / y_c, one channel per pass."""
    f, out = _record(model, module, x)
    y = float(out[0, cls])
    c = f.shape[1]
    result = torch.zeros(f.shape[2:], dtype=torch.float64)
    for k in range(c):
        ablated = f.clone()
        ablated[0, k] = 0.0
        handle = module.register_forward_hook(lambda m, a, o, t=ablated: t.clone())
        try:
            with torch.no_grad():
                yk = float(model(x[None])[0, cls])
        finally:
            handle.remove()
        result += (y - yk) / y * f[0, k].double()
    return result.clamp(min=0)


def shapleycam(model: nn.Module, module: nn.Module, x: Tensor, score) -> Tensor:
    """ShapleyCAM (Cai et al. 2025): w_k = mean_ij (g - 1/2 H F)_k, with torch.autograd.functional.

    ``score(output) -> (1,)`` is the explained score of the one-image output; ``S(F)`` reruns the
    model with ``module``'s output replaced by ``F``.
    """
    f, _ = _record(model, module, x)

    def s_of_f(feat: Tensor) -> Tensor:
        handle = module.register_forward_hook(lambda m, a, o: feat)
        try:
            return score(model(x[None]))[0]
        finally:
            handle.remove()

    with torch.enable_grad():
        _, g = torch.autograd.functional.vjp(s_of_f, f.clone())
        _, hf = torch.autograd.functional.hvp(s_of_f, f.clone(), f.clone())
    c = f.shape[1]
    result = torch.zeros(f.shape[2:], dtype=torch.float64)
    for k in range(c):
        wk = float((g[0, k].double() - 0.5 * hf[0, k].double()).mean())
        result += wk * f[0, k].double()
    return result.clamp(min=0)
