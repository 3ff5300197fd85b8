"""LeGrad (Bousselham, Boggust, Chaybouti, Strobelt and Kuehne, 2024): attention-gradient maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError, InputTypeError
from ..explanation import Explanation
from ..outputs import OutputFn
from ..registry import register_explainer
from ..targets import Target
from ._attention import AttentionExplainer, Pooling, project

__all__ = ["LeGrad", "legrad_layer"]


def legrad_layer(gradient: Tensor, prefix: int) -> Tensor:
    """One block's LeGrad map: ``E^l = mean_{h,i} ReLU(∇A^l)[h, i, :]`` over the patch keys.

    Args:
        gradient: ``∇A^l = d s^l / d A^l`` (B, heads, N, N).
        prefix: prefix tokens (class, distillation, registers), dropped from the keys.

    Returns:
        (B, N - prefix): the positive gradient averaged over heads and query tokens.
    """
    return gradient.clamp(min=0).mean(dim=(1, 2))[:, prefix:]


@register_explainer("legrad")
class LeGrad(AttentionExplainer):
    """LeGrad: the positive gradient of each block's own class score w.r.t. its attention.

    For every selected block ``l`` with output tokens ``Z^l`` (B, N, D), the block's score is the
    model's head applied to them, ``s^l = head( norm( pool(Z^l) ) )_c`` (``pooling="mean"``: the
    mean over all tokens, as LeGrad's released code and torch-cam do; ``"token"``: the model's
    own pooling, the class token for torchvision / Hugging Face ViTs). Then
    ``E^l = mean_{h, i} ReLU( d s^l / d A^l )[h, i, patches]`` (:func:`legrad_layer`) and the map is
    ``E = mean_l E^l`` on the patch grid, upsampled. The paper min-max normalizes ``E`` at the
    end; xcam keeps the raw values like every explainer (``explanation.normalized()`` is the
    paper's map).

    Class targets only (the head gives class scores per block). One forward pass and one short
    backward pass per block (from ``s^l`` to ``A^l`` only).

    Args:
        model: a torchvision, timm or Hugging Face vision transformer.
        blocks: block indices (None: all, the paper's aggregation over layers).
        pooling: ``"mean"`` (default) or ``"token"`` (see above).
        projection: keyword-only; a callable ``tokens (B, N, D) -> (B, classes)`` that replaces
            the built-in ``head(norm(pool(Z)))`` (for heads xcam does not know).
        output: keyword-only; reads the class scores (see :class:`~xcam.methods.base.Explainer`).

    Example:
        >>> LeGrad(vit, blocks=[-4, -3, -2, -1])(x).maps.shape  # (B, H, W)
    """

    needs_class_targets = True  # each block is scored through the head: class scores only

    def __init__(self, model: nn.Module, blocks: Sequence[int] | None = None, pooling: Pooling = "mean",
                 *, projection: Callable[[Tensor], Tensor] | None = None,
                 output: OutputFn | None = None) -> None:
        super().__init__(model, blocks, output=output)
        if pooling not in ("mean", "token"):
            raise InputError(f"pooling must be 'mean' or 'token', got {pooling!r}")
        if projection is not None and not callable(projection):
            raise InputTypeError(
                "projection must be a callable tokens (B, N, D) -> (B, classes), got "
                f"{type(projection).__name__}"
            )
        self.pooling: Pooling = pooling
        self.projection = projection

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        out: dict[str, Any] = {"pooling": self.pooling, **super().params()}
        if self.projection is not None:
            out["projection"] = getattr(self.projection, "__name__", repr(self.projection))
        return out

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """Forward recording ``A^l`` and ``Z^l``; one gradient ``d s^l / d A^l`` per block."""
        target.require_classes(
            "LeGrad explains class targets (None, an int or one class per sample): each block's "
            "score is a class score of the model's head; for a callable score use 'chefer'"
        )
        with torch.enable_grad():
            rec, indices, scores, _ = self.forward(inputs, target, gradients=True, tokens=True)
            assert indices is not None  # class targets
            attentions = rec.all_attentions()
            prefix = self.prefix(inputs, int(attentions[0].shape[-1]))
            maps = []
            for slot, (attn, tokens) in enumerate(zip(attentions, rec.tokens, strict=True)):
                if tokens is None:
                    raise InputError(f"block {self.blocks[slot]} did not run in the forward pass")
                logits = self.projection(tokens) if self.projection is not None else \
                    project(self.layout, tokens, self.pooling)
                if logits.dim() != 2 or logits.shape[0] != tokens.shape[0]:
                    raise InputError(
                        f"the block scores have shape {tuple(logits.shape)}, not (B, classes); pass "
                        "projection= mapping tokens (B, N, D) to class scores"
                    )
                layer_scores = logits.gather(1, indices[:, None].to(logits.device))[:, 0]
                (grad,) = torch.autograd.grad(layer_scores.sum(), attn,
                                              retain_graph=slot < len(attentions) - 1)
                maps.append(legrad_layer(grad, prefix))
        rows = torch.stack(maps).mean(dim=0)
        pad = rows.new_zeros(rows.shape[0], prefix)  # finish() drops the prefix again
        return self.finish(inputs, torch.cat([pad, rows], dim=1), indices, scores)
