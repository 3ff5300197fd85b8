"""Cross-checks against Quantus 0.6, on identical inputs, where the definitions coincide.

They coincide for the pointing game with tolerance 0 and a unique maximum, for relevance mass on
non-negative maps with some positive mass, and for relevance rank without ties. The last tests
pin the documented differences (docs/metrics.md): ties.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xcam.metrics import pointing_game, relevance_mass, relevance_rank

pytestmark = pytest.mark.oracle

if not hasattr(np, "trapz"):  # Quantus 0.6 calls numpy.trapz, which numpy 2.4 removed
    np.trapz = np.trapezoid  # type: ignore[attr-defined]

quantus = pytest.importorskip("quantus")


def _quantus(metric_cls, maps: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    b, h, w = maps.shape
    x = np.zeros((b, 3, h, w), dtype=np.float32)
    y = np.zeros(b, dtype=np.int64)
    a = maps.numpy()[:, None]
    s = mask.numpy()[:, None].astype(np.float32)
    out = metric_cls(disable_warnings=True)(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s)
    return np.asarray(out, dtype=np.float64)


@pytest.fixture
def case() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    b, h, w = 16, 24, 24
    maps = torch.rand(b, h, w, generator=gen)  # continuous: no ties
    maps[::2] = maps[::2] ** 4  # some peaked maps
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    for i in range(b):
        x0, y0 = torch.randint(0, 16, (2,), generator=gen).tolist()
        bw, bh = torch.randint(1, 9, (2,), generator=gen).tolist()
        mask[i, y0:y0 + bh, x0:x0 + bw] = True
    # make some maps point inside their box
    for i in range(0, b, 3):
        ys, xs = torch.nonzero(mask[i], as_tuple=True)
        maps[i, ys[0], xs[0]] = 2.0
    return maps, mask


def test_pointing_game_agrees_with_quantus(case):
    maps, mask = case
    ours = pointing_game(maps, mask, tolerance=0).double().numpy()
    theirs = _quantus(quantus.PointingGame, maps, mask)
    assert 0 < ours.sum() < len(ours)  # both hits and misses are exercised
    np.testing.assert_array_equal(ours, theirs)


def test_relevance_mass_agrees_with_quantus(case):
    maps, mask = case
    ours = relevance_mass(maps, mask).numpy()
    theirs = _quantus(quantus.RelevanceMassAccuracy, maps, mask).astype(np.float32)
    np.testing.assert_allclose(ours, theirs, rtol=2e-7, atol=0)


def test_relevance_rank_agrees_with_quantus(case):
    maps, mask = case
    ours = relevance_rank(maps, mask).double().numpy()
    theirs = _quantus(quantus.RelevanceRankAccuracy, maps, mask)
    assert len(set(ours.tolist())) > 3
    np.testing.assert_array_equal(ours.astype(np.float32), theirs.astype(np.float32))


def test_documented_difference_pointing_game_ties():
    """Quantus counts a hit when any tied maximum is inside; xcam counts the share of the tied
    maxima that hit (issue 12; it took the first in raster order before, which scored 0.0)."""
    maps = torch.zeros(1, 8, 8)
    maps[0, 0, 0] = maps[0, 6, 6] = 1.0
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 5:8, 5:8] = True
    assert pointing_game(maps, mask, tolerance=0).tolist() == [0.5]
    assert _quantus(quantus.PointingGame, maps, mask).tolist() == [1.0]


def test_documented_difference_relevance_rank_ties():
    """Quantus breaks ties by numpy's argsort order; xcam shares the places left at the K-th
    value among the tied pixels (issue 12), so a map and its mirror image score the same."""
    maps = torch.zeros(1, 8, 8)
    maps[0, 3, 0] = maps[0, 3, 7] = 1.0  # two tied peaks, the object under the left one
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 3, 0] = True  # K = 1: one place for two tied pixels
    mirrored = mask.flip(2)
    assert relevance_rank(maps, mask).item() == relevance_rank(maps, mirrored).item() == 0.5
    theirs = (_quantus(quantus.RelevanceRankAccuracy, maps, mask)[0],
              _quantus(quantus.RelevanceRankAccuracy, maps, mirrored)[0])
    assert sorted(theirs) == [0.0, 1.0]  # one orientation hits, the other misses


def test_documented_difference_relevance_mass_negative_values():
    """Quantus sums the signed map; xcam keeps its positive part."""
    maps = torch.ones(1, 8, 8)
    maps[0, :4] = -0.5
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 4:6] = True
    assert relevance_mass(maps, mask).item() == pytest.approx(16 / 32)
    assert _quantus(quantus.RelevanceMassAccuracy, maps, mask)[0] == pytest.approx(16 / 16)
