"""Control explainers: blank, random, centre Gaussian, Sobel edges."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

import xcam
from xcam.errors import InputError
from xcam.methods import BlankMap, CenterGaussian, RandomMap, SobelEdges
from xcam.metrics import energy_pointing_game, max_box_acc, pointing_game, relevance_rank


def test_random_map_is_seeded_uniform_noise(tiny, images):
    a, b, c = (RandomMap(tiny, seed=s)(images) for s in (1, 1, 2))
    assert torch.equal(a.maps, b.maps) and not torch.equal(a.maps, c.maps)
    assert 0 <= float(a.maps.min()) and float(a.maps.max()) < 1
    assert abs(float(a.maps.mean()) - 0.5) < 0.01  # 12288 uniform values
    assert not torch.equal(a.maps[0], a.maps[1])
    with torch.no_grad():
        out = tiny(images)
    assert torch.equal(a.targets, out.argmax(1))
    assert torch.allclose(a.scores, out.max(1).values)
    # the model is not consulted for the map: another class, the same noise
    assert torch.equal(RandomMap(tiny, seed=1)(images, targets=0).maps, a.maps)


def test_center_gaussian_values(tiny):
    x = torch.zeros(2, 3, 33, 65)
    maps = CenterGaussian(tiny, sigma=0.2)(x).maps
    assert maps.shape == (2, 33, 65) and torch.equal(maps[0], maps[1])
    assert float(maps[0, 16, 32]) == 1.0 and int(maps[0].argmax()) == 16 * 65 + 32
    assert torch.equal(maps[0], maps[0].flip(0)) and torch.equal(maps[0], maps[0].flip(1))
    # one standard deviation (0.2 * width = 13 pixels) right of the centre: exp(-1/2)
    assert math.isclose(float(maps[0, 16, 45]), math.exp(-0.5), rel_tol=1e-6)
    with pytest.raises(InputError, match="sigma"):
        CenterGaussian(tiny, sigma=0)


def test_sobel_edges_match_scipy(tiny, images):
    maps = SobelEdges(tiny)(images).maps
    for b in range(3):
        grey = images[b].mean(0).double().numpy()
        expected = np.hypot(ndimage.sobel(grey, axis=0, mode="nearest"),
                            ndimage.sobel(grey, axis=1, mode="nearest"))
        assert np.allclose(maps[b].numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore::xcam.errors.InputRangeWarning")  # a 0 / 1 step image
def test_sobel_edges_of_a_step(tiny):
    x = torch.zeros(1, 3, 8, 8)
    x[..., 4:] = 1.0
    maps = SobelEdges(tiny)(x).maps[0]
    assert torch.equal(maps[:, [0, 1, 2, 5, 6, 7]], torch.zeros(8, 6))  # flat, borders included
    assert torch.equal(maps[:, 3:5], torch.full((8, 2), 4.0))  # 1 + 2 + 1 across the step


def test_blank_map_is_zero_and_scores_nothing(tiny, images):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # constant by design: no dead-end warning
        exp = BlankMap(tiny)(images, targets=1)
    assert exp.maps.dtype == torch.float32 and torch.equal(exp.maps, torch.zeros(3, *images.shape[-2:]))
    assert exp.method == "blank" and "blank" in xcam.list_explainers()
    with torch.no_grad():
        out = tiny(images)
    assert torch.equal(exp.targets, torch.ones(3, dtype=torch.long))
    assert torch.allclose(exp.scores, out[:, 1])
    h, w = images.shape[-2:]
    boxes = [[(0, 0, w, h)], [(2, 2, 10, 10)], [(5, 0, w, 4)]]
    # no maximum, no box above any threshold: 0 (issue 12: MaxBoxAcc with ">=" gave it credit)
    assert pointing_game(exp.maps, boxes).tolist() == [0.0, 0.0, 0.0]
    assert max_box_acc(exp.maps, boxes).value == 0.0
    # mass and rank metrics score it at chance: the box's share of the image
    share = torch.tensor([1.0, 64 / (h * w), 4 * (w - 5) / (h * w)])
    assert torch.allclose(energy_pointing_game(exp.maps, boxes), share)
    assert torch.allclose(relevance_rank(exp.maps, boxes), share)
