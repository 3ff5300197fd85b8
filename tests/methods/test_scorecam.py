"""Score-CAM against a slow reference, pytorch-grad-cam and torch-cam."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from tests import reference as ref
from xcam.methods import ScoreCAM


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


def rho(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(spearmanr(a.flatten().numpy(), b.flatten().numpy())[0])


@pytest.mark.parametrize("kwargs", [{}, {"subtract_baseline": True}, {"channels": [0, 3, 5, 11]}])
def test_matches_reference(tiny, images, kwargs):
    exp = ScoreCAM(tiny, "features", batch_size=7, **kwargs)(images, targets=[0, 2, 4])
    for b, cls in enumerate([0, 2, 4]):
        expected = ref.scorecam(tiny, tiny.features, images[b], cls, kwargs.get("channels"),
                                kwargs.get("subtract_baseline", False))
        assert expected.max() > 0
        assert rel_err(exp.low_res[b], expected) < 1e-5


class Pinned(nn.Module):
    """Feature map 0 constant 0, map 1 constant 0.7: neither needs a pass of its own."""

    def forward(self, x):
        x = x.clone()
        x[:, 0] = 0.0
        x[:, 1] = 0.7
        return x


def test_constant_maps_share_one_pass(tiny, images):
    model = copy.deepcopy(tiny)
    model.features.append(Pinned())
    seen = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        exp = ScoreCAM(model, "features", batch_size=8)(images, targets=[1, 2, 3])
    finally:
        handle.remove()
    # clean pass (3) + one zero image + 14 varying maps of 3 images
    assert sum(seen) == 3 + 1 + 14 * 3
    for b, cls in enumerate([1, 2, 3]):
        expected = ref.scorecam(model, model.features, images[b], cls)
        assert rel_err(exp.low_res[b], expected) < 1e-5


def _log_prob(cls: int):
    return lambda out: torch.log_softmax(out, dim=-1)[..., cls]


def test_agrees_with_pytorch_grad_cam(resnet18, images):
    """With log-probability targets, their softmax over maps gives p_k / sum_j p_j: our map / const."""
    from pytorch_grad_cam import ScoreCAM as LibScoreCAM

    x, targets = images[:1], [3]
    ours = ScoreCAM(resnet18, "layer3")(x, targets=targets)
    with LibScoreCAM(model=resnet18, target_layers=[resnet18.layer3]) as cam:
        cam.batch_size = 64
        theirs = torch.from_numpy(np.asarray(cam(x, targets=[_log_prob(t) for t in targets])))
    assert rho(ours.maps[0], theirs[0]) > 0.99


def test_agrees_with_torchcam(resnet18, images):
    from torchcam.methods import ScoreCAM as TCScoreCAM

    x, targets = images[:1], [3]
    ours = ScoreCAM(resnet18, "layer3")(x, targets=targets)
    wrapped = nn.Sequential(resnet18, nn.LogSoftmax(dim=1)).eval()
    with TCScoreCAM(wrapped, target_layer="0.layer3", batch_size=64, input_shape=(3, 64, 64)) as ext:
        with torch.no_grad():
            scores = wrapped(x)
        theirs = ext(class_idx=targets, scores=scores)[0]
    assert rho(ours.low_res[0], theirs[0]) > 0.99


def test_cost(resnet18):
    assert ScoreCAM(resnet18, "layer3").forward_passes(2) == 2 * 257
    assert ScoreCAM(resnet18, "layer3", channels=[1, 2], subtract_baseline=True).forward_passes(1) == 4
