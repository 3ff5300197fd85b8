"""Generic attention-model explainability (Chefer, Gur and Wolf, ICCV 2021), self-attention rule."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..explanation import Explanation
from ..registry import register_explainer
from ..targets import Target
from ._attention import AttentionExplainer, query_row

__all__ = ["CheferRelevance", "chefer_relevance"]


def chefer_relevance(attentions: Sequence[Tensor], gradients: Sequence[Tensor]) -> Tensor:
    """Relevance ``R`` of (B, heads, N, N) attention probabilities and their gradients.

    Chefer et al. (ICCV 2021), Eqs. 5-6 for self-attention: ``R = I`` (N x N), then for every
    block in execution order ``Ā = E_h[ (∇A ⊙ A)^+ ]`` (the positive part per head, then the mean
    over heads) and ``R <- R + Ā R``.

    Returns:
        (B, N, N) relevance; row ``i`` is the relevance of every token for token ``i``.
    """
    relevance: Tensor | None = None
    for attn, grad in zip(attentions, gradients, strict=True):
        cam = (grad * attn).clamp(min=0).mean(dim=1)
        if relevance is None:
            n = int(attn.shape[-1])
            relevance = torch.eye(n, dtype=attn.dtype, device=attn.device).expand_as(cam)
        relevance = relevance + cam @ relevance
    if relevance is None:
        raise ValueError("chefer_relevance needs the attention of at least one block")
    return relevance


@register_explainer("chefer")
class CheferRelevance(AttentionExplainer):
    """Gradient-weighted attention relevance propagated through the blocks (Chefer et al. 2021).

    One forward pass records every block's attention probabilities ``A`` (B, heads, N, N), one
    backward pass gives ``∇A = d score / d A``; :func:`chefer_relevance` accumulates
    ``R <- R + E_h[(∇A ⊙ A)^+] R`` from ``R = I``. The map is the class token's row of ``R`` over
    the patch tokens (prefix tokens dropped), on the patch grid, upsampled (the mean row for a ViT
    without class token).

    Any target whose score has a gradient: classes, or a callable on the model output.

    Args:
        model: a torchvision, timm or Hugging Face vision transformer.
        blocks: block indices to propagate through (None: all, the paper).
        output: keyword-only; reads the class scores (see :class:`~xcam.methods.base.Explainer`).

    Example:
        >>> CheferRelevance(vit)(x, targets=281).maps.shape  # (B, H, W)
    """

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """Forward, ``d score / d A`` for every selected block, then the relevance rule."""
        with torch.enable_grad():
            rec, indices, scores, _ = self.forward(inputs, target, gradients=True)
            attentions = rec.all_attentions()
            grads = torch.autograd.grad(scores.sum(), attentions)
        relevance = chefer_relevance([a.detach() for a in attentions], grads)
        prefix = self.prefix(inputs, int(relevance.shape[-1]))
        return self.finish(inputs, query_row(relevance, prefix), indices, scores)
