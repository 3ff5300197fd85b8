"""Helpers for the explainers that run the model on many modified copies of the input (private).

Occlusion, SmoothGrad, Score-CAM and the captum adapter all resolve the targets once on the clean
input, then score batches that mix copies of different samples. The helpers here keep that logic in
one place: fixed targets that follow their samples, scoring a mixed batch, the memory format of the
batches, and argument checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ..capture import Capture, capture
from ..errors import InputError, InputTypeError
from ..layers import Tap, resolve_layer
from ..targets import Targets, UnitTarget, class_scores

__all__: list[str] = []  # private: nothing is re-exported from xcam.methods


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
    targets: Targets, output: object, cap: Capture, taps: list[Tap], n: int
) -> tuple[Tensor | None, Tensor]:
    """``(indices, scores)`` of ``targets`` on a batch of ``n`` images just run inside ``cap``."""
    if isinstance(targets, UnitTarget):
        return None, targets.score(cap[taps[0]])
    return class_scores(targets, output, n)


def follow(fixed: Targets, samples: Tensor) -> Targets:
    """Targets for a batch whose row ``r`` is a copy of sample ``samples[r]``.

    Class indices follow their samples; callables and unit targets score any batch as they are.
    """
    return fixed[samples] if isinstance(fixed, Tensor) else fixed


def clean_pass(model: nn.Module, inputs: Tensor, targets: Targets) -> tuple[Tensor | None, Tensor, Targets]:
    """One forward pass without gradients on the clean input, in eval mode.

    Returns:
        ``(indices, scores, fixed)``: the class per sample (``None`` for callable or unit targets),
        the detached (B,) scores, and the targets to use for every modified copy (the classes
        chosen here, so that ``targets=None`` explains the clean input's top class throughout).
    """
    taps = unit_taps(model, targets)
    with torch.no_grad(), capture(model, taps) as cap:
        output = model(inputs)
        indices, scores = score_batch(targets, output, cap, taps, inputs.shape[0])
    fixed: Targets = targets if indices is None else indices
    return indices, scores.detach(), fixed


def check_channels_last(value: object) -> bool | None:
    """``channels_last`` as True, False or None (automatic)."""
    if value is not None and not isinstance(value, bool):
        raise InputTypeError(f"channels_last must be True, False or None (automatic), got {value!r}")
    return value


def channels_last_for(flag: bool | None, inputs: Tensor) -> bool:
    """Whether batches run in channels-last memory format.

    Automatic (``None``): on the CPU for float32 input, where oneDNN's convolutions run 25 to 35 %
    faster on channels-last activations (ResNet-50, forward and backward) than on NCHW ones, which
    it reorders at every layer. The values differ from an NCHW run only by float rounding.
    """
    if flag is not None:
        return flag
    return inputs.device.type == "cpu" and inputs.dtype == torch.float32


def run_model(model: nn.Module, batch: Tensor, channels_last: bool) -> Any:
    """``model(batch)``, the batch laid out channels-last when asked."""
    if not channels_last:
        return model(batch)
    try:
        return model(batch.contiguous(memory_format=torch.channels_last))
    except RuntimeError as err:
        if "view size is not compatible" not in str(err):
            raise
        raise InputError(
            f"{type(model).__name__} calls .view() on a feature map, which fails on the channels-last "
            "batches xcam runs on the CPU for speed; pass channels_last=False to the explainer "
            "(or use .reshape() in the model)"
        ) from err


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode inside the block, restoring every module's ``training`` flag."""
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for module, flag in flags.items():
            module.training = flag
