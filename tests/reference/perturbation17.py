"""Slow references for RISE, D-RISE, Poly-CAM and Opti-CAM (issue 17): one mask / one layer at a time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rise_mask(grid: Tensor, shift: tuple[int, int], size: tuple[int, int], cell: tuple[int, int]) -> Tensor:
    """One RISE mask (paper, section 3.2): upsample the (gh, gw) grid to (gh+1, gw+1) cells, crop."""
    gh, gw = grid.shape
    up = F.interpolate(grid[None, None].double(), size=((gh + 1) * cell[0], (gw + 1) * cell[1]),
                       mode="bilinear", align_corners=False)[0, 0]
    dy, dx = shift
    return up[dy:dy + size[0], dx:dx + size[1]]


def rise(model: nn.Module, x: Tensor, cls: int, masks: Tensor, p: float) -> Tensor:
    """Eq. 6 of Petsiuk et al.: ``1 / (N p) sum_i softmax(f(x * M_i))[cls] M_i``; (H, W) float64."""
    total = torch.zeros(x.shape[-2:], dtype=torch.float64)
    with torch.no_grad():
        for mask in masks:
            prob = torch.softmax(model((x * mask.to(x.dtype))[None]).double(), dim=1)[0, cls]
            total += float(prob) * mask.double()
    return total / (masks.shape[0] * p)
