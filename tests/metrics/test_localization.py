"""Localization metrics: hand-built known answers, edge cases and brute-force references."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xcam.errors import InputError, InputTypeError
from xcam.metrics import (
    boxes_to_masks,
    energy_pointing_game,
    max_box_acc,
    pointing_game,
    pointing_game_baseline,
    relevance_mass,
    relevance_rank,
)
from xcam.metrics.base import MetricInputs

H = W = 40


def one_hot(y: int, x: int, h: int = H, w: int = W) -> torch.Tensor:
    m = torch.zeros(1, h, w)
    m[0, y, x] = 1.0
    return m


def box_mask(x0: int, y0: int, x1: int, y1: int, h: int = H, w: int = W) -> torch.Tensor:
    m = torch.zeros(1, h, w, dtype=torch.bool)
    m[0, y0:y1, x0:x1] = True
    return m


# ----------------------------------------------------------------------------- boxes


def test_boxes_to_masks_is_inclusive_exclusive():
    mask = boxes_to_masks([[(1, 0, 3, 2)], []], (3, 4))
    assert mask.dtype == torch.bool and mask.shape == (2, 3, 4)
    assert mask[0].int().tolist() == [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    assert not mask[1].any()


def test_boxes_to_masks_union_clipping_and_tensor_forms():
    boxes = [[(0, 0, 2, 1), (3, 2, 10, 10)]]
    mask = boxes_to_masks(boxes, (3, 4))
    assert mask[0].int().tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert torch.equal(boxes_to_masks(torch.tensor([[[0, 0, 2, 1], [3, 2, 10, 10]]]), (3, 4)), mask)
    assert torch.equal(boxes_to_masks([torch.tensor([[0.0, 0, 2, 1], [3, 2, 10, 10]])], (3, 4)),
                       mask)
    # fractional coordinates: pixel x is inside when x0 <= x < x1
    assert boxes_to_masks([[(0.5, 0, 2.5, 1)]], (1, 4))[0, 0].int().tolist() == [0, 1, 1, 0]


def test_boxes_errors_name_the_fix():
    with pytest.raises(InputError, match=r"wrap it as \[\[x0, y0, x1, y1\]\]"):
        boxes_to_masks([(0, 0, 2, 2)], (4, 4))
    with pytest.raises(InputError, match="x1 < x0"):
        boxes_to_masks([[(3, 0, 2, 2)]], (4, 4))
    with pytest.raises(InputError, match="2 entries for a batch of 1"):
        pointing_game(torch.rand(1, 4, 4), [[(0, 0, 1, 1)], []])
    with pytest.raises(InputTypeError, match="bool"):
        pointing_game(torch.rand(1, 4, 5), torch.ones(1, 4, 5))


def test_masks_and_boxes_give_the_same_scores():
    maps = torch.rand(2, H, W, generator=torch.Generator().manual_seed(0))
    boxes = [[(5, 5, 20, 12)], [(0, 30, 40, 40), (10, 0, 12, 5)]]
    mask = boxes_to_masks(boxes, (H, W))
    for fn in (pointing_game, energy_pointing_game, relevance_mass, relevance_rank):
        assert torch.equal(fn(maps, boxes), fn(maps, mask)), fn.name


# ----------------------------------------------------------------------------- pointing game


def test_pointing_game_hit_miss_and_tolerance_boundary():
    gt = box_mask(10, 10, 20, 20)
    assert pointing_game(one_hot(15, 15), gt).tolist() == [1.0]
    assert pointing_game(one_hot(35, 35), gt).tolist() == [0.0]
    # maximum at (y=23, x=24): nearest GT pixel (19, 19) is sqrt(16 + 25) = 6.40 px away
    m = one_hot(23, 24)
    d = math.sqrt(4**2 + 5**2)
    assert pointing_game(m, gt, tolerance=d).tolist() == [1.0]
    assert pointing_game(m, gt, tolerance=d - 1e-6).tolist() == [0.0]
    assert pointing_game(m, gt, tolerance=0).tolist() == [0.0]
    # default tolerance 15: a maximum 15 px right of the box hits, 16 px misses
    assert pointing_game(one_hot(15, 19 + 15), gt).tolist() == [1.0]
    assert pointing_game(one_hot(15, 19 + 16), gt).tolist() == [0.0]


def test_pointing_game_ties_count_fractionally():
    # issue 12 changed this: ties were broken in raster order (0.0 and 1.0 below)
    gt = box_mask(30, 30, 40, 40)
    m = torch.zeros(1, H, W)
    m[0, 0, 0] = 1.0  # outside
    m[0, 35, 35] = 1.0  # inside
    assert pointing_game(m, gt, tolerance=0).tolist() == [0.5]
    m2 = torch.zeros(1, H, W)
    m2[0, 35, 35] = 1.0
    m2[0, 39, 0] = 1.0  # outside
    m2[0, 0, 39] = 1.0  # outside
    assert pointing_game(m2, gt, tolerance=0).tolist() == [pytest.approx(1 / 3)]
    # the same three maxima: with 10 px tolerance (39, 0) is still 30 px away, (0, 39) too
    assert pointing_game(m2, gt, tolerance=10).tolist() == [pytest.approx(1 / 3)]
    # (39, 20) is 10 px left of the box's column 30 on its last row: within 10 px, not 9
    m3 = torch.zeros(1, H, W)
    m3[0, 35, 35] = m3[0, 39, 20] = 1.0
    assert pointing_game(m3, gt, tolerance=10).tolist() == [1.0]
    assert pointing_game(m3, gt, tolerance=9).tolist() == [0.5]


def test_pointing_game_and_rank_are_mirror_invariant_on_a_symmetric_tie():
    # two equal peaks mirrored about the vertical axis; the object under the left one
    m = torch.zeros(1, H, W)
    m[0, 20, 5] = m[0, 20, W - 1 - 5] = 1.0
    gt = box_mask(0, 15, 10, 25)
    gt_mirror = gt.flip(2)
    for fn in (pointing_game, relevance_rank):
        a, b = fn(m, gt).item(), fn(m.flip(2), gt_mirror).item()
        c, d = fn(m, gt_mirror).item(), fn(m.flip(1), gt.flip(1)).item()
        assert a == b == c == d, fn.name
    assert pointing_game(m, gt).item() == 0.5


def test_pointing_game_constant_map_is_a_miss_and_empty_gt_is_nan():
    gt = torch.ones(1, H, W, dtype=torch.bool)
    assert pointing_game(torch.full((1, H, W), 0.3), gt).tolist() == [0.0]
    assert pointing_game(torch.zeros(1, H, W), gt).tolist() == [0.0]
    out = pointing_game(one_hot(3, 3).repeat(2, 1, 1), [[], [(0, 0, 5, 5)]])
    assert math.isnan(out[0]) and out[1] == 1.0


def test_pointing_game_baseline_points_at_the_center():
    near_centre = box_mask(18, 18, 22, 22)
    corner = box_mask(0, 0, 3, 3)
    gt = torch.cat([near_centre, corner])
    assert pointing_game_baseline(gt, tolerance=0).tolist() == [1.0, 0.0]
    # boxes need the image size; centre pixel (20, 20) -> 15 px reaches x = 5 on row 20
    out = pointing_game_baseline([[(0, 20, 6, 21)], [(0, 20, 5, 21)], []], size=(H, W))
    assert out[:2].tolist() == [1.0, 0.0] and math.isnan(out[2])
    with pytest.raises(InputError, match="size="):
        pointing_game_baseline([[(0, 0, 1, 1)]])


def _pointing_reference(m: torch.Tensor, gt: torch.Tensor, tol: float) -> float:
    """Share of the maximum pixels within ``tol`` of a ground-truth pixel; constant map: 0."""
    h, w = m.shape
    if not gt.any():
        return float("nan")
    top = max(m.flatten().tolist())
    if bool((m == top).all()):
        return 0.0
    maxima = [(y, x) for y in range(h) for x in range(w) if m[y, x] == top]
    inside = [(y, x) for y in range(h) for x in range(w) if gt[y, x]]
    hits = sum(any((y - v) ** 2 + (x - u) ** 2 <= tol * tol for v, u in inside)
               for y, x in maxima)
    return hits / len(maxima)


def _rank_reference(m: torch.Tensor, gt: torch.Tensor) -> float:
    """The expected share over every order of the tied values, written with fractions: a pixel is
    in the top K with probability 1 above the K-th value, (places left) / (pixels tied) at it."""
    from fractions import Fraction

    vals = m.flatten().tolist()
    inside = gt.flatten().tolist()
    k = sum(inside)
    if k == 0:
        return float("nan")
    kth = sorted(vals, reverse=True)[k - 1]
    above = sum(v > kth for v in vals)
    tied = sum(v == kth for v in vals)
    chance = {True: Fraction(1), False: Fraction(k - above, tied)}
    total = sum(chance[v > kth] for v, g in zip(vals, inside) if g and v >= kth)
    return float(total / k)


@pytest.mark.filterwarnings("ignore:gt\\[0\\] has boxes but none covers")
@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(0, 3), min_size=48, max_size=48),
    box=st.tuples(st.integers(0, 8), st.integers(0, 6), st.integers(0, 8), st.integers(0, 6)),
    tol=st.sampled_from([0.0, 1.0, 1.5, 3.0]),
)
def test_pointing_and_rank_match_brute_force_with_ties(values, box, tol):
    m = torch.tensor(values, dtype=torch.float32).reshape(1, 6, 8)
    x0, y0, x1, y1 = box
    boxes = [[(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))]]
    gt = boxes_to_masks(boxes, (6, 8))
    exp_p = _pointing_reference(m[0], gt[0], tol)
    exp_r = _rank_reference(m[0], gt[0])
    got_p = float(pointing_game(m, boxes, tolerance=tol)[0])
    got_r = float(relevance_rank(m, boxes)[0])
    if math.isnan(exp_p):
        assert math.isnan(got_p) and math.isnan(got_r)
    else:
        assert got_p == pytest.approx(exp_p, abs=1e-7)
        assert got_r == pytest.approx(exp_r, abs=1e-7)
        # orientation-invariant: the mirrored map and ground truth score the same
        mirrored = [[(8 - b[2], b[1], 8 - b[0], b[3]) for b in boxes[0]]]
        assert float(pointing_game(m.flip(2), mirrored, tolerance=tol)[0]) == got_p
        assert float(relevance_rank(m.flip(2), mirrored)[0]) == pytest.approx(got_r, abs=1e-7)


# ----------------------------------------------------------------------------- mass


def test_energy_and_mass_known_answers():
    gt = box_mask(0, 0, 10, 4)  # 40 of 1600 pixels
    inside = gt.float()
    assert energy_pointing_game(inside, gt).tolist() == [1.0]
    assert relevance_mass(inside, gt).tolist() == [1.0]
    away = (~gt).float()
    assert energy_pointing_game(away, gt).tolist() == [0.0]
    assert relevance_mass(away, gt).tolist() == [0.0]
    # half the mass inside: value 3 on 40 inside pixels, 1 on 120 of the others, 0 elsewhere
    m = inside * 3
    m[0, 20:23, 0:40] = 1.0
    assert relevance_mass(m, gt).item() == pytest.approx(120 / 240)
    # the energy game min-maxes first: the same map divided by 3 (min 0, max 1) -> same shares
    assert energy_pointing_game(m, gt).item() == pytest.approx(120 / 240)


def test_energy_min_max_step_differs_from_relevance_mass():
    gt = box_mask(0, 0, 10, 4)  # 40 of 1600
    m = 1.0 + gt.float()  # 2 inside, 1 outside
    # min-max sends it to the indicator: all energy inside
    assert energy_pointing_game(m, gt).item() == pytest.approx(1.0)
    # relevance mass keeps the raw positive map: 80 / (80 + 1560)
    assert relevance_mass(m, gt).item() == pytest.approx(80 / 1640)


def test_mass_clamps_negative_values():
    gt = box_mask(0, 0, 10, 4)
    m = torch.where(gt, torch.tensor(1.0), torch.tensor(-5.0))
    assert relevance_mass(m, gt).item() == 1.0
    m2 = torch.where(gt, torch.tensor(1.0), torch.tensor(0.5))
    m2[0, -1, -1] = -100.0  # min-max: outside becomes 0.9925..., not 0.5
    lo, hi = -100.0, 1.0
    outside = (0.5 - lo) / (hi - lo)
    expected = 40 / (40 + outside * (1600 - 41))
    assert energy_pointing_game(m2, gt).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("value", [0.0, 2.5, -1.0])
def test_constant_and_zero_maps_count_as_uniform(value):
    gt = box_mask(0, 0, 10, 4)
    m = torch.full((1, H, W), value)
    assert energy_pointing_game(m, gt).item() == pytest.approx(40 / 1600)
    assert relevance_mass(m, gt).item() == pytest.approx(40 / 1600)


def test_empty_ground_truth_is_nan_everywhere():
    m = torch.rand(2, H, W)
    gt = torch.zeros(2, H, W, dtype=torch.bool)
    gt[1, :2, :2] = True
    for fn in (pointing_game, energy_pointing_game, relevance_mass, relevance_rank):
        out = fn(m, gt)
        assert math.isnan(out[0]) and not math.isnan(out[1]), fn.name


# ----------------------------------------------------------------------------- rank


def test_relevance_rank_known_answers_and_ties():
    gt = box_mask(0, 0, 40, 1)  # the first row: K = 40
    ramp = torch.arange(H * W, dtype=torch.float32).reshape(1, H, W)
    assert relevance_rank(-ramp, gt).tolist() == [1.0]  # top 40 = the first row
    assert relevance_rank(ramp, gt).tolist() == [0.0]  # top 40 = the last row
    # a constant map: every pixel ties, so the first and the last row both score chance, K / N
    # (issue 12 changed this: ties by raster index gave 1.0 and 0.0)
    assert relevance_rank(torch.ones(1, H, W), gt).tolist() == [pytest.approx(40 / 1600)]
    gt_last = box_mask(0, 39, 40, 40)
    assert relevance_rank(torch.ones(1, H, W), gt_last).tolist() == [pytest.approx(40 / 1600)]
    # a tie at the K-th value: 30 pixels of 2 (10 inside), then 20 of 1 for the last 10 places
    # (10 of them inside): (10 + 10 * 10 / 20) / 40
    m = torch.zeros(1, H, W)
    m[0, 0, :10] = 2.0
    m[0, 10, :20] = 2.0
    m[0, 0, 10:20] = 1.0
    m[0, 20, :10] = 1.0
    assert relevance_rank(m, gt).item() == pytest.approx((10 + 10 * 10 / 20) / 40)
    # half of the top K inside
    m = torch.zeros(1, H, W)
    m[0, 0, :20] = 2.0
    m[0, 5, :20] = 1.0
    assert relevance_rank(m, gt).tolist() == [0.5]


# ----------------------------------------------------------------------------- MaxBoxAcc


def test_max_box_acc_box_shaped_map_is_perfect():
    # component on columns 2..5, rows 1..3 -> box (2, 1, 6, 4), inclusive-exclusive
    m = torch.zeros(1, 10, 12)
    m[0, 1:4, 2:6] = 1.0
    r = max_box_acc(m, [[(2, 1, 6, 4)]])
    assert r.iou.shape == (1, 100)
    # issue 12: pixels strictly above t, as wsolevaluation, so t = 0 keeps only the box (with
    # ">=" it kept the whole image: IoU 12 / 120) and t = 1 keeps nothing
    assert r.iou[0].eq(1.0).all()
    r = max_box_acc(m, [[(2, 1, 6, 4)]], thresholds=[0.0, 0.5, 1.0])
    assert r.iou[0].tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert r.value == 1.0
    # the same ground truth shifted one pixel right: IoU = 9 / 15
    r = max_box_acc(m, [[(3, 1, 7, 4)]], thresholds=[0.5])
    assert r.iou[0, 0].item() == pytest.approx(0.6)
    assert r.value == 1.0  # 0.6 >= 0.5


def test_max_box_acc_pointing_away_and_constant_maps():
    m = torch.zeros(2, 10, 12)
    m[0, 7:10, 8:12] = 1.0  # far from the box
    r = max_box_acc(m, [[(0, 0, 3, 3)], [(0, 0, 3, 3)]], thresholds=[0.0, 0.5])
    assert r.iou[0].tolist() == pytest.approx([0.0, 0.0])
    # sample 1 is constant: min-max gives 0, so no pixel is above any t >= 0 (issue 12; with
    # ">=" t = 0 found the whole image, IoU 9 / 120)
    assert r.iou[1].tolist() == pytest.approx([0.0, 0.0])
    assert r.value == 0.0
    assert r.box_acc.tolist() == [[0.0, 0.0]]


def test_max_box_acc_largest_component_vs_v2_every_component():
    m = torch.zeros(1, 20, 20)
    m[0, 10:20, 10:20] = 1.0  # large blob, away from the object
    m[0, 1:3, 1:3] = 0.8  # small blob, on the object
    boxes = [[(1, 1, 3, 3)]]
    v1 = max_box_acc(m, boxes)
    v2 = max_box_acc(m, boxes, v2=True)
    # v1: the largest component is the big blob at every t > 0
    assert v1.value == 0.0
    # v2: the small blob's box matches exactly for t in [0, 0.8] (0.8 in float32 is just above
    # the float64 threshold 0.80; strictly above t since issue 12, so t = 0 counts too)
    assert v2.value == 1.0
    assert v2.iou[0, :81].eq(1.0).all() and v2.iou[0, 81:].eq(0.0).all()
    assert v2.iou_thresholds == (0.3, 0.5, 0.7)


def test_max_box_acc_uses_8_connectivity_and_ties_take_the_first_label():
    m = torch.zeros(1, 6, 6)
    m[0, 0, 0] = m[0, 1, 1] = m[0, 2, 2] = 1.0  # one diagonal component of 3 pixels
    r = max_box_acc(m, [[(0, 0, 3, 3)]], thresholds=[0.5])
    assert r.iou[0, 0].item() == 1.0
    # two components of equal size: the first in raster order counts
    m = torch.zeros(1, 6, 6)
    m[0, 0, 4:6] = 1.0
    m[0, 4, 0:2] = 1.0
    assert max_box_acc(m, [[(4, 0, 6, 1)]], thresholds=[0.5]).iou[0, 0].item() == 1.0
    assert max_box_acc(m, [[(0, 4, 2, 5)]], thresholds=[0.5]).iou[0, 0].item() == 0.0


def test_max_box_acc_value_is_max_over_thresholds_of_share_of_samples():
    # three samples; at t = 0.5 two of them localise, at t = 0.9 only one does
    m = torch.zeros(3, 10, 10)
    m[:, 2:5, 2:5] = 1.0
    m[1, 2:5, 2:5] = 0.6
    m[1, 8, 8] = 1.0  # sample 1: at t = 0.9 only the stray pixel survives
    m[2, 6:10, 6:10] = 1.0  # sample 2: a bigger blob elsewhere wins
    boxes = [[(2, 2, 5, 5)]] * 3
    r = max_box_acc(m, boxes, thresholds=[0.5, 0.9])
    assert r.box_acc.shape == (1, 2)
    assert r.box_acc[0].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert r.value == pytest.approx(2 / 3)


def test_max_box_acc_samples_without_boxes_are_nan_and_do_not_count():
    m = torch.zeros(2, 8, 8)
    m[:, 1:3, 1:3] = 1.0
    r = max_box_acc(m, [[(1, 1, 3, 3)], []], thresholds=[0.5])
    assert r.iou[0, 0].item() == 1.0 and math.isnan(r.iou[1, 0])
    assert r.value == 1.0
    r_none = max_box_acc(m, [[], []], thresholds=[0.5])
    assert math.isnan(r_none.value)


def test_max_box_acc_best_of_several_ground_truth_boxes():
    m = torch.zeros(1, 10, 10)
    m[0, 5:8, 5:8] = 1.0
    r = max_box_acc(m, [[(0, 0, 2, 2), (5, 5, 8, 8)]], thresholds=[0.5])
    assert r.iou[0, 0].item() == 1.0


# ----------------------------------------------------------------------------- MaxBoxAcc, issue 12


@pytest.mark.parametrize("value", [0.0, 1.0, -3.5])
def test_max_box_acc_of_a_blank_or_constant_map_is_zero(value):
    m = torch.full((2, 10, 12), value)
    boxes = [[(0, 0, 12, 10)], [(2, 2, 6, 6)]]  # even a box covering the whole image
    for v2 in (False, True):
        r = max_box_acc(m, boxes, v2=v2)
        assert r.value == 0.0 and r.iou.eq(0.0).all()


def test_max_box_acc_iou_exactly_at_the_level_counts():
    # estimate (0, 0, 4, 4) against the box (0, 0, 4, 2): IoU 8 / 16 = 0.5 exactly
    m = torch.zeros(1, 8, 8)
    m[0, :4, :4] = 1.0
    r = max_box_acc(m, [[(0, 0, 4, 2)]], thresholds=[0.5])
    assert r.iou[0, 0].item() == 0.5
    assert r.value == 1.0
    assert max_box_acc(m, [[(0, 0, 4, 2)]], thresholds=[0.5], iou_thresholds=[0.5 + 1e-9]).value == 0.0


def test_max_box_acc_threshold_equal_to_a_value_drops_that_value():
    # a two-level map (0.5 and 1): at t = 0.5 only the 1.0 part is above the threshold
    m = torch.zeros(1, 10, 10)
    m[0, 0:6, 0:6] = 0.5
    m[0, 0:2, 0:2] = 1.0
    r = max_box_acc(m, [[(0, 0, 2, 2)]], thresholds=[0.49, 0.5])
    assert r.iou[0].tolist() == pytest.approx([4 / 36, 1.0])


def test_max_box_acc_warns_for_thresholds_below_0():
    m = torch.zeros(1, 8, 8)
    m[0, :2, :2] = 1.0
    with pytest.warns(UserWarning, match=r"thresholds below 0 .*whole\s+image"):
        r = max_box_acc(m, [[(0, 0, 8, 8)]], thresholds=[-0.1])
    assert r.value == 1.0  # every pixel kept: the whole image is the box


def test_pointing_game_small_object_subset():
    # 10 x 10 images; boxes (x0, y0, x1, y1), exclusive ends: 4 %, 25 %, 80 % and two boxes of
    # 16 % each (their union, 32 %, is what counts)
    boxes = [[(2, 2, 4, 4)], [(0, 0, 5, 5)], [(0, 0, 10, 8)], [(0, 0, 4, 4), (6, 6, 10, 10)]]
    maps = torch.zeros(4, 10, 10)
    maps[0, 3, 3] = 1.0  # hit
    maps[1, 9, 9] = 1.0  # miss
    maps[2, 1, 1] = 1.0  # hit, but the object fills 80 % of the image
    maps[3, 8, 8] = 1.0  # hit
    full = pointing_game(maps, boxes, tolerance=0)
    assert full.tolist() == [1.0, 0.0, 1.0, 1.0]
    assert pointing_game(maps, boxes, tolerance=0, max_box_fraction=None).tolist() == full.tolist()
    small = pointing_game(maps, boxes, tolerance=0, max_box_fraction=0.3)
    assert small[:2].tolist() == [1.0, 0.0] and small[2:].isnan().all()  # 32 % union > 30 %
    at = pointing_game(maps, boxes, tolerance=0, max_box_fraction=0.32)  # at most the share: kept
    assert at[3] == 1.0 and at[2].isnan()
    assert float(small.nanmean()) == 0.5 and float(full.mean()) == 0.75
    masks = boxes_to_masks(boxes, (10, 10))
    assert torch.equal(pointing_game(maps, masks, 0, 0.3).isnan(), small.isnan())
    # the center baseline scores the same subset
    base = pointing_game_baseline(boxes, tolerance=0, size=(10, 10), max_box_fraction=0.3)
    assert base[:2].tolist() == [0.0, 0.0] and base[2:].isnan().all()
    assert pointing_game.baseline_scores(
        MetricInputs(ground_truth=boxes, image_size=(10, 10)), tolerance=0,
        max_box_fraction=0.3)[2:].isnan().all()
    for bad in (0, 1.5, -0.1):
        with pytest.raises(InputError, match="max_box_fraction"):
            pointing_game(maps, boxes, max_box_fraction=bad)
