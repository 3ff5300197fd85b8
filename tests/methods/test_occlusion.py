"""Occlusion against captum, a slow reference and its own identities."""

from __future__ import annotations

import copy

import pytest
import torch

import xcam
from tests import reference as ref
from xcam.errors import InputError, InputTypeError
from xcam.methods import Occlusion
from xcam.targets import channel


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


@pytest.mark.parametrize(
    "window, stride, batch_size, baseline",
    [
        ((16, 16), (8, 8), 64, 0.0),  # clean images ride in the first batch
        ((12, 20), (10, 7), 7, "tensor"),  # windows cropped at the border, samples mixed in batches
        ((16, 16), (16, 16), 2, 0.5),  # batch smaller than the batch: clean pass on its own
    ],
)
def test_matches_captum_occlusion(resnet18, images, window, stride, batch_size, baseline):
    from captum.attr import Occlusion as CaptumOcclusion

    if baseline == "tensor":
        baseline = torch.rand(images.shape, generator=torch.Generator().manual_seed(9))
    targets = [1, 4, 7]
    theirs = CaptumOcclusion(resnet18).attribute(
        images, sliding_window_shapes=(3, *window), strides=(3, *stride), baselines=baseline,
        target=targets, perturbations_per_eval=16)
    assert torch.equal(theirs[:, 0], theirs[:, 2])  # captum: every channel holds the same map
    # the same arithmetic as captum (NCHW batches): equal to 1e-5
    exact = Occlusion(resnet18, window, stride, baseline=baseline, batch_size=batch_size,
                      channels_last=False)(images, targets)
    assert exact.maps.abs().max() > 0
    assert rel_err(exact.maps, theirs[:, 0]) < 1e-5
    assert exact.targets.tolist() == targets
    with torch.no_grad():
        assert torch.allclose(exact.scores, resnet18(images)[torch.arange(3), exact.targets], atol=1e-5)
    # the default on the CPU runs channels-last batches (faster): the same up to float rounding
    fast = Occlusion(resnet18, window, stride, baseline=baseline, batch_size=batch_size)(images, targets)
    assert rel_err(fast.maps, theirs[:, 0]) < 1e-4


def test_view_in_the_model_falls_back_to_nchw(images):
    class Viewer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3)
            self.fc = torch.nn.Linear(2 * 62 * 62, 3)

        def forward(self, x):
            f = self.conv(x)
            return self.fc(f.view(f.shape[0], -1))

    model = Viewer()
    # issue 12: the automatic layout falls back to NCHW (with a warning), only an explicit
    # channels_last=True may fail
    with pytest.raises(InputError, match="channels_last=True"):
        Occlusion(model, 32, 32, channels_last=True)(images)
    plain = Occlusion(model, 32, 32, channels_last=False)(images).maps
    with pytest.warns(UserWarning, match="plain layout"):
        auto = Occlusion(model, 32, 32)(images).maps
    assert plain.shape == (3, 64, 64) and plain.abs().max() > 0
    assert torch.equal(auto, plain)


@pytest.mark.parametrize("window, stride", [((16, 16), (16, 16)), ((20, 12), (9, 12))])
def test_matches_slow_reference(tiny, images, window, stride):
    # float64: the tiny model's score drops are ~1e-3 of its scores, too close for float32
    model, x = copy.deepcopy(tiny).double(), images.double()
    exp = Occlusion(model, window, stride, baseline=-0.3, batch_size=5)(x, targets=[0, 2, 4])
    for b, cls in enumerate([0, 2, 4]):
        expected = ref.occlusion(model, x[b], cls, window, stride, -0.3)
        assert rel_err(exp.maps[b], expected) < 1e-5


def test_non_overlapping_windows_are_blocks_of_score_drops(tiny, images):
    """With stride = window every pixel lies in one window: the map is piecewise constant."""
    exp = Occlusion(tiny, 16, 16)(images[:1], targets=3)
    block = exp.maps[0].reshape(4, 16, 4, 16)
    assert torch.equal(block, block[:, :1, :, :1].expand_as(block))
    s0 = ref.score(tiny, images[0], 3)
    occluded = images[0].clone()
    occluded[:, 16:32, 48:64] = 0.0
    assert abs(float(block[1, 0, 3, 0]) - (s0 - ref.score(tiny, occluded, 3))) < 1e-5


def test_callable_and_unit_targets(tiny, images):
    occ = Occlusion(tiny, 16, 8, batch_size=10)
    by_class = occ(images, targets=2)
    by_callable = occ(images, targets=lambda out: out[:, 2])
    assert by_callable.targets is None
    assert rel_err(by_callable.maps, by_class.maps) < 1e-6
    # a unit's activation: the drop of the feature map's sum when a window is occluded
    unit = occ(images[:1], targets=channel("pool:input", 5))
    occluded = images[:1].clone()
    occluded[:, :, :16, :16] = 0
    sums = []
    for x in (images[:1], occluded):
        with torch.no_grad(), xcam.capture(tiny, "pool:input") as cap:
            tiny(x)
            sums.append(float(cap["pool:input"][0, 5].sum()))
    s0, s1 = sums
    assert abs(float(unit.maps[0, 0, 0]) - (s0 - s1)) < 1e-4 * max(1.0, abs(s0))


def test_window_larger_than_input_is_cropped(tiny, images):
    with pytest.warns(UserWarning, match="larger than the 64x64 input"):
        exp = Occlusion(tiny, 100, 16)(images[:1], targets=1)
    expected = ref.score(tiny, images[0], 1) - ref.score(tiny, torch.zeros_like(images[0]), 1)
    assert torch.allclose(exp.maps, torch.full_like(exp.maps, expected), atol=1e-5)


def test_stride_larger_than_window_leaves_gaps_at_zero(tiny, images):
    model, x = copy.deepcopy(tiny).double(), images.double()
    exp = Occlusion(model, 8, 16)(x[:1], targets=1)
    assert torch.equal(exp.maps[0, 8:16], torch.zeros(8, 64))
    expected = ref.occlusion(model, x[0], 1, (8, 8), (16, 16))
    assert rel_err(exp.maps[0], expected) < 1e-5


def test_cost_and_progress_bar(tiny, images, capsys):
    assert Occlusion(tiny, 32, 16).forward_passes(1) == 13 * 13 + 1
    assert Occlusion(tiny, (16, 8), 8).forward_passes(2, image_size=(64, 64)) == 2 * (7 * 8 + 1)
    Occlusion(tiny, 16, 8, batch_size=8, progress=True)(images[:1])
    assert "occlusion 64x64" in capsys.readouterr().err
    Occlusion(tiny, 16, 8, batch_size=8, progress=False)(images[:1])
    assert capsys.readouterr().err == ""


def test_errors_name_the_argument(tiny, images):
    with pytest.raises(InputTypeError, match="window"):
        Occlusion(tiny, window=(4, 4, 4))
    with pytest.raises(InputError, match="stride must be positive"):
        Occlusion(tiny, stride=0)
    with pytest.raises(InputTypeError, match="baseline"):
        Occlusion(tiny, baseline="mean")
    with pytest.raises(InputError, match="does not broadcast"):
        Occlusion(tiny, 16, 16, baseline=torch.zeros(2, 3, 64, 64))(images)
