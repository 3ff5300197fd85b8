"""The one capture helper of the references: a stored activation and its gradient, by hand.

A forward hook (or pre-hook, for a module's input) keeps a leaf copy of the tensor and sends a clone
downstream, so a later in-place op cannot touch it; the gradient comes from plain
``torch.autograd.grad``. Nothing is shared with xcam.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def features_and_grad(model: nn.Module, module: nn.Module, x: Tensor, cls: int,
                      use_input: bool = False) -> tuple[Tensor, Tensor]:
    """``module``'s output (or input) and ``dS^c / d`` it for one (C, H, W) image, float64."""
    store: dict[str, Tensor] = {}

    def keep(t: Tensor) -> Tensor:
        store["f"] = t.detach().clone().requires_grad_(True)
        return store["f"].clone()  # a later in-place op (ReLU(inplace=True)) must not touch the leaf

    if use_input:
        handle = module.register_forward_pre_hook(lambda mod, args: (keep(args[0]), *args[1:]))
    else:
        handle = module.register_forward_hook(lambda mod, args, out: keep(out))
    try:
        model.eval()
        with torch.enable_grad():
            out = model(x[None])
            (g,) = torch.autograd.grad(out[0, cls], store["f"])
    finally:
        handle.remove()
    return store["f"].detach()[0].double(), g[0].double()
