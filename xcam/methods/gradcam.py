"""Grad-CAM (Selvaraju et al., ICCV 2017)."""

from __future__ import annotations

from torch import Tensor

from ..registry import register_explainer
from .base import CAMExplainer, LayerPass

__all__ = ["GradCAM"]


@register_explainer("gradcam")
class GradCAM(CAMExplainer):
    """Grad-CAM: channel weights are the spatially averaged gradients.

    ``w_k = mean_ij dS^c/dF_k[i, j]``, ``map = ReLU( sum_k w_k F_k )``.

    One forward pass and one backward pass that stops at ``layer``. Matches captum
    ``LayerGradCam`` followed by a ReLU, and pytorch-grad-cam ``GradCAM``, on the same layer.

    Example:
        >>> explanation = GradCAM(model, layer="layer4")(x, targets=[281, 207])
        >>> explanation.maps.shape  # (2, H, W)
    """

    def low_res(self, features: Tensor, grads: Tensor | None, lp: LayerPass) -> Tensor:
        """The (B, h, w) map of the equation in the class docstring."""
        assert grads is not None
        return self.combine(grads.mean(dim=(2, 3)), features)
