"""Aggregation of per-sample scores.

A mean with its bootstrap confidence interval (of a score, or pointwise of a curve), a paired test
between two methods, the Holm-Bonferroni correction of a family of such tests, and Kendall's tau
between two rankings.

NaN scores (samples where a metric is undefined) are left out: by :func:`mean_ci` one at a time,
by :func:`wilcoxon` pair by pair. Both work on tensors and need nothing beyond torch.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_int, check_number, make_generator
from ..errors import InputError, InputTypeError
from .similarity import average_ranks

__all__ = ["MeanCI", "mean_ci", "WilcoxonResult", "wilcoxon", "holm", "kendall_tau", "CurveBand",
           "mean_band"]


def _scores(values: object, name: str) -> Tensor:
    if isinstance(values, Tensor):
        t = values.detach()
    elif isinstance(values, (list, tuple)):
        try:
            t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        except (TypeError, ValueError):
            raise InputTypeError(f"{name} must hold numbers, got {values!r}") from None
    else:
        raise InputTypeError(
            f"{name} must be a 1-D tensor of per-sample scores (a metric's output), got "
            f"{type(values).__name__}"
        )
    if t.dim() != 1:
        raise InputError(f"{name} must be 1-D (one score per sample), got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise InputTypeError(f"{name} must be real numbers, got dtype {t.dtype}")
    return t.double()


@dataclass(frozen=True)
class MeanCI:
    """Mean of the defined scores with a percentile-bootstrap confidence interval.

    Attributes:
        mean: mean of the non-NaN scores (NaN when there is none).
        low, high: bounds of the interval.
        n: number of non-NaN scores used.
        n_undefined: number of NaN scores left out.
        confidence: the interval's level (0.95 for a 95 % interval).
    """

    mean: float
    low: float
    high: float
    n: int
    n_undefined: int
    confidence: float

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}] ({pct}% CI, n={self.n})"


def mean_ci(
    scores: Tensor,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int | None = None,
) -> MeanCI:
    """Mean with a percentile-bootstrap confidence interval (Efron & Tibshirani, 1993).

    ``n_resamples`` resamples of the n defined scores are drawn with replacement (seeded); the
    interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of their means
    (linear interpolation, as ``numpy.quantile``). With one score the interval is that score.

    Args:
        scores: (B,) per-sample scores; NaNs are left out.
        confidence: level of the interval, in (0, 1) (default 0.95).
        n_resamples: bootstrap resamples (default 10 000).
        seed: seed of the resampling (``None``: fresh from torch's global RNG).

    Returns:
        :class:`MeanCI`.
    """
    t = _scores(scores, "scores")
    level = check_number("confidence", confidence)
    if not 0 < level < 1:
        raise InputError(f"confidence must lie in (0, 1), e.g. 0.95; got {confidence}")
    n_boot = check_int("n_resamples", n_resamples, 1)
    defined = t[~torch.isnan(t)]
    n = int(defined.numel())
    n_undefined = int(t.numel()) - n
    nan = float("nan")
    if n == 0:
        return MeanCI(nan, nan, nan, 0, n_undefined, level)
    mean = float(defined.mean())
    if n == 1:
        return MeanCI(mean, mean, mean, 1, n_undefined, level)
    gen = make_generator(seed, defined.device)
    rows = max(1, 4_000_000 // n)  # resamples per chunk, to bound memory
    means = torch.cat([
        defined[torch.randint(0, n, (min(rows, n_boot - s), n), generator=gen,
                              device=defined.device)].mean(dim=1)
        for s in range(0, n_boot, rows)
    ])
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=means.dtype, device=means.device)
    low, high = torch.quantile(means, q).tolist()
    return MeanCI(mean, low, high, n, n_undefined, level)


@dataclass(frozen=True)
class WilcoxonResult:
    """Result of :func:`wilcoxon`.

    Attributes:
        statistic: for ``"two-sided"``, ``min(W+, W-)``; otherwise ``W+``, the rank sum of the
            positive differences ``a - b`` (as ``scipy.stats.wilcoxon``).
        p_value: the test's p-value.
        n: number of pairs used (both scores defined), zero differences included.
        method: ``"exact"``, ``"permutation"`` (all sign flips enumerated) or ``"asymptotic"``.
        median_difference: median of ``a - b`` over the pairs used.
    """

    statistic: float
    p_value: float
    n: int
    method: str
    median_difference: float


def _exact_counts(m: int) -> Tensor:
    """Number of sign assignments of ranks 1..m giving each rank sum 0..m(m+1)/2."""
    top = m * (m + 1) // 2
    counts = torch.zeros(top + 1, dtype=torch.float64)
    counts[0] = 1
    for k in range(1, m + 1):
        shifted = torch.zeros_like(counts)
        shifted[k:] = counts[:-k]
        counts = counts + shifted
    return counts


def wilcoxon(a: Tensor, b: Tensor, alternative: str = "two-sided") -> WilcoxonResult:
    """Paired Wilcoxon signed-rank test between two methods' per-sample scores.

    Differences ``d = a - b`` of pairs where both scores are defined; zero differences are
    dropped (Wilcoxon's rule) and ``|d|`` is ranked with ties sharing their average rank.
    ``W+`` is the rank sum of the positive differences. The p-value is, as in
    ``scipy.stats.wilcoxon`` (method "auto", no continuity correction):

    - exact (the null distribution of ``W+`` by counting) for n <= 50 with no ties and no zeros;
    - a permutation test over all ``2^m`` sign flips for n <= 13 with ties or zeros;
    - otherwise the normal approximation with the tie correction of the variance.

    Args:
        a: (B,) per-sample scores of one method.
        b: (B,) scores of the other method on the same samples.
        alternative: ``"two-sided"`` (default), ``"greater"`` (a tends to exceed b) or
            ``"less"``.

    Returns:
        :class:`WilcoxonResult`; with no nonzero difference the p-value is 1.
    """
    x, y = _scores(a, "a"), _scores(b, "b")
    if x.shape != y.shape:
        raise InputError(f"a and b must score the same samples: shapes {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if alternative not in ("two-sided", "greater", "less"):
        raise InputError(f"alternative must be 'two-sided', 'greater' or 'less', got "
                         f"{alternative!r}")
    x, y = x.cpu(), y.cpu()
    keep = ~(torch.isnan(x) | torch.isnan(y))
    d_all = (x - y)[keep]
    n = int(d_all.numel())
    if n == 0:
        raise InputError("a and b have no pair where both scores are defined (not NaN)")
    median = float(torch.quantile(d_all, 0.5))
    d = d_all[d_all != 0]
    m = int(d.numel())
    if m == 0:
        return WilcoxonResult(0.0, 1.0, n, "exact", median)
    ranks = average_ranks(d.abs()[None])[0]
    w_plus = float(ranks[d > 0].sum())
    w_minus = float(ranks[d < 0].sum())
    has_ties = int(torch.unique(d.abs()).numel()) < m
    has_zeros = m < n
    statistic = min(w_plus, w_minus) if alternative == "two-sided" else w_plus

    def tail_p(lower: float, upper: float) -> float:
        if alternative == "greater":
            return upper
        if alternative == "less":
            return lower
        return min(1.0, 2 * min(lower, upper))

    if n <= 50 and not (has_ties or has_zeros):
        counts = _exact_counts(m)
        pmf = counts / counts.sum()
        k_low, k_high = math.ceil(w_plus), math.floor(w_plus)
        lower = float(pmf[: k_low + 1].sum())  # P(W+ <= w)
        upper = float(pmf[k_high:].sum())  # P(W+ >= w)
        return WilcoxonResult(statistic, tail_p(lower, upper), n, "exact", median)
    if n <= 13:
        signs = torch.tensor(list(itertools.product((0.0, 1.0), repeat=m)), dtype=torch.float64)
        null = signs @ ranks  # W+ of every sign flip
        tol = 1e-9 * max(1.0, abs(w_plus))
        lower = float((null <= w_plus + tol).double().mean())
        upper = float((null >= w_plus - tol).double().mean())
        return WilcoxonResult(statistic, tail_p(lower, upper), n, "permutation", median)
    _, tie_counts = torch.unique(d.abs(), return_counts=True)
    tie_term = float((tie_counts.double() ** 3 - tie_counts.double()).sum())
    mean_w = m * (m + 1) / 4
    var_w = (m * (m + 1) * (2 * m + 1) - tie_term / 2) / 24
    z = (w_plus - mean_w) / math.sqrt(var_w)
    normal = torch.distributions.Normal(0.0, 1.0)
    lower = float(normal.cdf(torch.tensor(z, dtype=torch.float64)))  # type: ignore[no-untyped-call]
    upper = 1.0 - lower
    return WilcoxonResult(statistic, tail_p(lower, upper), n, "asymptotic", median)


def holm(p_values: Tensor | list[float] | tuple[float, ...]) -> Tensor:
    """Holm-Bonferroni adjusted p-values of a family of tests (Holm 1979, step-down).

    With the ``m`` defined p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value
    of the ``i``-th (1-based) is ``min(1, max_{j <= i} (m - j + 1) p_(j))``: the running maximum
    keeps the order of the raw values. Rejecting where the adjusted value is ``<= alpha`` controls
    the family-wise error rate at ``alpha``. Equal to ``statsmodels``'
    ``multipletests(p, method="holm")[1]``. NaN entries (tests that could not run) stay NaN and do
    not count in ``m``.

    Args:
        p_values: (m,) raw p-values in [0, 1].

    Returns:
        (m,) float64 adjusted p-values, in the input's order.
    """
    p = _scores(p_values if isinstance(p_values, Tensor) else list(p_values), "p_values").cpu()
    defined = ~torch.isnan(p)
    if bool(((p[defined] < 0) | (p[defined] > 1)).any()):
        raise InputError(f"p_values must lie in [0, 1], got {p.tolist()}")
    out = torch.full_like(p, float("nan"))
    values = p[defined]
    m = int(values.numel())
    if m == 0:
        return out
    order = torch.argsort(values, stable=True)
    factors = torch.arange(m, 0, -1, dtype=torch.float64)  # m, m - 1, ..., 1
    stepped = torch.cummax(values[order] * factors, dim=0).values.clamp(max=1.0)
    adjusted = torch.empty_like(values)
    adjusted[order] = stepped
    out[defined] = adjusted
    return out


def kendall_tau(a: Tensor | list[float], b: Tensor | list[float]) -> float:
    """Kendall's tau-b between two scorings of the same items (Kendall 1945, with ties).

    Over the pairs ``i < j``, ``C`` are concordant (``(a_i - a_j)(b_i - b_j) > 0``) and ``D``
    discordant (``< 0``); ``tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2))`` with ``n0 = n(n-1)/2``,
    ``n1`` the pairs tied in ``a`` and ``n2`` the pairs tied in ``b`` (``scipy.stats.kendalltau``'s
    default). Items where either value is NaN are left out.

    Args:
        a: (n,) scores of the items by one criterion (e.g. the methods' means on one metric,
            signed so that larger is better).
        b: (n,) scores by another.

    Returns:
        tau in [-1, 1]; NaN with fewer than two items, or when every item ties in ``a`` or in ``b``.
    """
    x, y = _scores(a if isinstance(a, Tensor) else list(a), "a").cpu(), \
        _scores(b if isinstance(b, Tensor) else list(b), "b").cpu()
    if x.shape != y.shape:
        raise InputError(f"a and b must score the same items: shapes {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    keep = ~(torch.isnan(x) | torch.isnan(y))
    x, y = x[keep], y[keep]
    n = int(x.numel())
    if n < 2:
        return float("nan")
    i, j = torch.triu_indices(n, n, offset=1)
    dx, dy = torch.sign(x[i] - x[j]), torch.sign(y[i] - y[j])
    s = float((dx * dy).sum())  # C - D
    n0 = n * (n - 1) / 2
    n1 = float((dx == 0).sum())
    n2 = float((dy == 0).sum())
    denominator = math.sqrt((n0 - n1) * (n0 - n2))
    return s / denominator if denominator > 0 else float("nan")


@dataclass(frozen=True)
class CurveBand:
    """Pointwise mean of curves with a percentile-bootstrap confidence band.

    Attributes:
        mean, low, high: (T,) the mean curve and the band's bounds at each step.
        n: number of curves.
        confidence: the band's level.
    """

    mean: list[float]
    low: list[float]
    high: list[float]
    n: int
    confidence: float


def mean_band(curves: Tensor, confidence: float = 0.95, n_resamples: int = 2000,
              seed: int | None = 0) -> CurveBand:
    """Mean of ``curves`` (N, T) with a pointwise percentile-bootstrap band.

    The N curves (one per image) are resampled with replacement ``n_resamples`` times; at each step
    ``t`` the band is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
    resampled means (Efron & Tibshirani 1993, the percentile interval), as :func:`mean_ci` for a
    single score. A pointwise band: it holds at each step, not for the whole curve at once.

    Args:
        curves: (N, T) one curve per image, all on the same T steps.
        confidence: level in (0, 1).
        n_resamples: bootstrap resamples.
        seed: seeds the resampling (bit-identical with the same seed).

    Returns:
        :class:`CurveBand`; with N = 1 the band is the curve itself.
    """
    if not isinstance(curves, Tensor) or curves.dim() != 2 or curves.shape[0] < 1:
        got = tuple(curves.shape) if isinstance(curves, Tensor) else type(curves).__name__
        raise InputError(f"curves must be an (N, T) tensor with N >= 1, got {got}")
    level = check_number("confidence", confidence)
    if not 0 < level < 1:
        raise InputError(f"confidence must lie in (0, 1), e.g. 0.95; got {confidence}")
    n_boot = check_int("n_resamples", n_resamples, 1)
    c = curves.detach().double().cpu()
    n = int(c.shape[0])
    mean = c.mean(dim=0)
    if n == 1:
        return CurveBand(mean.tolist(), mean.tolist(), mean.tolist(), 1, level)
    gen = make_generator(seed, torch.device("cpu"))
    idx = torch.randint(0, n, (n_boot, n), generator=gen)
    means = c[idx].mean(dim=1)  # (R, T)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(means, q, dim=0)
    return CurveBand(mean.tolist(), low.tolist(), high.tolist(), n, level)
