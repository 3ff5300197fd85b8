"""torchvision segmentation models with no `layer`: the backbone's last feature map, never the logits."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models import segmentation as seg

import xcam
from xcam.targets import segmentation


@pytest.mark.parametrize("builder, expected", [
    (seg.fcn_resnet50, "backbone.layer4"),
    (seg.deeplabv3_mobilenet_v3_large, "backbone"),
    (seg.lraspp_mobilenet_v3_large, "backbone"),
])
def test_automatic_layer_is_the_backbones_last_map(builder, expected, one_thread):
    torch.manual_seed(0)
    model = builder(weights=None, weights_backbone=None, num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[8:40, 16:48] = True
    with pytest.warns(UserWarning, match="layer=None: using"):
        exp = xcam.GradCAM(model)(x, targets=segmentation(1, mask))
    with torch.no_grad():
        feats = model.backbone(x)
    last = feats["out"] if "out" in feats else feats["high"]
    # the chosen layer is the backbone's last map (same numbers), not the (B, 3, 64, 64) logits
    assert exp.layer.startswith(expected) and exp.layer != "classifier"
    with xcam.capture(model, exp.layer) as cap:
        model(x)
    assert torch.equal(cap[exp.layer], last)
    assert exp.low_res.shape[-2:] == last.shape[-2:] and exp.low_res.shape[-1] < 64
    assert exp.maps.shape == (1, 64, 64) and torch.isfinite(exp.maps).all()
    assert float(exp.maps.std()) > 0


def test_backbone_maps_of_a_detector_are_not_its_outputs(one_thread):
    # the rule "inside the backbone" also serves detectors, whose outputs are lists of dicts
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64).eval()
    tap = xcam.autolayer.live_map_layer(model, torch.rand(1, 3, 64, 64))
    assert tap.name.startswith("backbone")
