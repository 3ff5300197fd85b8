"""Layer-CAM (Jiang et al., IEEE TIP 2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_explainer
from .base import CAMExplainer, LayerPass

__all__ = ["LayerCAM"]


@register_explainer("layercam")
class LayerCAM(CAMExplainer):
    """Layer-CAM: every location weighted by its own positive gradient.

    Jiang, Zhang, Hou, Cheng & Wei, "LayerCAM: Exploring Hierarchical Class Activation Maps for
    Localization", IEEE TIP 2021. With ``g = dS^c/dF``::

        map = ReLU( sum_k ReLU(g_k[i, j]) * F_k[i, j] )

    Unlike Grad-CAM the weights are not averaged over space, which keeps the map reliable at
    shallow layers. One forward pass and one backward pass to ``layer``. Matches pytorch-grad-cam
    ``LayerCAM`` on the same layer.
    """

    channel_weights = False  # eigen_smooth=True is refused

    def low_res(self, features: Tensor, grads: Tensor | None, lp: LayerPass) -> Tensor:
        """The (B, h, w) map of the equation in the class docstring."""
        assert grads is not None
        return torch.relu((torch.relu(grads) * features).sum(dim=1))
