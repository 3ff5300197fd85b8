"""Ablation-CAM against a slow reference and pytorch-grad-cam's AblationCAM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.reference import cams17
from xcam.methods import AblationCAM


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("layer", ["features", "act"])
def test_matches_reference(tiny, images, layer):
    # batch_size=5 mixes samples and channels in one pass; 16 maps x 3 images = 48 pairs
    exp = AblationCAM(tiny, layer, batch_size=5)(images, targets=[0, 2, 4])
    module = dict(tiny.named_modules())[layer]
    for b, cls in enumerate([0, 2, 4]):
        expected = cams17.ablationcam(tiny, module, images[b], cls)
        assert expected.max() > 0
        assert rel_err(exp.low_res[b], expected) < 1e-4


def test_channels_restrict_the_sum(tiny, images):
    full = AblationCAM(tiny, "act", batch_size=64)(images[:1], targets=0)
    part = AblationCAM(tiny, "act", channels=[1, 4, 9])(images[:1], targets=0)
    # the restricted map is the ReLU of a partial sum, not the full one
    assert not torch.allclose(full.low_res, part.low_res)
    x = images[:1]
    with torch.no_grad():
        feats = tiny.act(tiny.features(x))
    y = float(tiny(x).detach()[0, 0])
    expected = torch.zeros(feats.shape[2:], dtype=torch.float64)
    for k in (1, 4, 9):
        abl = feats.clone()
        abl[0, k] = 0
        with torch.no_grad():
            yk = float(tiny.fc(abl.mean(dim=(2, 3)))[0, 0])
        expected += (y - yk) / y * feats[0, k].double()
    assert rel_err(part.low_res[0], expected.clamp(min=0)) < 1e-4


def test_agrees_with_pytorch_grad_cam(tiny, images):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours = AblationCAM(tiny, "act", batch_size=8)(images, targets=[0, 2, 4])
    # after the ReLU the layer's minimum is 0: pytorch-grad-cam zeroes the map, as the paper does
    with pgc.AblationCAM(tiny, [tiny.act], batch_size=8) as peer:
        peer_weights = peer.get_cam_weights(
            images, tiny.act, [ClassifierOutputTarget(c) for c in (0, 2, 4)],
            tiny.act(tiny.features(images)).detach(), None)
    feats = tiny.act(tiny.features(images)).detach()
    peer_maps = torch.relu(torch.einsum("bc,bchw->bhw", torch.from_numpy(np.asarray(peer_weights)), feats))
    assert peer_maps.amax() > 0
    err = rel_err(ours.low_res, peer_maps)
    print("peer rel err", err)
    assert err < 1e-4, err
