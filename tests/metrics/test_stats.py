"""Aggregation: bootstrap confidence interval and the paired Wilcoxon test against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xcam.errors import InputError
from xcam.metrics import mean_ci, wilcoxon

scipy_stats = pytest.importorskip("scipy.stats")


def test_mean_ci_known_answers():
    const = mean_ci(torch.full((20,), 0.25), seed=0)
    assert (const.mean, const.low, const.high, const.n) == (0.25, 0.25, 0.25, 20)
    one = mean_ci(torch.tensor([0.7, float("nan")]), seed=0)
    assert (one.mean, one.low, one.high, one.n, one.n_undefined) == (
        pytest.approx(0.7), pytest.approx(0.7), pytest.approx(0.7), 1, 1)
    empty = mean_ci(torch.tensor([float("nan")] * 3))
    assert math.isnan(empty.mean) and empty.n == 0 and empty.n_undefined == 3


def test_mean_ci_leaves_nan_out_and_is_seeded():
    scores = torch.tensor([0.0, 1.0, float("nan"), 1.0, 0.0, 1.0])
    a = mean_ci(scores, seed=3)
    assert a.mean == pytest.approx(0.6) and a.n == 5 and a.n_undefined == 1
    assert a == mean_ci(scores, seed=3)
    assert 0.0 <= a.low <= a.mean <= a.high <= 1.0


def test_mean_ci_width_matches_the_normal_approximation():
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(400, generator=gen, dtype=torch.float64)
    r = mean_ci(scores, n_resamples=4000, seed=1)
    half = 1.96 * float(scores.std(unbiased=False)) / math.sqrt(400)
    assert r.low < r.mean < r.high
    assert (r.high - r.low) / 2 == pytest.approx(half, rel=0.1)
    assert (r.high + r.low) / 2 == pytest.approx(r.mean, abs=0.2 * half)
    r90 = mean_ci(scores, confidence=0.9, n_resamples=4000, seed=1)
    assert r90.high - r90.low < r.high - r.low


def _both(a, b, alternative="two-sided"):
    ours = wilcoxon(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64),
                    alternative=alternative)
    ref = scipy_stats.wilcoxon(a, b, alternative=alternative)
    return ours, ref


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("n, rounded, method", [
    (12, False, "exact"),       # no ties: exact null distribution
    (40, False, "exact"),
    (10, True, "permutation"),  # ties or zeros, n <= 13: every sign flip
    (30, True, "asymptotic"),   # ties, n > 13: normal approximation with tie correction
    (80, False, "asymptotic"),  # n > 50
])
def test_wilcoxon_matches_scipy(n, rounded, method, alternative):
    rng = np.random.default_rng(n)
    a = rng.random(n)
    b = a - 0.15 + 0.3 * rng.random(n)
    if rounded:
        a, b = np.round(a, 1), np.round(b, 1)
    ours, ref = _both(a.tolist(), b.tolist(), alternative)
    assert ours.method == method
    assert ours.statistic == pytest.approx(float(ref.statistic), abs=1e-9)
    assert ours.p_value == pytest.approx(float(ref.pvalue), rel=1e-6, abs=1e-12)
    assert ours.n == n
    assert ours.median_difference == pytest.approx(float(np.median(a - b)))


def test_wilcoxon_drops_nan_pairs_and_handles_identical_methods():
    a = torch.tensor([0.1, 0.5, float("nan"), 0.9, 0.3, 0.2, 0.8])
    b = torch.tensor([0.2, 0.1, 0.4, float("nan"), 0.0, 0.6, 0.75])
    ours = wilcoxon(a, b)
    keep = [0, 1, 4, 5, 6]
    ref = scipy_stats.wilcoxon(a[keep].double().numpy(), b[keep].double().numpy())
    assert ours.n == 5 and ours.p_value == pytest.approx(float(ref.pvalue), rel=1e-6)
    same = wilcoxon(a, a)
    assert same.statistic == 0.0 and same.p_value == 1.0
    with pytest.raises(InputError, match="same samples"):
        wilcoxon(a, b[:3])
    with pytest.raises(InputError, match="alternative"):
        wilcoxon(a, b, alternative="bigger")
