"""ShapleyCAM against a slow reference (torch.autograd.functional.hvp) and pytorch-grad-cam."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import xcam
from tests.reference import cams17
from xcam.methods import GradCAM, ShapleyCAM


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


@pytest.fixture
def smooth(tiny):
    """TinyNet with a SiLU after the tapped block: the class logit is curved in the features."""
    model = copy.deepcopy(tiny)
    model.act = nn.SiLU()
    return model.eval()


def softmax_of(c):
    return lambda out: out.softmax(dim=1)[:, c]


def test_matches_reference_on_a_smooth_net(smooth, images):
    exp = ShapleyCAM(smooth, "features")(images, targets=[0, 2, 4])
    grad = GradCAM(smooth, "features")(images, targets=[0, 2, 4])
    assert rel_err(exp.low_res, grad.low_res) > 1e-2  # the Hessian term matters here
    for b, cls in enumerate([0, 2, 4]):
        expected = cams17.shapleycam(smooth, smooth.features, images[b], lambda out, c=cls: out[:, c])
        assert expected.max() > 0
        assert rel_err(exp.low_res[b], expected) < 1e-4


def test_matches_reference_for_a_softmax_target(tiny, images):
    exp = ShapleyCAM(tiny, "act")(images, targets=softmax_of(3))
    for b in range(3):
        expected = cams17.shapleycam(tiny, tiny.act, images[b], softmax_of(3))
        assert expected.max() > 0
        assert rel_err(exp.low_res[b], expected) < 1e-4


def test_equals_gradcam_when_the_score_is_piecewise_linear(tiny, images):
    ours = ShapleyCAM(tiny, "act")(images, targets=[0, 1, 2])
    grad = GradCAM(tiny, "act")(images, targets=[0, 1, 2])
    assert ours.low_res.amax() > 0
    assert rel_err(ours.low_res, grad.low_res) < 1e-6


def test_agrees_with_pytorch_grad_cam(smooth, images):
    pgc = pytest.importorskip("pytorch_grad_cam")
    if not hasattr(pgc, "ShapleyCAM"):
        pytest.skip("this pytorch-grad-cam has no ShapleyCAM")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours = ShapleyCAM(smooth, "features")(images, targets=[0, 2, 4])
    with pgc.ShapleyCAM(model=smooth, target_layers=[smooth.features]) as cam:
        lib_targets = [ClassifierOutputTarget(c) for c in (0, 2, 4)]
        theirs = torch.from_numpy(np.asarray(cam(images, targets=lib_targets)))
    assert theirs.amax() > 0
    err = float((xcam.normalize(ours.maps) - theirs).abs().max())
    print("peer max abs diff (min-max normalized maps)", err)
    assert err < 1e-4
