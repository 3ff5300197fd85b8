"""The LFI-CAM stability metric: mean pairwise IoU of min-max maps thresholded at 100/255."""

from __future__ import annotations

import math

import pytest
import torch

from xcam.errors import InputError, InputTypeError
from xcam.metrics.stability import THRESHOLD, stability, thresholded_iou


def _halves() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    left = torch.zeros(1, 4, 4)
    left[:, :, :2] = 1.0
    top = torch.zeros(1, 4, 4)
    top[:, :2, :] = 1.0
    quarter = torch.zeros(1, 4, 4)
    quarter[:, :2, :2] = 1.0
    return left, top, quarter


def test_known_answers() -> None:
    left, top, quarter = _halves()
    # left half vs top half: intersection 4 pixels, union 12.
    torch.testing.assert_close(thresholded_iou(left, top), torch.tensor([1 / 3]))
    # three models: pairs (left, top) 1/3, (left, quarter) 1/2, (top, quarter) 1/2.
    torch.testing.assert_close(stability([left, top, quarter]), torch.tensor([(1 / 3 + 0.5 + 0.5) / 3]))
    torch.testing.assert_close(stability(torch.stack([left, left])), torch.tensor([1.0]))


def test_min_max_first_and_a_strict_threshold_at_100_over_255() -> None:
    left, top, _ = _halves()
    # Min-max makes the score invariant to affine rescaling of each model's map.
    torch.testing.assert_close(stability([5 * left + 3, 0.01 * top - 7]), stability([left, top]))
    # A pixel just above 100/255 is in the region, one at 0.39 (< 0.392) is not.
    a = torch.tensor([[[0.0, 0.39, 1.0, 0.4]]])
    b = torch.tensor([[[0.0, 1.0, 1.0, 1.0]]])
    assert 0.39 < THRESHOLD < 0.4
    torch.testing.assert_close(thresholded_iou(a, b), torch.tensor([2 / 3]))


def test_per_image_scores_and_undefined_pairs() -> None:
    left, top, _ = _halves()
    constant = torch.full((1, 4, 4), 2.0)  # min-maxes to 0: empty region
    maps_a = torch.cat([left, constant])
    maps_b = torch.cat([top, constant])
    maps_c = torch.cat([top, left])
    scores = stability([maps_a, maps_b, maps_c])
    assert scores.shape == (2,)
    torch.testing.assert_close(scores[0], torch.tensor((1 / 3 + 1 / 3 + 1.0) / 3))
    # Image 1: (a, b) both empty -> undefined, left out; (a, c) and (b, c) have IoU 0.
    torch.testing.assert_close(scores[1], torch.tensor(0.0))
    assert math.isnan(float(stability([constant, constant])[0]))


def test_bad_inputs() -> None:
    left, top, _ = _halves()
    with pytest.raises(InputError, match="at least 2"):
        stability([left])
    with pytest.raises(InputError, match="shape"):
        stability([left, torch.zeros(1, 4, 5)])
    with pytest.raises(InputTypeError):
        stability(left.numpy())  # type: ignore[arg-type]
