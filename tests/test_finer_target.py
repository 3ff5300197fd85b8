"""Finer-CAM as a target (Zhang et al., CVPR 2025): xcam.targets.finer for every method."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import xcam
from xcam.errors import TargetError
from xcam.methods import GradCAM, Occlusion
from xcam.targets import finer


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


def hand_map(model, x, c, comps, alpha):
    """Grad-CAM of S_c - alpha mean S_j on a GAP -> Linear head: the weight difference, by hand."""
    with torch.no_grad():
        feats = model.act(model.features(x))
    h, w = feats.shape[-2:]
    diff = model.fc.weight[c] - alpha * model.fc.weight[comps].mean(dim=0)
    return torch.relu(torch.einsum("c,chw->hw", diff.detach() / (h * w), feats[0]))


@pytest.mark.parametrize(("c", "alpha", "k"), [(2, 1.0, 1), (0, 0.6, 3), (None, 1.0, 2)])
def test_gradcam_of_finer_is_the_weight_difference(tiny, images, c, alpha, k):
    exp = GradCAM(tiny, "act")(images, targets=finer(c, alpha=alpha, k=k))
    with torch.no_grad():
        out = tiny(images)
    for b in range(images.shape[0]):
        cls = int(out[b].argmax()) if c is None else c
        others = out[b].clone()
        others[cls] = -float("inf")
        comps = others.topk(k).indices
        expected = hand_map(tiny, images[b:b + 1], cls, comps, alpha)
        assert expected.max() > 0
        assert rel_err(exp.low_res[b], expected) < 1e-5
        score = out[b, cls] - alpha * out[b, comps].mean()
        assert abs(float(exp.scores[b] - score)) < 1e-5


def test_alpha_zero_is_the_class_score(tiny, images):
    plain = GradCAM(tiny, "act")(images, targets=3)
    zero = GradCAM(tiny, "act")(images, targets=finer(3, alpha=0.0, k=2))
    assert torch.allclose(plain.low_res, zero.low_res, atol=1e-7)


def test_agrees_with_pytorch_grad_cam_finer(tiny, images):
    pgc = pytest.importorskip("pytorch_grad_cam")
    if not hasattr(pgc, "FinerCAM"):
        pytest.skip("this pytorch-grad-cam has no FinerCAM")
    ours = GradCAM(tiny, "act")(images, targets=finer(None, alpha=1.0, k=1))
    with pgc.FinerCAM(tiny, [tiny.act]) as cam:
        theirs = torch.from_numpy(np.asarray(cam(images, comparison_categories=[1], alpha=1.0)))
    assert theirs.amax() > 0
    err = float((xcam.normalize(ours.maps) - theirs).abs().max())
    print("pytorch-grad-cam FinerCAM k=1: max abs diff of min-max normalized maps", err)
    assert err < 1e-4


def test_comparisons_are_fixed_on_the_clean_input(tiny, images):
    """Occlusion scores every occluded copy against the classes chosen on the clean input."""
    x = images[:2]
    with torch.no_grad():
        out = tiny(x)
    others = out.scatter(1, torch.tensor([[1], [1]]), -float("inf"))
    comps = others.topk(2, dim=1).indices

    ours = Occlusion(tiny, window=16, stride=16, batch_size=64)(x, targets=finer(1, alpha=0.5, k=2))
    expected = []
    for b in range(2):
        single = Occlusion(tiny, window=16, stride=16)(
            x[b:b + 1], targets=lambda o, b=b: o[:, 1] - 0.5 * o[:, comps[b]].mean(dim=1))
        expected.append(single.maps[0])
    assert float(torch.stack(expected).abs().max()) > 0
    assert rel_err(ours.maps, torch.stack(expected)) < 1e-4


def test_fixed_target_keeps_the_clean_comparisons():
    target = xcam.targets.resolve(finer(0, alpha=1.0, k=1), 2)
    clean = torch.tensor([[5.0, 4.0, 1.0], [5.0, 1.0, 3.0]])
    _, scores = target.evaluate(clean)
    assert scores.tolist() == [1.0, 2.0]
    fixed = target.fixed(None)
    moved = torch.tensor([[5.0, 0.0, 4.5], [5.0, 4.9, 0.0]])  # the most similar class changed
    assert fixed.score(moved).tolist() == [5.0, 5.0]  # classes 1 and 2, as on the clean input
    assert target.score(moved).tolist() == pytest.approx([0.5, 0.1])  # unfixed: chosen again
    assert fixed.follow(torch.tensor([1, 1, 0])).score(moved[[1, 1, 0]]).tolist() == [5.0, 5.0, 5.0]


@pytest.mark.parametrize("name", ["gradcampp", "scorecam", "ablationcam", "shapleycam", "layercam",
                                  "smoothgrad", "occlusion"])
def test_every_method_takes_a_finer_target(tiny, images, name):
    kwargs = {"layer": "act"} if name not in ("smoothgrad", "occlusion") else {}
    if name == "smoothgrad":
        kwargs["n_samples"] = 2
    if name == "occlusion":
        kwargs.update(window=16, stride=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = xcam.create(name, tiny, **kwargs)(images[:2], targets=finer(4, alpha=1.0, k=2))
    assert exp.maps.shape == (2, 64, 64) and torch.isfinite(exp.maps).all()


def test_bad_arguments_name_the_fix(tiny, images):
    with pytest.raises(TargetError, match="alpha"):
        finer(1, alpha=-1.0)
    with pytest.raises(TargetError, match="k must"):
        finer(1, k=0)
    with pytest.raises(TargetError, match="lower k"):
        GradCAM(tiny, "act")(images, targets=finer(1, k=5))
    with pytest.raises(TargetError, match="out of range"):
        GradCAM(tiny, "act")(images, targets=finer(7))
