"""Orders, ranks, correlations and SSIM of maps, batched per sample (no numpy)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..postprocess import normalize

__all__ = [
    "descending_order",
    "descending_rank",
    "average_ranks",
    "pearson",
    "spearman",
    "ssim",
]


def descending_order(maps: Tensor) -> Tensor:
    """(B, N) pixel indices sorted by map value, descending; ties by raster index (stable)."""
    flat = maps.reshape(maps.shape[0], -1)
    return torch.sort(flat, dim=1, descending=True, stable=True).indices


def descending_rank(maps: Tensor) -> Tensor:
    """(B, H, W) position of each pixel in :func:`descending_order` (0 = most relevant)."""
    order = descending_order(maps)
    rank = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank.scatter_(1, order, positions)
    return rank.reshape(maps.shape)


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..N along the last dimension of (B, N), ties sharing their average rank."""
    b, n = values.shape
    sorted_vals, order = torch.sort(values, dim=1, stable=True)
    new_group = torch.ones_like(sorted_vals, dtype=torch.bool)
    new_group[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    group = torch.cumsum(new_group.long(), dim=1) - 1  # (B, N) group id per sorted position
    positions = torch.arange(1, n + 1, dtype=torch.float64, device=values.device).expand(b, n)
    sums = torch.zeros(b, n, dtype=torch.float64, device=values.device).scatter_add_(
        1, group, positions)
    counts = torch.zeros(b, n, dtype=torch.float64, device=values.device).scatter_add_(
        1, group, torch.ones_like(positions))
    avg_sorted = (sums / counts.clamp(min=1)).gather(1, group)
    ranks = torch.empty_like(avg_sorted)
    ranks.scatter_(1, order, avg_sorted)
    return ranks


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation along the last dimension of (B, N) pairs; NaN where either is constant."""
    a = a.double()
    b = b.double()
    da = a - a.mean(dim=-1, keepdim=True)
    db = b - b.mean(dim=-1, keepdim=True)
    saa = (da * da).sum(dim=-1)
    sbb = (db * db).sum(dim=-1)
    denom = torch.sqrt(saa * sbb)
    r = (da * db).sum(dim=-1) / torch.where(denom > 0, denom, torch.ones_like(denom))
    r = torch.where(denom > 0, r.clamp(-1.0, 1.0), torch.full_like(r, float("nan")))
    return r.float()


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation per sample of two (B, H, W) (or (B, N)) tensors.

    Pearson correlation of the average ranks (ties share their mean rank, as in
    ``scipy.stats.spearmanr``); NaN where either map is constant.
    """
    a2 = a.reshape(a.shape[0], -1)
    b2 = b.reshape(b.shape[0], -1)
    return pearson(average_ranks(a2), average_ranks(b2))


def _gaussian_1d(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    t = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return (g / g.sum()).to(dtype)


def ssim(a: Tensor, b: Tensor, kernel_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity (Wang et al., 2004) per sample of two (B, H, W) maps.

    Each map is min-max normalized to [0, 1] first (a constant map becomes 0), then
    ``SSIM = mean over windows of (2 mu_a mu_b + C1)(2 s_ab + C2) /
    ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))`` with a Gaussian window (size 11, sigma 1.5),
    ``C1 = 0.01^2``, ``C2 = 0.03^2`` (data range 1), over valid windows only (no padding). This is
    ``skimage.metrics.structural_similarity(a, b, data_range=1, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)``. Windows shrink to the largest odd size that fits
    maps smaller than 11 pixels.
    """
    x = normalize(a.double())[:, None]
    y = normalize(b.double())[:, None]
    k = min(kernel_size, x.shape[-2], x.shape[-1])
    k = k if k % 2 == 1 else k - 1
    g = _gaussian_1d(k, sigma, x.device, x.dtype)
    wy, wx = g.view(1, 1, k, 1), g.view(1, 1, 1, k)

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, wy), wx)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x * mu_x
    syy = filt(y * y) - mu_y * mu_y
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).float()
