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


def drise(detector: nn.Module, x: Tensor, box: Tensor, label: int, masks: Tensor) -> Tensor:
    """D-RISE (Petsiuk et al., CVPR 2021) one mask at a time: ``1/N sum_i w_i M_i``; (H, W) float64.

    ``w_i = max_j IoU(box, box_j) * score_j * [label_j == label]`` over the detections of
    ``x * M_i`` (a torchvision detector: a label and a score per detection).
    """
    total = torch.zeros(x.shape[-2:], dtype=torch.float64)
    with torch.no_grad():
        for mask in masks:
            det = detector([x * mask.to(x.dtype)])[0]
            best = 0.0
            for b, s, lab in zip(det["boxes"].double(), det["scores"].double(), det["labels"].tolist()):
                ix = (min(box[2], b[2]) - max(box[0], b[0])).clamp(min=0)
                iy = (min(box[3], b[3]) - max(box[1], b[1])).clamp(min=0)
                inter = float(ix * iy)
                union = float((box[2] - box[0]) * (box[3] - box[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
                if lab == label:
                    best = max(best, inter / union * float(s))
            total += best * mask.double()
    return total / masks.shape[0]
