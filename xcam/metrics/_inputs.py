"""Checks of what metrics take: (B, H, W) maps, inputs with their maps, models, ``output=``.

The generic checks (ints, numbers, seeds, input batches) live in :mod:`xcam._checks`; these are the
ones only metrics need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_inputs, check_int
from ..errors import InputError, InputTypeError
from ..outputs import OutputFn

__all__ = [
    "check_maps",
    "check_inputs_and_maps",
    "check_model",
    "check_output_fn",
    "check_batch_size",
]


def check_maps(maps: object, name: str = "maps") -> Tensor:
    """A finite floating-point (B, H, W) tensor; B = 1 stays 3-D."""
    if not isinstance(maps, Tensor):
        raise InputTypeError(
            f"{name} must be a torch.Tensor of shape (B, H, W), got {type(maps).__name__}; "
            "pass explanation.maps"
        )
    if not maps.dtype.is_floating_point:
        raise InputTypeError(
            f"{name} must be a floating-point tensor, got dtype {maps.dtype}; use {name}.float()"
        )
    if maps.dim() != 3:
        fix = f"; add the batch dimension with {name}[None]" if maps.dim() == 2 else ""
        raise InputError(f"{name} must have shape (B, H, W), got {tuple(maps.shape)}{fix}")
    if maps.shape[0] == 0 or maps.shape[1] == 0 or maps.shape[2] == 0:
        raise InputError(f"{name} is empty (shape {tuple(maps.shape)})")
    if not bool(torch.isfinite(maps).all()):
        n_bad = int((~torch.isfinite(maps)).sum())
        raise InputError(
            f"{name} contains {n_bad} NaN or infinite values; maps must be finite "
            "(torch.nan_to_num(maps) if that is what you mean)"
        )
    return maps


def check_inputs_and_maps(inputs: object, maps: object,
                          model: object = None) -> tuple[Tensor, Tensor]:
    """Validate a (B, C, H, W) batch and its (B, H, W) maps; maps move to the inputs' device.

    With an ``nn.Module`` ``model``, the inputs are also checked against it (device, dtype with
    lossless casts up, channel count: :func:`xcam._checks.check_inputs`).
    """
    x = check_inputs(inputs, model=model if isinstance(model, nn.Module) else None)
    m = check_maps(maps)
    if m.shape[0] != x.shape[0]:
        raise InputError(
            f"maps has {m.shape[0]} samples but inputs has {x.shape[0]}; pass one map per image"
        )
    if tuple(m.shape[1:]) != tuple(x.shape[2:]):
        raise InputError(
            f"maps must be at input resolution {tuple(x.shape[2:])}, got {tuple(m.shape[1:])}; "
            "use xcam.upsample(maps, inputs.shape[-2:])"
        )
    return x, m.to(device=x.device, dtype=torch.float32)


def check_model(model: object) -> Callable[[Tensor], Any]:
    """A callable model.

    An ``nn.Module`` is run in eval mode by :class:`Metric` (its flags are
    restored afterwards), so a model left in training mode gives the same scores as in eval mode.
    """
    if not callable(model):
        raise InputTypeError(
            f"model must be a torch.nn.Module or a callable returning (B, classes) scores, "
            f"got {type(model).__name__}"
        )
    return model


def check_output_fn(output: object) -> OutputFn | None:
    """``output=``: None (the rules of :mod:`xcam.outputs`) or a callable that replaces them."""
    if output is not None and not callable(output):
        raise InputTypeError(
            f"output must be None or a callable f(model_output) -> (B, classes) tensor, got "
            f"{type(output).__name__}; e.g. output=lambda out: out['logits']"
        )
    return output


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` as an int >= 1."""
    return check_int("batch_size", batch_size, 1)
