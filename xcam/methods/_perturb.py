"""Helpers for the explainers that run the model on many modified copies of the input (private).

Occlusion, SmoothGrad, Score-CAM and the captum adapter all score the clean input once, then score
batches that mix copies of different samples (:meth:`xcam.targets.Target.follow`). The helpers here
keep the clean pass and the diagnosis of a score that does not reach the input in one place; the
memory format of the batches (with its fallback) is :mod:`xcam._layout`'s. Argument checks live
in :mod:`xcam._checks`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .._layout import channels_last_for, layout_fallback, run_model
from ..capture import capture
from ..errors import DisconnectedError, GradientModeError
from ..targets import Target

__all__ = [
    "channels_last_for",
    "clean_pass",
    "disconnected_error",
    "layout_fallback",
    "no_grad_modules",
    "run_model",
]  # a private module: nothing here is re-exported from xcam.methods


def clean_pass(model: nn.Module, inputs: Tensor, target: Target) -> tuple[Tensor | None, Tensor, Target]:
    """One forward pass without gradients on the clean input, in eval mode.

    Returns:
        ``(indices, scores, fixed)``: the class per sample (``None`` for callable or unit targets),
        the detached (B,) scores, and the target for every modified copy (:meth:`Target.fixed`:
        the classes chosen here, so that ``targets=None`` explains the clean input's top class
        throughout).
    """
    with torch.no_grad(), capture(model, target.taps(model)) as cap:
        output = model(inputs)
        indices, scores = target.evaluate(output, cap)
    return indices, scores.detach(), target.fixed(indices)


def no_grad_modules(model: nn.Module, batch: Tensor) -> list[str]:
    """Leaf modules that run under ``torch.no_grad()`` inside ``model``'s forward (a diagnosis).

    Runs ``model(batch)`` once with gradients on; used only on the error path, to tell a linear
    probe (a backbone under ``no_grad`` inside ``forward``) from a detached tensor.
    """
    names: list[str] = []

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not torch.is_grad_enabled() and name not in names:
                names.append(name)

        return hook

    handles = [m.register_forward_pre_hook(make_hook(n)) for n, m in model.named_modules()
               if n and not any(True for _ in m.children())]
    try:
        with torch.enable_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return names


def disconnected_error(model: nn.Module, batch: Tensor, what: str) -> Exception:
    """The error for a score with no autograd path to ``what`` (``"the input"``): says why."""
    names = no_grad_modules(model, batch)
    if names:
        more = f" and {len(names) - 1} other modules" if len(names) > 1 else ""
        return GradientModeError(
            f"{names[0]!r}{more} run under torch.no_grad() inside {type(model).__name__}'s forward (a "
            f"frozen backbone, as in a linear probe), so no gradient reaches {what}; freeze the "
            "backbone with requires_grad_(False) instead of torch.no_grad(), or use a method "
            "without gradients (occlusion, scorecam)"
        )
    return DisconnectedError(
        f"the explained score does not depend on {what} through autograd: the model or a targets "
        "callable detaches a tensor (.detach(), .item(), numpy) on the way; remove it, or use a "
        "method without gradients (occlusion, scorecam)"
    )
