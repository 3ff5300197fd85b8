"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_explainer
from .base import CAMExplainer, LayerPass

__all__ = ["EigenCAM"]


@register_explainer("eigencam")
class EigenCAM(CAMExplainer):
    """Eigen-CAM: the activations projected on their first principal component.

    Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020.
    With ``A`` the (h*w, C) matrix of the activations at ``layer``, centered over the positions
    (``A - mean_ij A``), and ``v_1`` its first right singular vector::

        map = ReLU( (A - mean A) v_1 )   reshaped to (h, w)

    The sign of a singular vector is arbitrary; xcam fixes it so that ``sum_k v_1[k] >= 0``, i.e.
    the projection correlates positively with the channel sum ``sum_k F_k`` (pytorch-grad-cam keeps
    whatever sign LAPACK returns, so its map can be the complement of this one). The map does not
    depend on the class: ``targets`` only set ``scores`` and ``targets`` of the explanation. One
    forward pass, no gradients.
    """

    channel_weights = False  # eigen_smooth=True is refused

    needs_gradients = False

    def low_res(self, features: Tensor, grads: Tensor | None, lp: LayerPass) -> Tensor:
        """The (B, h, w) map of the equation in the class docstring."""
        b, c, h, w = features.shape
        a = features.reshape(b, c, h * w).transpose(1, 2)
        a = a - a.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(a, full_matrices=False)
        v = vh[:, 0, :]  # (B, C)
        sign = torch.where(v.sum(dim=1) < 0, -1.0, 1.0).to(v.dtype)
        projection = torch.einsum("bpc,bc->bp", a, v * sign[:, None])
        return torch.relu(projection).reshape(b, h, w)
