"""Channels-last only where it works (issue 12, item 5).

The classic PyTorch CIFAR-10 tutorial net calls ``x.view(-1, 16 * 5 * 5)`` on a feature map, which
fails on channels-last batches. Every registered explainer must work with its defaults on it: the
explainers that default to channels-last on the CPU fall back to the plain layout (and remember it
per model); only an explicit ``channels_last=True`` may fail.
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xcam
from tests.nets import TinyNet
from xcam import _layout
from xcam.errors import InputError
from xcam.explanation import Detector
from xcam.registry import EXPLAINERS


class TutorialNet(nn.Module):
    """The CNN of PyTorch's "Training a classifier" tutorial (CIFAR-10), as published."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


SKIP = {
    "cam": "CAM needs a global-average-pool -> Linear head; the tutorial net flattens (HeadNotFoundError)",
    "lficam": "LFI-CAM explains its own LFICAMNet, not an arbitrary classifier",
}
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return TutorialNet().eval()


def _build(name: str, model: nn.Module, **kwargs):
    cls = EXPLAINERS.get(name)
    if "seed" in inspect.signature(cls).parameters:
        kwargs.setdefault("seed", 0)
    return xcam.create(name, model, **kwargs)


def _explain(explainer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer(X, targets=[3, 7]).maps


def test_the_tutorial_net_fails_in_channels_last():
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        _net()(X.contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("name", [n for n in xcam.list_explainers()
                                  if EXPLAINERS.get(n).model_type is not Detector])  # classifiers only
def test_every_explainer_works_with_its_defaults(name):
    if name in SKIP:
        pytest.skip(SKIP[name])
    if EXPLAINERS.get(name).model_type is not None:
        pytest.skip("explains its own kind of model (model_type), not the tutorial CNN")
    model = _net()
    maps = _explain(_build(name, model))
    assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all()
    if "channels_last" not in inspect.signature(EXPLAINERS.get(name)).parameters:
        return
    assert model in _layout._PLAIN_LAYOUT  # the fallback ran and is remembered
    # the fallback is the plain layout: the same maps, bit for bit, as channels_last=False
    assert torch.equal(maps, _explain(_build(name, _net(), channels_last=False)))
    with pytest.raises(InputError, match="channels_last=True"):
        _explain(_build(name, _net(), channels_last=True))


def test_incremental_occlusion_falls_back_too():
    plain = xcam.create("occlusion", _net(), window=8, stride=8, channels_last=False)(X, [3, 7]).maps
    with pytest.warns(UserWarning, match="plain layout"):
        fast = xcam.create("occlusion", _net(), window=8, stride=8, incremental=True)(X, [3, 7]).maps
    assert plain.abs().max() > 0
    assert torch.allclose(fast, plain, rtol=1e-5, atol=1e-6)  # incremental: exact up to rounding
    with pytest.raises(InputError, match="channels_last=True"):
        xcam.create("occlusion", _net(), window=8, incremental=True, channels_last=True)(X, 1)


def test_the_fallback_is_announced_once_per_model():
    model = _net()
    explainer = xcam.create("gradient", model)
    with pytest.warns(UserWarning, match="plain layout"):
        first = explainer(X, targets=1).maps
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second try, no second warning
        second = xcam.create("occlusion", model, window=8, stride=8)(X, targets=1)
    assert torch.equal(explainer(X, targets=1).maps, first)
    assert second.maps.abs().max() > 0


def test_a_model_that_works_in_channels_last_keeps_it(tiny, images):
    explainer = xcam.create("gradient", tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = explainer(images, targets=1).maps
    assert tiny not in _layout._PLAIN_LAYOUT
    plain = xcam.create("gradient", tiny, channels_last=False)(images, targets=1).maps
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-6)  # channels-last differs by rounding only


@pytest.mark.parametrize("name", ["deletion", "insertion", "average_drop", "road_morf"])
def test_metrics_run_their_perturbed_passes_in_channels_last_with_the_same_fallback(name):
    """The metrics' perturbed batches run channels-last on the CPU like the methods' (the same
    scores up to rounding); the tutorial net falls back to the plain layout with a warning."""
    metric = xcam.registry.METRICS.get(name)
    maps = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(1))
    kwargs = {"seed": 0} if "seed" in metric.parameters else {}
    layouts: list[bool] = []
    torch.manual_seed(0)
    tiny = TinyNet().eval()
    handle = tiny.features[0].register_forward_pre_hook(
        lambda _m, args: layouts.append(not args[0].is_contiguous()))
    try:
        fast = metric.per_image(metric(tiny, X, maps, [1, 2], **kwargs)).scores
    finally:
        handle.remove()
    assert True in layouts  # the perturbed batches ran channels-last
    torch.manual_seed(0)
    plain_tiny = TinyNet().eval()
    _layout._PLAIN_LAYOUT.add(plain_tiny)  # as if it had failed in channels-last: plain layout
    plain = metric.per_image(metric(plain_tiny, X, maps, [1, 2], **kwargs)).scores
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-6)  # rounding apart, the same scores
    model = _net()
    with pytest.warns(UserWarning, match="plain layout"):
        fallback = metric.per_image(metric(model, X, maps, [3, 7], **kwargs)).scores
    assert model in _layout._PLAIN_LAYOUT and torch.isfinite(fallback).all()
