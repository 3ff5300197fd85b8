"""Input gradient (Simonyan et al., 2014), the default explainer SmoothGrad wraps."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_channels_last
from ..capture import capture
from ..errors import InputError
from ..explanation import Explanation
from ..outputs import OutputFn
from ..registry import register_explainer
from ..targets import Target
from ._perturb import (
    channels_last_for,
    disconnected_error,
    run_model,
)
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
    model: nn.Module, inputs: Tensor, target: Target, channels_last: bool = False,
    *, explicit: bool = False,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """``dS/dx`` for a batch in one forward and one backward pass, model in eval mode.

    With ``channels_last`` the batch (and so the gradient) is laid out channels-last; a model that
    cannot run so falls back to the plain layout unless ``explicit`` (see ``run_model``).

    Raises:
        GradientModeError: part of the forward runs under ``torch.no_grad()`` (a linear probe).
        DisconnectedError: the score does not depend on the input (a detached tensor).

    Returns:
        ``(indices, scores, grads)``: class per sample (``None`` for callable or unit targets), the
        detached (B,) scores and the (B, C, H, W) gradients. Uses ``torch.autograd.grad``, so no
        parameter's ``.grad`` changes.
    """
    x = inputs.detach()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    with torch.enable_grad(), capture(model, target.taps(model)) as cap:
        output = run_model(model, x, channels_last, explicit=explicit)
        indices, scores = target.evaluate(output, cap)
        grads = None
        if scores.requires_grad:
            (grads,) = torch.autograd.grad(scores.sum(), x, allow_unused=True)
    if grads is None:
        raise disconnected_error(model, inputs[:1], "the input")
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
            for float32 input on the CPU, where it is faster (see :class:`~xcam.methods.Occlusion`),
            and falls back to the plain layout for a model that cannot run in it.
        output: see :class:`~xcam.methods.Explainer`.
    """

    needs_layer = False

    def __init__(self, model: nn.Module, reduction: str = "abs_sum",
                 channels_last: bool | None = None, *, output: OutputFn | None = None) -> None:
        super().__init__(model, output=output)
        self.reduction = check_reduction(reduction)
        self.channels_last = check_channels_last(channels_last)

    def params(self) -> dict[str, Any]:
        """Hyper-parameters, recorded in every :class:`~xcam.explanation.Explanation`."""
        return {"reduction": self.reduction}

    def explain(self, inputs: Tensor, target: Target) -> Explanation:
        """``reduce_c(dS/dx_c)`` for the batch, in one forward and one backward pass."""
        indices, scores, grads = input_gradients(
            self.model, inputs, target, channels_last_for(self.channels_last, inputs, self.model),
            explicit=self.channels_last is True)
        return self.make_explanation(reduce_channels(grads, self.reduction), indices, scores)
