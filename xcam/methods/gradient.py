"""Input gradient (Simonyan et al., 2014), the default explainer SmoothGrad wraps."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..capture import capture
from ..errors import GradientModeError, InputError
from ..explanation import Explanation
from ..registry import register_explainer
from ..targets import Targets
from ._perturb import channels_last_for, check_channels_last, run_model, score_batch, unit_taps
from .base import Explainer

__all__ = ["InputGradient", "reduce_channels"]

REDUCTIONS = ("abs_sum", "abs_max", "sum")


def check_reduction(reduction: object) -> str:
    """Validate a channel reduction name."""
    if reduction not in REDUCTIONS:
        raise InputError(
            f"reduction must be one of {REDUCTIONS} (how the channels of an input gradient become "
            f"one map), got {reduction!r}"
        )
    return str(reduction)


def reduce_channels(values: Tensor, reduction: str) -> Tensor:
    """(B, C, H, W) -> (B, H, W): ``abs().sum(1)``, ``abs().amax(1)`` or ``sum(1)``."""
    if reduction == "abs_sum":
        return values.abs().sum(dim=1)
    if reduction == "abs_max":
        return values.abs().amax(dim=1)
    if reduction == "sum":
        return values.sum(dim=1)
    raise InputError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def input_gradients(
    model: nn.Module, inputs: Tensor, targets: Targets, channels_last: bool = False
) -> tuple[Tensor | None, Tensor, Tensor]:
    """``dS/dx`` for a batch in one forward and one backward pass, model in eval mode.

    With ``channels_last`` the batch (and so the gradient) is laid out channels-last.

    Returns:
        ``(indices, scores, grads)``: class per sample (``None`` for callable or unit targets), the
        detached (B,) scores and the (B, C, H, W) gradients. Uses ``torch.autograd.grad``, so no
        parameter's ``.grad`` changes.
    """
    taps = unit_taps(model, targets)
    x = inputs.detach()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    with torch.enable_grad(), capture(model, taps) as cap:
        output = run_model(model, x, channels_last)
        indices, scores = score_batch(targets, output, cap, taps, x.shape[0])
        if not scores.requires_grad:
            raise GradientModeError(
                "targets: the explained score does not depend on the input through autograd; "
                "check that the model and the targets callable do not detach their tensors"
            )
        (grads,) = torch.autograd.grad(scores.sum(), x)
    return indices, scores.detach(), grads


@register_explainer("gradient")
class InputGradient(Explainer):
    """Input gradient (vanilla saliency): the derivative of the score with respect to each pixel.

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", ICLR workshop 2014.
    ``map = reduce_c( dS^c / dx_c )`` with ``reduce`` = ``abs().sum(channel)`` (default),
    ``abs().max(channel)`` or a plain channel ``sum``. One forward and one backward pass to the
    input; no layer.

    Args:
        model: any differentiable model.
        reduction: ``"abs_sum"`` (default), ``"abs_max"`` or ``"sum"``.
        channels_last: run the batch in channels-last memory format; ``None`` (default) does so
            for float32 input on the CPU, where it is faster (see :class:`~xcam.methods.Occlusion`).
    """

    needs_layer = False

    def __init__(self, model: nn.Module, reduction: str = "abs_sum",
                 channels_last: bool | None = None) -> None:
        super().__init__(model)
        self.reduction = check_reduction(reduction)
        self.channels_last = check_channels_last(channels_last)

    def params(self) -> dict[str, Any]:
        return {"reduction": self.reduction}

    def explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        indices, scores, grads = input_gradients(self.model, inputs, targets,
                                                 channels_last_for(self.channels_last, inputs))
        return Explanation(
            maps=reduce_channels(grads, self.reduction).float(),
            low_res=None,
            targets=indices,
            scores=scores,
            layer=None,
            method=self.name,
            params=self.params(),
        )
