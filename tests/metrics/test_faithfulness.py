"""Faithfulness metrics: curves written by hand on a model with a known output, slow
obviously-correct references, batching, the shared clean pass and the cost estimate."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from xcam.errors import InputError, TargetError
from xcam.metrics import (
    average_drop,
    deletion,
    faithfulness_correlation,
    gaussian_blur,
    increase_in_confidence,
    infidelity,
    insertion,
)

from .conftest import Counting, RegionLogit


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def trapezoid(ys: list[float], xs: list[float]) -> float:
    return sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))


# A 4 x 4 image of ones, 1 channel; the model's logit counts the pixels of row 0 (scale 0.5).
ROW0 = torch.zeros(1, 4, 4)
ROW0[0, 0] = 1.0
ONES = torch.ones(1, 1, 4, 4)
RASTER = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)


@pytest.fixture
def row_model() -> nn.Module:
    return RegionLogit(ROW0, scale=0.5).eval()


# ----------------------------------------------------------------------------- deletion


def test_deletion_map_pointing_at_the_evidence(row_model):
    # map descending in raster order: step 1 (4 of 16 pixels) deletes row 0
    r = deletion(row_model, ONES, 16 - RASTER, 0, steps=4)
    p = sigmoid(2.0)
    assert r.curves[0].tolist() == pytest.approx([p, 0.5, 0.5, 0.5, 0.5], abs=1e-6)
    assert r.fractions.tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert r.auc.item() == pytest.approx(trapezoid([p, .5, .5, .5, .5], [0, .25, .5, .75, 1]),
                                         abs=1e-6)
    assert r.kind == "deletion" and not r.higher_is_better


def test_deletion_map_pointing_away(row_model):
    # ascending raster order: row 0 goes last
    r = deletion(row_model, ONES, RASTER, 0, steps=4)
    p = sigmoid(2.0)
    assert r.curves[0].tolist() == pytest.approx([p, p, p, p, 0.5], abs=1e-6)
    good = deletion(row_model, ONES, 16 - RASTER, 0, steps=4)
    assert good.auc.item() < r.auc.item()


def test_deletion_ties_go_by_raster_index(row_model):
    # a constant map deletes in raster order: the same curve as the descending ramp
    const = deletion(row_model, ONES, torch.full((1, 4, 4), 0.7), 0, steps=4)
    ramp = deletion(row_model, ONES, 16 - RASTER, 0, steps=4)
    assert torch.equal(const.curves, ramp.curves)
    # partial ties: rows 2-3 tie at the top and go first in raster order, then rows 0-1 tie
    m = torch.tensor([[1.0] * 8 + [2.0] * 8]).reshape(1, 4, 4)
    r = deletion(row_model, ONES, m, 0, steps=4)
    p = sigmoid(2.0)
    assert r.curves[0].tolist() == pytest.approx([p, p, p, 0.5, 0.5], abs=1e-6)


def test_deletion_steps_floor_the_pixel_count(row_model):
    # 16 pixels in 3 steps: 0, 5, 10, 16 pixels deleted
    model = RegionLogit(torch.ones(1, 4, 4), scale=0.25)  # logit = 0.25 * pixels left
    r = deletion(model, ONES, 16 - RASTER, 0, steps=3)
    left = [16, 11, 6, 0]
    assert r.fractions.tolist() == pytest.approx([0, 5 / 16, 10 / 16, 1])
    assert r.curves[0].tolist() == pytest.approx([sigmoid(0.25 * n) for n in left], abs=1e-6)
    assert r.auc.item() == pytest.approx(
        trapezoid([sigmoid(0.25 * n) for n in left], [0, 5 / 16, 10 / 16, 1]), abs=1e-6)


def test_deletion_baseline_value_and_per_channel_baseline():
    model = RegionLogit(torch.ones(1, 4, 4), scale=0.1)
    x = torch.ones(1, 2, 4, 4)
    r = deletion(model, x, 16 - RASTER, 0, steps=2, baseline=-1.0)
    # after step 1, 8 pixels x 2 channels hold -1: logit = 0.1 * (16 - 16) = 0
    assert r.curves[0].tolist() == pytest.approx([sigmoid(3.2), 0.5, sigmoid(-3.2)], abs=1e-6)
    per_channel = torch.tensor([-1.0, 3.0]).view(2, 1, 1)
    r = deletion(model, x, 16 - RASTER, 0, steps=1, baseline=per_channel)
    assert r.curves[0, 1].item() == pytest.approx(sigmoid(0.1 * (16 * -1 + 16 * 3)), abs=1e-6)
    per_sample = torch.tensor([0.5, -0.5]).view(2, 1, 1, 1)
    r = deletion(model, x.expand(2, 2, 4, 4), (16 - RASTER).expand(2, 4, 4), 0, steps=1,
                 baseline=per_sample)
    assert r.curves[:, 1].tolist() == pytest.approx([sigmoid(1.6), sigmoid(-1.6)], abs=1e-6)


# ----------------------------------------------------------------------------- insertion


def test_gaussian_blur_matches_scipy_with_nearest_padding():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(2, 3, 20, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = gaussian_blur(x, 11, 5.0)
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, 5, 5), mode="nearest", truncate=1.0)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-12)
    const = torch.full((1, 3, 8, 8), 0.25)
    assert torch.allclose(gaussian_blur(const), const)


def test_insertion_known_answer():
    # a constant image blurs to itself: every step scores the same
    model = RegionLogit(ROW0, scale=0.5)
    r = insertion(model, ONES, 16 - RASTER, 0, steps=4)
    assert r.curves[0].tolist() == pytest.approx([sigmoid(2.0)] * 5, abs=1e-6)
    assert r.auc.item() == pytest.approx(sigmoid(2.0), abs=1e-6)
    # ones on row 0, zeros elsewhere: the blurred start is known from the reference blur
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0] = 1.0
    blurred = gaussian_blur(x)
    start = float((blurred * ROW0).sum())
    good = insertion(model, x, 16 - RASTER, 0, steps=4)  # row 0 back at step 1
    assert good.curves[0].tolist() == pytest.approx(
        [sigmoid(0.5 * start)] + [sigmoid(2.0)] * 4, abs=1e-6)
    bad = insertion(model, x, RASTER, 0, steps=4)  # row 0 back last
    assert bad.curves[0, :4].tolist() == pytest.approx([sigmoid(0.5 * start)] * 4, abs=1e-6)
    assert good.auc.item() > bad.auc.item()
    assert good.higher_is_better and good.kind == "insertion"


# ----------------------------------------------------------------------------- references


def _reference_curve(model, x, m, target, steps, start, end):
    """One sample, one image per step, an explicit pixel order."""
    _, h, w = x.shape
    n = h * w
    values = m.flatten().tolist()
    order = sorted(range(n), key=lambda p: (-values[p], p))
    probs = []
    for k in range(steps + 1):
        img = start.clone()
        for p in order[: k * n // steps]:
            img[:, p // w, p % w] = end[:, p // w, p % w]
        with torch.no_grad():
            probs.append(torch.softmax(model(img[None]), dim=1)[0, target].item())
    return probs


def test_deletion_and_insertion_match_the_reference(net, images):
    images = images[..., :16, :16].contiguous()
    gen = torch.Generator().manual_seed(5)
    maps = torch.randint(0, 6, (3, 16, 16), generator=gen).float()  # many ties
    targets = torch.tensor([0, 3, 1])
    steps = 7
    d = deletion(net, images, maps, targets, steps=steps, batch_size=5)
    ins = insertion(net, images, maps, targets, steps=steps, batch_size=5)
    blurred = gaussian_blur(images)
    for b in range(3):
        ref_d = _reference_curve(net, images[b], maps[b], int(targets[b]), steps,
                                 images[b], torch.zeros_like(images[b]))
        ref_i = _reference_curve(net, images[b], maps[b], int(targets[b]), steps,
                                 blurred[b], images[b])
        np.testing.assert_allclose(d.curves[b].numpy(), ref_d, atol=2e-6)
        np.testing.assert_allclose(ins.curves[b].numpy(), ref_i, atol=2e-6)
        xs = [(k * 256 // steps) / 256 for k in range(steps + 1)]
        assert d.auc[b].item() == pytest.approx(trapezoid(ref_d, xs), abs=2e-6)
        assert ins.auc[b].item() == pytest.approx(trapezoid(ref_i, xs), abs=2e-6)


def test_batch_equals_samples_one_by_one_and_batch_size_does_not_matter(net, images, rand_maps):
    full = deletion(net, images, rand_maps, None, steps=5, batch_size=64)
    small = deletion(net, images, rand_maps, None, steps=5, batch_size=1)
    torch.testing.assert_close(full.curves, small.curves, atol=1e-6, rtol=0)
    for b in range(3):
        one = deletion(net, images[b:b + 1], rand_maps[b:b + 1], None, steps=5)
        torch.testing.assert_close(one.curves[0], full.curves[b], atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- batching and cost


@pytest.mark.parametrize(
    "fn, kwargs",
    [
        (deletion, {"steps": 10}),
        (insertion, {"steps": 10}),
        (average_drop, {}),
        (increase_in_confidence, {}),
        (faithfulness_correlation, {"n": 9, "subset": 20, "seed": 0}),
        (infidelity, {"n_perturb_samples": 6, "seed": 0}),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_forward_passes_are_batched_no_grad_and_counted(fn, kwargs, net, images, rand_maps):
    counting = Counting(net)
    fn(counting, images, rand_maps, None, batch_size=7, **kwargs)
    assert sum(counting.calls) == fn.forward_passes(3, batch_size=7, **kwargs)
    assert max(counting.calls) <= 7
    assert not any(counting.grad_enabled)


def test_clean_forward_is_shared(net, images, rand_maps):
    counting = Counting(net)
    deletion(counting, images, rand_maps, None, steps=10, batch_size=8)
    # the clean pass (3 images), then 30 perturbed images in passes of at most 8
    assert counting.calls == [3, 8, 8, 8, 6]
    with torch.no_grad():
        clean = net(images)
    counting.calls.clear()
    r1 = deletion(counting, images, rand_maps, None, steps=10, batch_size=8, clean_output=clean)
    r2 = insertion(counting, images, rand_maps, None, steps=10, batch_size=8, clean_output=clean)
    assert sum(counting.calls) == 60  # no clean pass at all
    assert deletion.forward_passes(3, steps=10, clean_output=clean) == 30
    assert r1.curves[:, 0].tolist() == pytest.approx(
        torch.softmax(clean, 1).max(1).values.tolist(), abs=1e-6)
    assert r2.curves[:, -1].tolist() == r1.curves[:, 0].tolist()


# ----------------------------------------------------------------------------- average drop


def test_average_drop_and_increase_known_answers():
    model = RegionLogit(ROW0, scale=0.5)
    y = sigmoid(2.0)
    inside = ROW0.clone()  # min-max map = 1 on row 0: the masked image keeps the evidence
    assert average_drop(model, ONES, inside, 0).tolist() == pytest.approx([0.0], abs=1e-7)
    assert increase_in_confidence(model, ONES, inside, 0).tolist() == [0.0]  # O == Y
    away = 1 - ROW0  # row 0 blended to the baseline: logit 0, O = 0.5
    assert average_drop(model, ONES, away, 0).item() == pytest.approx((y - 0.5) / y, abs=1e-6)
    # a constant map min-maxes to 0: the whole image is the baseline
    const = torch.full((1, 4, 4), 3.0)
    assert average_drop(model, ONES, const, 0).item() == pytest.approx((y - 0.5) / y, abs=1e-6)
    # a partial map: m = 0.5 on row 0 (min 0, max 1 elsewhere) halves the logit
    half = torch.full((1, 4, 4), 1.0)
    half[0, 3] = 0.0
    half[0, 0] = 0.5
    expected = (y - sigmoid(1.0)) / y
    assert average_drop(model, ONES, half, 0).item() == pytest.approx(expected, abs=1e-6)


def test_increase_in_confidence_when_the_map_hides_negative_evidence():
    weight = ROW0.clone()
    weight[0, 3] = -1.0  # row 3 argues against class 0
    model = RegionLogit(weight, scale=0.5)
    m = torch.zeros(1, 4, 4)
    m[0, 0] = 1.0  # keep row 0, hide row 3
    assert increase_in_confidence(model, ONES, m, 0).tolist() == [1.0]
    assert average_drop(model, ONES, m, 0).tolist() == [0.0]
    # target 1 (logit 0) loses: its probability falls from 0.5 to 1 - sigmoid(2)
    assert increase_in_confidence(model, ONES, m, 1).tolist() == [0.0]
    expected = (0.5 - (1 - sigmoid(2.0))) / 0.5
    assert average_drop(model, ONES, m, 1).item() == pytest.approx(expected, abs=1e-6)


# ----------------------------------------------------------------------------- correlation


def test_faithfulness_correlation_is_one_for_the_exact_linear_attribution():
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(1, 8, 8, generator=gen)
    model = RegionLogit(weight)  # logit0 = sum_c sum_p w_p x_cp
    x = torch.ones(2, 3, 8, 8)
    maps = weight.expand(2, 8, 8)
    r = faithfulness_correlation(model, x, maps, 0, n=30, subset=10, seed=0)
    assert r.tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    r_neg = faithfulness_correlation(model, x, -maps, 0, n=30, subset=10, seed=0)
    assert r_neg.tolist() == pytest.approx([-1.0, -1.0], abs=1e-6)
    const = faithfulness_correlation(model, x, torch.ones(2, 8, 8), 0, n=30, subset=10, seed=0)
    assert torch.isnan(const).all()


def test_faithfulness_correlation_matches_the_reference(net, images, rand_maps):
    n, subset, seed = 12, 300, 7
    got = faithfulness_correlation(net, images, rand_maps, [1, 2, 3], n=n, subset=subset,
                                   seed=seed, batch_size=5)
    # the subsets: drawn one sample at a time from a generator seeded with `seed`
    gen = torch.Generator().manual_seed(seed)
    for b in range(3):
        draws = torch.rand(n, 32 * 32, generator=gen).topk(subset, dim=1).indices
        sums, drops = [], []
        with torch.no_grad():
            clean = net(images[b:b + 1])[0, b + 1].item()
            for s in draws.tolist():
                img = images[b].clone().reshape(3, -1)
                img[:, s] = 0.0
                drops.append(clean - net(img.reshape(1, 3, 32, 32))[0, b + 1].item())
                sums.append(float(rand_maps[b].flatten()[s].double().sum()))
        expected = np.corrcoef(sums, drops)[0, 1]
        assert got[b].item() == pytest.approx(expected, abs=1e-4)
    again = faithfulness_correlation(net, images, rand_maps, [1, 2, 3], n=n, subset=subset,
                                     seed=seed, batch_size=64)
    torch.testing.assert_close(again, got, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- infidelity


def test_infidelity_is_zero_for_the_exact_linear_attribution():
    gen = torch.Generator().manual_seed(2)
    weight = torch.randn(1, 6, 6, generator=gen)
    model = RegionLogit(weight)
    x = torch.randn(2, 3, 6, 6, generator=gen)
    exact = 3 * weight.expand(2, 6, 6)  # I^T M = sum_p I_p * 3 w_p = f(x) - f(x - I)
    zero = infidelity(model, x, exact, 0, n_perturb_samples=8, seed=0)
    assert zero.abs().max().item() < 1e-8
    wrong = infidelity(model, x, torch.zeros(2, 6, 6), 0, n_perturb_samples=8, seed=0)
    assert (wrong > 1e-3).all()
    again = infidelity(model, x, torch.zeros(2, 6, 6), 0, n_perturb_samples=8, seed=0)
    assert torch.equal(wrong, again)


# ----------------------------------------------------------------------------- errors


def test_errors_name_the_argument_and_the_fix(net, images, rand_maps):
    with pytest.raises(InputError, match=r"xcam.upsample"):
        deletion(net, images, rand_maps[:, :16, :16], None)
    with pytest.raises(InputError, match="one map per image"):
        deletion(net, images, rand_maps[:2], None)
    with pytest.raises(InputError, match="steps must be >= 1"):
        deletion(net, images, rand_maps, None, steps=0)
    with pytest.raises(TargetError, match="class indices"):
        deletion(net, images, rand_maps, lambda out: out[:, 0])
    with pytest.raises(TargetError, match="out of range"):
        insertion(net, images, rand_maps, 7)
    with pytest.raises(InputError, match="does not broadcast"):
        deletion(net, images, rand_maps, None, baseline=torch.zeros(2, 1, 1))
    with pytest.raises(InputError, match="subset=2000"):
        faithfulness_correlation(net, images, rand_maps, None, subset=2000)
    bad = rand_maps.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        average_drop(net, images, bad, None)


def test_training_mode_model_is_scored_in_eval_mode_and_left_as_it_was(images, rand_maps):
    # issue 12: metrics run the model in eval mode (no warning) and restore every flag and buffer
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(),
                          nn.LazyLinear(2))
    model(images)  # materialise the lazy layer; moves the running statistics once
    state = {k: v.clone() for k, v in model.state_dict().items()}
    reference = average_drop(model.eval(), images, rand_maps, None)
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = average_drop(model, images, rand_maps, None)
    assert torch.equal(got, reference)  # the eval-mode scores, bit for bit
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
