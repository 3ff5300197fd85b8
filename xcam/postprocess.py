"""Upsampling and normalization of maps; never in place."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputError

__all__ = ["upsample", "normalize"]


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling (align_corners=False) of (B, h, w) maps to (B, *size)."""
    if maps.dim() != 3:
        raise InputError(f"maps must be (B, h, w), got shape {tuple(maps.shape)}")
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps.clone()
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def normalize(maps: Tensor) -> Tensor:
    """Per-sample min-max over space: ``(m - min) / (max - min)``; a constant map becomes 0.

    Args:
        maps: (B, H, W) or (H, W).

    Returns:
        A new tensor of the same shape with values in [0, 1].
    """
    if maps.dim() not in (2, 3):
        raise InputError(f"maps must be (B, H, W) or (H, W), got shape {tuple(maps.shape)}")
    flat = maps.reshape(maps.shape[0], -1) if maps.dim() == 3 else maps.reshape(1, -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                      torch.zeros_like(flat))
    return out.reshape(maps.shape)
