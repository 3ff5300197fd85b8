"""Attention rollout (Abnar and Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from .._checks import check_number
from ..errors import InputError
from ..explanation import Explanation
from ..outputs import OutputFn
from ..registry import register_explainer
from ..targets import Target
from ._attention import AttentionExplainer, ViTModel, query_row

__all__ = ["AttentionRollout", "ViTModel", "rollout"]

HeadFusion = Literal["mean", "max", "min"]


def rollout(attentions: Sequence[Tensor], head_fusion: HeadFusion = "mean",
            discard_ratio: float = 0.0) -> Tensor:
    """Rolled-out attention ``R = Â_L ... Â_1`` of (B, heads, N, N) attention probabilities.

    Per block, the heads are fused (mean, max or min over heads, ``F``); with ``discard_ratio``
    ``r > 0`` the ``floor(r N^2)`` smallest entries of ``F`` are set to 0, the first token's
    attention to itself excepted; the residual connection is added and rows renormalized,
    ``Â = (F + I) / rowsum(F + I)`` (Abnar and Zuidema's ``0.5 W_att + 0.5 I`` when rows of ``F``
    sum to 1), and the blocks are multiplied in order (Eq. of Sec. 3: ``Ã(l_i) = Â(l_i) Ã(l_{i-1})``).

    Returns:
        (B, N, N): row ``i`` is how much token ``i`` of the last block draws from each input token.
    """
    result: Tensor | None = None
    for attn in attentions:
        fused = attn.mean(dim=1) if head_fusion == "mean" else \
            attn.amax(dim=1) if head_fusion == "max" else attn.amin(dim=1)
        b, n, _ = fused.shape
        k = int(discard_ratio * n * n)
        if k > 0:
            flat = fused.reshape(b, n * n)
            keyed = flat.clone()
            keyed[:, 0] = torch.inf  # never discard the first token's attention to itself
            drop = keyed.topk(min(k, n * n - 1), dim=1, largest=False).indices
            fused = flat.scatter(1, drop, 0.0).reshape(b, n, n)
        a = fused + torch.eye(n, dtype=fused.dtype, device=fused.device)
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    if result is None:
        raise InputError("rollout needs the attention of at least one block")
    return result


@register_explainer("rollout")
class AttentionRollout(AttentionExplainer):
    """Attention rollout: how much the class token draws from each patch through the blocks.

    ``R = Â_L ... Â_1`` with ``Â_l = (F_l + I) / rowsum`` and ``F_l`` the heads of block ``l``
    fused by ``head_fusion`` (see :func:`rollout`); the map is the class token's row of ``R`` over
    the patch tokens (prefix tokens dropped), on the patch grid, upsampled. A ViT without a class
    token (global average pooling) uses the mean of all rows.

    The map is class-agnostic: ``targets`` only chooses the reported ``targets`` and ``scores``.
    One forward pass, no gradients. The attention probabilities are computed even where the model
    uses fused attention kernels (see :mod:`xcam.methods._attention`).

    Args:
        model: a torchvision, timm or Hugging Face vision transformer (:class:`ViTModel`).
        head_fusion: ``"mean"`` (the paper), ``"max"`` or ``"min"`` over heads.
        discard_ratio: fraction in [0, 1) of the smallest fused attention entries set to 0 per
            block (jacobgil/vit-explain's option; 0 is the paper).
        blocks: block indices to roll out (None: all, the paper).
        output: keyword-only; reads the class scores (see :class:`~xcam.methods.base.Explainer`).

    Example:
        >>> AttentionRollout(vit, head_fusion="max", discard_ratio=0.9)(x).maps.shape  # (B, H, W)
    """

    needs_gradients: ClassVar[bool] = False

    def __init__(self, model: nn.Module, head_fusion: HeadFusion = "mean", discard_ratio: float = 0.0,
                 blocks: Sequence[int] | None = None, *, output: OutputFn | None = None) -> None:
        super().__init__(model, blocks, output=output)
        if head_fusion not in ("mean", "max", "min"):
            raise InputError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")
        ratio = check_number("discard_ratio", discard_ratio, 0.0)
        if ratio >= 1.0:
            raise InputError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}")
        self.head_fusion: HeadFusion = head_fusion
        self.discard_ratio = ratio

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {"head_fusion": self.head_fusion, "discard_ratio": self.discard_ratio,
                **super().params()}

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """One pass recording ``A``; the class token's row of the rollout over the patches."""
        rec, indices, scores, _ = self.forward(inputs, target, gradients=False)
        attentions = rec.all_attentions()
        rolled = rollout(attentions, self.head_fusion, self.discard_ratio)
        prefix = self.prefix(inputs, int(rolled.shape[-1]))
        return self.finish(inputs, query_row(rolled, prefix), indices, scores)
