"""Stability of maps across models (LFI-CAM paper, Lee et al., ICCV 2021).

For each image, the maps of several models (e.g. trained with different hyper-parameters) are
min-max normalized per sample, thresholded at ``100/255``, and compared pairwise by IoU over the
whole map; the score is the mean IoU over the model pairs. The authors average IoU per image *row*,
which inflates the scores; this is the standard per-image IoU (see the pinned definitions).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
from torch import Tensor

from ..errors import InputError, InputTypeError
from ..postprocess import normalize
from .base import metric

__all__ = ["stability", "thresholded_iou", "THRESHOLD"]

THRESHOLD = 100 / 255
"""The LFI-CAM paper's threshold on min-max maps (100 on a 0-255 scale)."""


def binary_regions(maps: Tensor, threshold: float) -> Tensor:
    """(B, H*W) regions ``minmax(maps) > threshold``."""
    return (normalize(maps.float()) > threshold).flatten(1)


def region_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of (B, P) boolean regions; NaN where both are empty."""
    inter = (a & b).sum(1).float()
    union = (a | b).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan")))


def thresholded_iou(maps_a: Tensor, maps_b: Tensor, threshold: float = THRESHOLD) -> Tensor:
    """IoU of ``minmax(maps_a) > threshold`` and ``minmax(maps_b) > threshold``, per sample.

    Args:
        maps_a: (B, H, W) maps.
        maps_b: (B, H, W) maps of the same shape.
        threshold: on the min-max map in [0, 1]; a pixel is in the region when strictly above it
            (as ``cv2.threshold(..., THRESH_BINARY)``, which the authors used on 0-255 maps).

    Returns:
        (B,) IoU in [0, 1]; NaN where both regions are empty (a constant map min-maxes to 0, so
        its region is empty).
    """
    if maps_a.dim() != 3 or maps_a.shape != maps_b.shape:
        raise InputError(
            f"maps_a and maps_b must be (B, H, W) of the same shape, got {tuple(maps_a.shape)} and "
            f"{tuple(maps_b.shape)}"
        )
    return region_iou(binary_regions(maps_a, threshold), binary_regions(maps_b, threshold))


@metric("stability", higher_is_better=True, family="stability", label="Stability (IoU)",
        multi_model=True)
def stability(maps: Sequence[Tensor] | Tensor, threshold: float = THRESHOLD) -> Tensor:
    """Mean pairwise IoU of several models' thresholded maps of the same images.

    ``score_i = mean over model pairs (m, n) of IoU( minmax(map_m,i) > t, minmax(map_n,i) > t )``
    with ``t = 100/255``, over the whole map. Pairs whose regions are both empty (undefined IoU)
    are left out of the mean; an image with no defined pair scores NaN. Higher is better.

    Args:
        maps: one (B, H, W) tensor per model (a sequence, or a (M, B, H, W) tensor), M >= 2,
            the same images in the same order.
        threshold: on min-max maps in [0, 1] (default 100/255, the paper's).

    Returns:
        (B,) float32 scores in [0, 1]; aggregate with ``nanmean`` for the paper's number.

    Example:
        >>> scores = stability([LFICAM(net)(x).maps for net in nets])  # (B,)
    """
    if isinstance(maps, Tensor):
        if maps.dim() != 4:
            raise InputError(
                f"maps as a tensor must be (models, B, H, W), got shape {tuple(maps.shape)}; or pass "
                "a list with one (B, H, W) tensor per model"
            )
        items = list(maps.unbind(0))
    elif isinstance(maps, Sequence) and not isinstance(maps, (str, bytes)):
        items = list(maps)
    else:
        raise InputTypeError(
            f"maps must be a sequence of (B, H, W) tensors, one per model, got {type(maps).__name__}"
        )
    if len(items) < 2:
        raise InputError(f"stability compares models: pass maps of at least 2 models, got {len(items)}")
    for i, m in enumerate(items):
        if not isinstance(m, Tensor):
            raise InputTypeError(f"maps[{i}] must be a tensor, got {type(m).__name__}")
        if m.dim() != 3 or m.shape != items[0].shape:
            raise InputError(
                f"maps[{i}] has shape {tuple(m.shape)}; every model's maps must be (B, H, W) with "
                f"the shape of maps[0], {tuple(items[0].shape)}"
            )
    if not 0 <= threshold < 1:
        raise InputError(f"threshold must be in [0, 1) on min-max maps, got {threshold}")
    binary = [binary_regions(m, threshold) for m in items]
    ious = torch.stack([region_iou(a, b) for a, b in combinations(binary, 2)])
    return ious.nanmean(dim=0)
