"""The memory format of the batches that run through a model many times (private).

Perturbation methods (occlusion, RISE, Score-CAM, Ablation-CAM, SmoothGrad) and the metrics'
perturbed passes (deletion, insertion, average drop, ROAD, ...) run the model on many modified
copies of the input. On the CPU, oneDNN runs convolutions faster on channels-last activations, so
those batches are laid out channels-last there, with a fallback to the plain layout for a model
that cannot run so (``.view()`` on a feature map), remembered per model. The values differ from a
plain-layout run only by float rounding.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from .errors import InputError, XcamError, warn

__all__ = ["channels_last_for", "layout_fallback", "run_model"]

T = TypeVar("T")

# Models that failed in channels-last layout and ran in the plain one: later calls skip the try.
_PLAIN_LAYOUT: weakref.WeakSet[nn.Module] = weakref.WeakSet()


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
        "map); xcam runs it in the plain layout from now on, in explainers and metrics alike (an "
        "explainer's channels_last=False skips the try; .reshape() in the model lets it run "
        "channels-last)"
    )
    return result


def run_model(model: nn.Module, batch: Tensor, channels_last: bool, *, explicit: bool = False) -> Any:
    """``model(batch)``, the batch laid out channels-last when asked (see :func:`layout_fallback`)."""

    def run(cl: bool) -> Any:
        return model(batch.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format))

    return layout_fallback(model, run, channels_last, explicit)
