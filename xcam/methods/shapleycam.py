"""ShapleyCAM (Cai et al., 2025)."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ..capture import capture
from ..explanation import Explanation
from ..layers import to_nchw
from ..registry import register_explainer
from ..targets import Target
from .base import CAMExplainer, LayerPass, check_unit_order

__all__ = ["ShapleyCAM"]


def _math_attention() -> contextlib.AbstractContextManager[object]:
    """Scaled-dot-product attention by its math kernel: the fused ones have no double backward."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: the math kernel is the fallback anyway
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


@register_explainer("shapleycam")
class ShapleyCAM(CAMExplainer):
    """ShapleyCAM: channel weights from the gradient and a Hessian-vector product.

    Cai, Zhang, Wang & Huang, "CAMs as Shapley Value-based Explainers", 2025 (arXiv 2501.06261),
    the second-order Taylor approximation of the Shapley value of each feature map. With
    ``g = dS/dF`` and ``H = d^2 S / dF^2`` at the explained layer (one sample: cross-sample terms
    vanish in eval mode)::

        w_k = mean_ij ( g_k - 1/2 (H F)_k )[i, j]
        map = ReLU( sum_k w_k F_k )

    One forward pass, one backward pass with ``create_graph=True`` and one more backward pass for
    the Hessian-vector product ``H F`` (double backward), as pytorch-grad-cam's ``ShapleyCAM``
    computes it; the maps agree with it to float rounding on the same layer and target.

    Where the score is piecewise linear in the layer (ReLU / max-pool / linear layers between the
    layer and a class logit), ``H F = 0`` almost everywhere and ShapleyCAM equals Grad-CAM; the
    paper pairs it with a smooth score, such as a softmax probability (a callable target,
    ``targets=lambda out: out.softmax(1)[:, c]``) or a network with smooth activations (GELU,
    SiLU) after the layer.

    Args:
        model, layer, channels: as for :class:`~xcam.methods.GradCAM`.
        output: see :class:`~xcam.methods.Explainer`.

    Example:
        >>> explanation = ShapleyCAM(model, layer="layer4")(x, targets=lambda out: out.softmax(1)[:, 281])
    """

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """Gradient and Hessian-vector product at the layer (see the class docstring)."""
        tap = self.tap(inputs)
        unit_taps = target.taps(self.model)
        size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
        # attention (ViT, CLIP) runs by its math kernel: the Hessian-vector product needs it
        with torch.enable_grad(), _math_attention(), capture(self.model, [tap, *unit_taps]) as cap:
            output = self.model(inputs)
            check_unit_order(cap, [tap], unit_taps)
            indices, scores = target.evaluate(output, cap, size=size)
            raw = cap[tap]
            grads = cap.gradients(scores, tap, retain_graph=True, create_graph=True)[tap.label]
            if grads.requires_grad:
                (hvp,) = torch.autograd.grad(grads, raw, grad_outputs=raw.detach(), allow_unused=True)
            else:  # the gradient does not depend on the layer: H = 0
                hvp = None
        grads = grads.detach()
        hvp = torch.zeros_like(grads) if hvp is None else hvp.detach()
        features = self.select(to_nchw(raw.detach(), size, tap))
        g = self.select(to_nchw(grads, size, tap))
        hf = self.select(to_nchw(hvp, size, tap))
        weights = (g - 0.5 * hf).mean(dim=(2, 3))
        lp = LayerPass(features, g, indices, scores.detach())
        return self.finish(inputs, self.combine(weights, features), lp)
