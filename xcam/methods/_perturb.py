"""Helpers for the explainers that run the model on many modified copies of the input (private).

Occlusion, SmoothGrad, Score-CAM and the captum adapter all score the clean input once, then score
batches that mix copies of different samples (:meth:`xcam.targets.Target.follow`). The helpers here
keep the clean pass, the memory format of the batches (with its fallback) and the diagnosis of a
score that does not reach the input in one place. Argument checks live in :mod:`xcam._checks`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from ..capture import capture
from ..errors import (
    DisconnectedError,
    GradientModeError,
    InputError,
    XcamError,
    warn,
)
from ..targets import Target

__all__ = [
    "channels_last_for",
    "clean_pass",
    "disconnected_error",
    "layout_fallback",
    "no_grad_modules",
    "run_model",
]  # a private module: nothing here is re-exported from xcam.methods

T = TypeVar("T")

# Models that failed in channels-last layout and ran in the plain one: later calls skip the try.
_PLAIN_LAYOUT: weakref.WeakSet[nn.Module] = weakref.WeakSet()


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


def channels_last_for(flag: bool | None, inputs: Tensor, model: nn.Module | None = None) -> bool:
    """Whether batches run in channels-last memory format.

    Automatic (``None``): on the CPU for float32 input, where oneDNN's convolutions run 25 to 35 %
    faster on channels-last activations (ResNet-50, forward and backward) than on NCHW ones, which
    it reorders at every layer. The values differ from an NCHW run only by float rounding. A model
    that once failed in channels-last layout (:func:`run_model`) runs in the plain layout.
    """
    if flag is not None:
        return flag
    if model is not None and model in _PLAIN_LAYOUT:
        return False
    return inputs.device.type == "cpu" and inputs.dtype == torch.float32


def _memory_error(err: BaseException) -> bool:
    text = str(err).lower()
    return "out of memory" in text or "can't allocate" in text or "cannot allocate" in text


def layout_fallback(model: nn.Module, run: Callable[[bool], T], channels_last: bool,
                    explicit: bool = False) -> T:
    """``run(channels_last)``, falling back to ``run(False)`` where the model cannot run channels-last.

    With the automatic layout (``explicit=False``) a model that fails in channels-last layout
    (``.view()`` on a feature map: the PyTorch CIFAR-10 tutorial net) runs again in the plain
    layout, with a warning, and is remembered so that later calls go straight to the plain
    layout. If the plain layout fails too, its error is raised. With ``channels_last=True`` passed
    by the user (``explicit=True``) the failure is an :class:`~xcam.errors.InputError`.
    """
    if not channels_last or (not explicit and model in _PLAIN_LAYOUT):
        return run(False)
    try:
        return run(True)
    except RuntimeError as err:
        if isinstance(err, XcamError) or _memory_error(err):
            raise
        if explicit:
            raise InputError(
                f"channels_last=True: {type(model).__name__} fails on channels-last batches "
                f"({str(err).splitlines()[0][:160]}); a model that calls .view() on a feature map "
                "cannot run in that layout: pass channels_last=None (automatic) or False, or use "
                ".reshape() in the model"
            ) from err
    result = run(False)  # raises the plain layout's own error if it fails too
    _PLAIN_LAYOUT.add(model)
    warn(
        f"{type(model).__name__} cannot run on channels-last batches (e.g. .view() on a feature "
        "map); xcam runs it in the plain layout from now on (pass channels_last=False to skip the "
        "try)"
    )
    return result


def run_model(model: nn.Module, batch: Tensor, channels_last: bool, *, explicit: bool = False) -> Any:
    """``model(batch)``, the batch laid out channels-last when asked (see :func:`layout_fallback`)."""

    def run(cl: bool) -> Any:
        return model(batch.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format))

    return layout_fallback(model, run, channels_last, explicit)


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
