"""Complexity of a map: sparseness (Gini index) and complexity (entropy), as Quantus defines them.

Both read only the map. Each map is divided by its largest absolute value and its absolute value
taken (Quantus's defaults ``normalise=True``, ``abs=True``); the scores are invariant to that
scale up to the small constants Quantus adds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import check_maps
from .base import metric

__all__ = ["sparseness", "complexity"]

GINI_EPS = 1e-7
"""Added to every pixel before the Gini index (as Quantus's ``Sparseness``)."""

ENTROPY_EPS = 1e-12
"""Added inside the logarithm (as Quantus's ``Complexity``)."""


def _absolute(maps: object) -> Tensor:
    """(B, H*W) float64 ``|m / max|m||`` per sample (an all-zero map stays zero)."""
    m = check_maps(maps).flatten(1).double()
    top = m.abs().amax(dim=1, keepdim=True)
    return torch.where(top > 0, m / torch.where(top > 0, top, torch.ones_like(top)), m).abs()


@metric("sparseness", higher_is_better=True, family="complexity", label="Sparseness (Gini)")
def sparseness(maps: Tensor) -> Tensor:
    """Sparseness of each map: the Gini index of its absolute values (Chalasani et al., ICML 2020).

    With ``a = |m| / max|m| + 1e-7`` flattened and sorted ascending, ``a_(1) <= ... <= a_(N)``::

        G = sum_k (2k - N - 1) a_(k) / (N * sum_k a_(k))

    0 for a constant map, close to 1 when one pixel holds all the relevance. Higher is better (a
    sparser, more concentrated explanation). Equals Quantus's ``Sparseness()`` with its defaults.

    Args:
        maps: (B, H, W) maps (any sign; the absolute value is scored).

    Returns:
        (B,) float32 Gini indices in [0, 1).
    """
    a = _absolute(maps) + GINI_EPS
    a, _ = torch.sort(a, dim=1)
    n = a.shape[1]
    k = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    return (((2 * k - n - 1) * a).sum(1) / (n * a.sum(1))).float()


@metric("complexity", higher_is_better=False, family="complexity", label="Complexity (entropy)")
def complexity(maps: Tensor) -> Tensor:
    """Complexity of each map: the entropy of its normalized absolute values (Bhatt et al., IJCAI 2020).

    With ``a = |m| / max|m|`` flattened and ``p_i = a_i / sum_j a_j``::

        H = -sum_i p_i log(p_i + 1e-12)

    0 when one pixel holds all the relevance, ``log N`` for a constant map. Lower is better (a
    simpler explanation). Equals Quantus's ``Complexity()`` with its defaults. An all-zero map
    scores NaN.

    Args:
        maps: (B, H, W) maps (any sign; the absolute value is scored).

    Returns:
        (B,) float32 entropies in nats, in [0, log(H*W)].
    """
    a = _absolute(maps)
    p = a / a.sum(1, keepdim=True)
    return (-(p * torch.log(p + ENTROPY_EPS)).sum(1)).float()
