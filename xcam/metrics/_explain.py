"""Driving an explainer from a metric: its maps, the classes it explained, its cost.

Metrics take the explainer as an argument (any ``f(inputs, targets)`` returning an
:class:`~xcam.explanation.Explanation` or (B, H, W) maps); they never import ``xcam.methods``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..errors import InputTypeError, TargetError
from ..explanation import Explanation
from ..targets import parse_indices

__all__ = ["explainer_images", "explanation_maps", "explained_targets"]


def explainer_images(explainer: object, n_images: int) -> int:
    """Images an explainer runs for ``n_images`` inputs.

    Its ``forward_passes`` when it states
    them (every xcam explainer does), else one each.
    """
    count = getattr(explainer, "forward_passes", None)
    return int(count(n_images)) if callable(count) else n_images


def explanation_maps(explainer: Callable[..., Any], inputs: Tensor, targets: object) -> Tensor:
    """Call an explainer (or any ``f(inputs, targets)``) and return its (B, H, W) maps."""
    with torch.enable_grad():
        result = explainer(inputs, targets)
    maps = result.maps if isinstance(result, Explanation) else result
    if not isinstance(maps, Tensor) or maps.dim() != 3 or maps.shape[0] != inputs.shape[0]:
        got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise InputTypeError(
            f"explainer must return an Explanation or a (B, H, W) map tensor for B = "
            f"{inputs.shape[0]} inputs, got {got}"
        )
    return maps.detach().float()


def explained_targets(explainer: Callable[..., Any], inputs: Tensor,
                      targets: object) -> tuple[Tensor, Tensor]:
    """``(maps, indices)``: the explanation on ``inputs`` and the class index it explained."""
    indices = parse_indices(targets, inputs.shape[0], inputs.device)
    if indices is not None:
        return explanation_maps(explainer, inputs, indices), indices
    with torch.enable_grad():
        result = explainer(inputs, None)
    if not isinstance(result, Explanation) or result.targets is None:
        raise TargetError(
            "targets=None needs an explainer that returns an Explanation with class targets; "
            "pass the class indices explicitly"
        )
    return explanation_maps(lambda _x, _t: result, inputs, None), result.targets.to(inputs.device)
