"""HiResCAM (Draelos & Carin, 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_explainer
from .base import CAMExplainer, LayerPass

__all__ = ["HiResCAM"]


@register_explainer("hirescam")
class HiResCAM(CAMExplainer):
    """HiResCAM: the element-wise product of gradients and activations, summed over channels.

    Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
    neural networks", arXiv 2011.08891, 2020. With ``g = dS^c/dF``::

        map = ReLU( sum_k g_k[i, j] * F_k[i, j] )

    Grad-CAM averages ``g`` over space first; HiResCAM does not, so on a head global average
    pool -> Linear, the map before the ReLU sums to the class logit minus its bias. One forward
    and one backward pass to ``layer``. Matches pytorch-grad-cam ``HiResCAM`` on the same layer.
    """

    channel_weights = False  # eigen_smooth=True is refused

    def low_res(self, features: Tensor, grads: Tensor | None, lp: LayerPass) -> Tensor:
        """The (B, h, w) map of the equation in the class docstring."""
        assert grads is not None
        return torch.relu((grads * features).sum(dim=1))
