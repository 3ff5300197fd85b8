"""Slow references for the issue-17 metrics: one image, one pixel at a time, float64."""

from __future__ import annotations

import torch
from torch import Tensor, nn

WEIGHTS = {(-1, -1): 1 / 12, (-1, 0): 1 / 6, (-1, 1): 1 / 12, (0, -1): 1 / 6, (0, 1): 1 / 6,
           (1, -1): 1 / 12, (1, 0): 1 / 6, (1, 1): 1 / 12}


def linear_imputation(x: Tensor, removed: Tensor) -> Tensor:
    """ROAD's linear imputation (no noise) of one (C, H, W) image: a dense solve, row by row.

    Row ``i`` of the system: ``sum_j w_ij * x_j - (sum_j w_ij) * x_i = 0`` over the in-image
    neighbours ``j`` of removed pixel ``i``, known ``x_j`` moved to the right-hand side.
    """
    c, h, w = x.shape
    pixels = [(y, z) for y in range(h) for z in range(w) if bool(removed[y, z])]
    var = {p: k for k, p in enumerate(pixels)}
    a = torch.zeros(len(pixels), len(pixels), dtype=torch.float64)
    b = torch.zeros(len(pixels), c, dtype=torch.float64)
    for k, (y, z) in enumerate(pixels):
        for (dy, dz), wt in WEIGHTS.items():
            yy, zz = y + dy, z + dz
            if not (0 <= yy < h and 0 <= zz < w):
                continue
            a[k, k] -= wt
            if (yy, zz) in var:
                a[k, var[(yy, zz)]] += wt
            else:
                b[k] -= wt * x[:, yy, zz].double()
    sol = torch.linalg.solve(a, b)
    out = x.double().clone()
    for k, (y, z) in enumerate(pixels):
        out[:, y, z] = sol[k]
    return out


def road_curve(model: nn.Module, x: Tensor, cam: Tensor, cls: int, percentiles: list[float],
               most_relevant_first: bool) -> list[float]:
    """ROAD (noise 0) of one image: softmax probability of ``cls`` after each removal."""
    flat = cam.flatten().tolist()
    n = len(flat)
    order = sorted(range(n), key=lambda i: (-flat[i], i))  # descending, ties by raster index
    if not most_relevant_first:
        order = order[::-1]
    curve = []
    for p in percentiles:
        removed = torch.zeros(n, dtype=torch.bool)
        removed[order[: int(n * p / 100)]] = True
        imputed = linear_imputation(x, removed.reshape(cam.shape)).float()
        with torch.no_grad():
            curve.append(float(torch.softmax(model(imputed[None]).double(), 1)[0, cls]))
    return curve
