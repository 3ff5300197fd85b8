"""Helpers for the explainers that run the model on many modified copies of the input (private).

Occlusion, SmoothGrad, Score-CAM and the captum adapter all resolve the targets once on the clean
input, then score batches that mix copies of different samples. The helpers here keep that logic in
one place: fixed targets that follow their samples, scoring a mixed batch, the memory format of the
batches, and argument checks.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from ..capture import Capture, capture
from ..errors import (
    DisconnectedError,
    GradientModeError,
    InputError,
    InputTypeError,
    XcamError,
    warn,
)
from ..layers import Tap, resolve_layer
from ..outputs import OutputFn
from ..targets import Targets, UnitTarget, class_scores

__all__: list[str] = []  # private: nothing is re-exported from xcam.methods

T = TypeVar("T")

# Models that failed in channels-last layout and ran in the plain one: later calls skip the try.
_PLAIN_LAYOUT: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1, or an error naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputTypeError(f"{name} must be an int >= 1, got {type(value).__name__} ({value!r})")
    if value < 1:
        raise InputError(f"{name} must be >= 1, got {value}")
    return value


def check_noise_level(value: object) -> float:
    """``noise_level`` as a float >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InputError(
            f"noise_level must be a number >= 0 (a fraction of the input's value range), "
            f"got {value!r}"
        )
    return float(value)


def check_seed(value: object) -> int | None:
    """``seed`` as an int or None."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InputTypeError(f"seed must be an int or None, got {type(value).__name__} ({value!r})")
    return value


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``; ``None`` draws a seed from torch's global RNG."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return torch.Generator(device=device).manual_seed(seed)


def unit_taps(model: nn.Module, targets: Targets) -> list[Tap]:
    """The tap a unit target reads (one element), or an empty list for class targets."""
    if isinstance(targets, UnitTarget):
        return [resolve_layer(model, targets.layer)]  # type: ignore[arg-type]
    return []


def score_batch(
    targets: Targets, output: object, cap: Capture, taps: list[Tap], n: int,
    output_fn: OutputFn | None = None,
) -> tuple[Tensor | None, Tensor]:
    """``(indices, scores)`` of ``targets`` on a batch of ``n`` images just run inside ``cap``."""
    if isinstance(targets, UnitTarget):
        return None, targets.score(cap[taps[0]])
    return class_scores(targets, output, n, output_fn)


def follow(fixed: Targets, samples: Tensor) -> Targets:
    """Targets for a batch whose row ``r`` is a copy of sample ``samples[r]``.

    Class indices follow their samples; callables and unit targets score any batch as they are.
    """
    return fixed[samples] if isinstance(fixed, Tensor) else fixed


def clean_pass(
    model: nn.Module, inputs: Tensor, targets: Targets, output_fn: OutputFn | None = None
) -> tuple[Tensor | None, Tensor, Targets]:
    """One forward pass without gradients on the clean input, in eval mode.

    ``output_fn`` is the explainer's ``output=`` (see :mod:`xcam.outputs`).

    Returns:
        ``(indices, scores, fixed)``: the class per sample (``None`` for callable or unit targets),
        the detached (B,) scores, and the targets to use for every modified copy (the classes
        chosen here, so that ``targets=None`` explains the clean input's top class throughout).
    """
    taps = unit_taps(model, targets)
    with torch.no_grad(), capture(model, taps) as cap:
        output = model(inputs)
        indices, scores = score_batch(targets, output, cap, taps, inputs.shape[0], output_fn)
    fixed: Targets = targets if indices is None else indices
    return indices, scores.detach(), fixed


def check_channels_last(value: object) -> bool | None:
    """``channels_last`` as True, False or None (automatic)."""
    if value is not None and not isinstance(value, bool):
        raise InputTypeError(f"channels_last must be True, False or None (automatic), got {value!r}")
    return value


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
        def hook(module: nn.Module, args: tuple) -> None:
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
