"""XGrad-CAM (Fu et al., BMVC 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_explainer
from .base import CAMExplainer, LayerPass

__all__ = ["XGradCAM"]


@register_explainer("xgradcam")
class XGradCAM(CAMExplainer):
    """XGrad-CAM: gradients weighted by the normalized activations.

    Fu, Hu, Dong, Guo, Gao & Li, "Axiom-based Grad-CAM: Towards Accurate Visualization and
    Explanation of CNNs", BMVC 2020. With ``g = dS^c/dF``::

        w_k = sum_ij ( F_k[i, j] / sum_ab F_k[a, b] ) * g_k[i, j]
        map = ReLU( sum_k w_k F_k )

    A channel whose activations sum to 0 gets ``w_k = 0`` (no epsilon; pytorch-grad-cam adds
    1e-7 to the denominator, which only matters for channels whose activations sum to about that).
    One forward and one backward pass to ``layer``.
    """

    def low_res(self, features: Tensor, grads: Tensor | None, lp: LayerPass) -> Tensor:
        """The (B, h, w) map of the equation in the class docstring."""
        assert grads is not None
        total = features.sum(dim=(2, 3))
        safe = torch.where(total != 0, total, torch.ones_like(total))
        w = torch.where(total != 0, (features * grads).sum(dim=(2, 3)) / safe, torch.zeros_like(total))
        return self.combine(w, features)
