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


class _Counter:
    """Batch sizes seen by a module, through a forward pre-hook."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.sizes: list[int] = []
        self.handle = module.register_forward_pre_hook(lambda m, a: self.sizes.append(int(a[0].shape[0])))


def test_layers_before_the_explained_one_run_on_one_copy(tiny, images):
    """The ablated copies of an image share everything before the layer: it runs once per pass."""
    counter = _Counter(tiny.features)
    try:
        exp = AblationCAM(tiny, "act", batch_size=5)(images, targets=[0, 2, 4])
    finally:
        counter.handle.remove()
    # the clean pass (3 images), then per image its own pass and its ablated passes on one copy
    assert counter.sizes[0] == 3 and set(counter.sizes[1:]) == {1}
    module = dict(tiny.named_modules())["act"]
    for b, cls in enumerate([0, 2, 4]):
        assert rel_err(exp.low_res[b], cams17.ablationcam(tiny, module, images[b], cls)) < 1e-4


class _SkipNet(torch.nn.Module):
    """A skip connection concatenated after the explained layer: one copy cannot broadcast there."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        y = torch.cat([s, self.body(s)], dim=1)  # batch sizes must match
        return self.head(y.mean(dim=(2, 3)))


def test_a_model_that_cannot_broadcast_runs_the_copies_in_full(images):
    torch.manual_seed(0)
    net = _SkipNet().eval()
    counter = _Counter(net.stem)
    try:
        exp = AblationCAM(net, "body", batch_size=4)(images, targets=[0, 1, 2])
    finally:
        counter.handle.remove()
    assert max(counter.sizes[2:]) == 4  # fell back to full copies
    for b, cls in enumerate([0, 1, 2]):
        expected = cams17.ablationcam(net, net.body, images[b], cls)
        assert expected.abs().max() > 0
        assert rel_err(exp.low_res[b], expected) < 1e-4
