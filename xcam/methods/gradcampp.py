"""Grad-CAM++ (Chattopadhay et al., WACV 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_explainer
from .base import CAMExplainer, LayerPass

__all__ = ["GradCAMPlusPlus", "gradcampp_weights"]


def gradcampp_weights(feature_sums: Tensor, g1: Tensor, g2: Tensor, g3: Tensor) -> Tensor:
    """Grad-CAM++ channel weights from the closed form for an exponential output.

    ``alpha_k[i,j] = g^2 / (2 g^2 + (sum_ab F_k[a,b]) g^3)`` (alpha = 0 where the denominator is 0),
    ``w_k = sum_ij alpha_k[i,j] ReLU(g_k[i,j])``.

    Args:
        feature_sums: (B, C) ``sum_ab F_k[a, b]``.
        g1: (B, C, h, w) the gradient (or its mean over noisy copies, for Smooth Grad-CAM++).
        g2: (B, C, h, w) its second power (or that power's mean).
        g3: (B, C, h, w) its third power (or that power's mean).

    Returns:
        (B, C) weights. No epsilon is added: the form is scale-invariant, as in the paper.
    """
    denom = 2 * g2 + feature_sums[:, :, None, None] * g3
    safe = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = torch.where(denom != 0, g2 / safe, torch.zeros_like(denom))
    return (alpha * torch.relu(g1)).sum(dim=(2, 3))


@register_explainer("gradcampp")
class GradCAMPlusPlus(CAMExplainer):
    """Grad-CAM++: pixel-wise weighted positive gradients.

    With ``g = dS^c/dF_k``: ``alpha = g^2 / (2 g^2 + sum_ab F_k[a,b] * g^3)`` (0 where the
    denominator is 0), ``w_k = sum_ij alpha * ReLU(g)``, ``map = ReLU( sum_k w_k F_k )``.

    This is the paper's equation with no epsilon. pytorch-grad-cam adds 1e-6 to the denominator,
    which is not scale-invariant: on trained ImageNet models, whose squared gradients are often
    below 1e-6, its maps differ from the equation by more than 10 %. Cost: one forward pass and one
    backward pass to ``layer``.
    """

    def low_res(self, features: Tensor, grads: Tensor | None, lp: LayerPass) -> Tensor:
        """The (B, h, w) map of the equation in the class docstring."""
        assert grads is not None
        g2 = grads * grads
        w = gradcampp_weights(features.sum(dim=(2, 3)), grads, g2, g2 * grads)
        return self.combine(w, features)
