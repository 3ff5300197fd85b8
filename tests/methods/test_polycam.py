"""Poly-CAM: the recursion against the one-layer-at-a-time reference; default layers."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from tests.nets import TinyNet, randomize_bn
from tests.reference import perturbation17 as ref17
from xcam.errors import InputError
from xcam.methods.gradcam import GradCAM
from xcam.methods.polycam import PolyCAM


def _run(explainer, x, targets=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer(x, targets)


def _resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=6)
    randomize_bn(model, 2)
    return model.eval()


def test_polycam_equals_the_reference_on_resnet_stages():
    model = _resnet()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    explainer = PolyCAM(model)
    assert explainer.params()["layers"] == ["layer1", "layer2", "layer3", "layer4"]
    exp = _run(explainer, x, targets=[2, 3])
    assert exp.low_res.shape == (2, 16, 16)  # layer1's resolution, not layer4's 2 x 2
    modules = [(model.layer1, False), (model.layer2, False), (model.layer3, False), (model.layer4, False)]
    for b, cls in enumerate([2, 3]):
        want = ref17.polycam(model, modules, x[b], cls)
        rel = float((exp.maps[b].double() - want).abs().max() / want.abs().max())
        assert rel < 1e-4, rel


def test_one_layer_is_gradcam_and_default_layers_on_a_plain_cnn():
    torch.manual_seed(0)
    model = TinyNet()
    randomize_bn(model, 1)
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    one = _run(PolyCAM(model, layers=["act"]), x)
    assert torch.allclose(one.maps, _run(GradCAM(model, "act"), x).maps, rtol=1e-5, atol=1e-6)
    auto = PolyCAM(model)
    exp = _run(auto, x)
    layers = auto.params()["layers"]
    assert layers == ["features.2", "pool:input"] and exp.low_res.shape == (2, 32, 32)
    modules = [(model.features[2], False), (model.pool, True)]
    for b in range(2):
        want = ref17.polycam(model, modules, x[b], int(exp.targets[b]))
        assert float(want.abs().max()) > 0
        assert float((exp.maps[b].double() - want).abs().max() / want.abs().max()) < 1e-4


def test_bad_layers_name_the_fix():
    with pytest.raises(InputError, match="layers"):
        PolyCAM(TinyNet(), layers=[])
    with pytest.raises(TypeError, match="layers"):
        PolyCAM(TinyNet(), layers="act")
