"""Layer-CAM, XGrad-CAM, HiResCAM and Eigen-CAM against the equations and pytorch-grad-cam."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import xcam
from tests import reference as ref
from xcam.methods import EigenCAM, GradCAM, HiResCAM, LayerCAM, XGradCAM


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


def rho(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(spearmanr(a.flatten().numpy(), b.flatten().numpy())[0])


METHODS = {"layercam": (LayerCAM, ref.layercam), "xgradcam": (XGradCAM, ref.xgradcam),
           "hirescam": (HiResCAM, ref.hirescam)}


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("layer", ["layer3", "layer2"])
def test_matches_reference(resnet18, images, name, layer):
    cls, reference = METHODS[name]
    exp = cls(resnet18, layer)(images[:2], targets=[3, 8])
    module = resnet18.get_submodule(layer)
    for b, c in enumerate([3, 8]):
        expected = reference(resnet18, module, images[b], c)
        assert expected.max() > 0
        assert rel_err(exp.low_res[b], expected) < 1e-5
    assert exp.method == name and exp.layer == layer


@pytest.mark.parametrize("name, lib", [("layercam", "LayerCAM"), ("xgradcam", "XGradCAM"),
                                       ("hirescam", "HiResCAM")])
def test_matches_pytorch_grad_cam(resnet18, images, name, lib):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours = METHODS[name][0](resnet18, "layer3")(images, targets=[1, 4, 7])
    with getattr(pytorch_grad_cam, lib)(model=resnet18, target_layers=[resnet18.layer3]) as cam:
        lib_targets = [ClassifierOutputTarget(t) for t in [1, 4, 7]]
        theirs = torch.from_numpy(np.asarray(cam(images, targets=lib_targets)))
    for b in range(3):
        assert rho(ours.maps[b], theirs[b]) > 0.99
    # the same definition: after their min-max scaling the maps coincide
    assert float((xcam.normalize(ours.maps) - theirs).abs().max()) < 1e-3


def test_hirescam_on_a_gap_linear_head_sums_to_the_logit(resnet18, images):
    """Before the ReLU, HiResCAM at the pooled features is the logit minus the bias, split over space."""
    with xcam.capture(resnet18, "layer4") as cap:
        out = resnet18(images)
        grads = cap.gradients(out[:, 5])["layer4"]
    signed = (grads * cap["layer4"].detach()).sum(1)
    logits = out[:, 5].detach() - resnet18.fc.bias[5].detach()
    assert torch.allclose(signed.sum((1, 2)), logits, rtol=1e-4, atol=1e-5)
    assert torch.allclose(HiResCAM(resnet18, "layer4")(images, 5).low_res, signed.clamp(min=0), atol=1e-6)


def test_layercam_with_one_position_per_map_is_gradcam_on_positive_gradients(resnet18, images):
    """At a 1x1 layer, Grad-CAM's mean gradient is the gradient itself: the two coincide where it is > 0."""
    x = torch.nn.functional.interpolate(images, size=(32, 32))  # layer4 is 1x1
    lc = LayerCAM(resnet18, "layer4")(x, targets=2)
    with xcam.capture(resnet18, "layer4") as cap:
        out = resnet18(x)
        g = cap.gradients(out[:, 2])["layer4"]
    expected = torch.relu((torch.relu(g) * cap["layer4"].detach()).sum(1))
    assert torch.allclose(lc.low_res, expected, atol=1e-6)
    positive = GradCAM(resnet18, "layer4", channels=[int(k) for k in (g[0, :, 0, 0] > 0).nonzero()[:, 0]])
    assert torch.allclose(lc.low_res[:1], positive(x[:1], targets=2).low_res, rtol=1e-5, atol=1e-6)


def test_xgradcam_gives_dead_maps_weight_zero(images):
    """A feature map that is all zero gets weight 0, not 0/0 (pytorch-grad-cam: 0 / 1e-7)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[0].bias[0] = -1e3  # map 0 is dead after the ReLU
    exp = XGradCAM(model, "1")(images, targets=2)
    with torch.no_grad(), xcam.capture(model, "1") as cap:
        model(images)
    assert (cap["1"][:, 0] == 0).all() and exp.maps.max() > 0
    alive = XGradCAM(model, "1", channels=[1, 2, 3])(images, targets=2)
    assert torch.equal(exp.low_res, alive.low_res)
    for b in range(3):
        assert rel_err(exp.low_res[b], ref.xgradcam(model, model[1], images[b], 2)) < 1e-5


@pytest.mark.parametrize("layer", ["layer3", "layer2"])
def test_eigencam_matches_reference_and_pytorch_grad_cam(resnet18, images, layer):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    exp = EigenCAM(resnet18, layer)(images, targets=[0, 1, 2])
    module = resnet18.get_submodule(layer)
    with torch.no_grad(), xcam.capture(resnet18, layer) as cap:
        resnet18(images)
    theirs = torch.from_numpy(get_2d_projection(cap[layer].numpy()))
    channel_sum = cap[layer].sum(1)
    for b in range(3):
        assert rel_err(exp.low_res[b], ref.eigencam(resnet18, module, images[b])) < 1e-4
        # pytorch-grad-cam keeps LAPACK's sign; xcam's sign correlates with the channel sum
        sign = 1.0 if rho(theirs[b], channel_sum[b]) > 0 else -1.0
        assert rel_err(exp.low_res[b], (sign * theirs[b]).clamp(min=0)) < 1e-3
    # class-agnostic: other targets, the same map
    assert torch.equal(EigenCAM(resnet18, layer)(images, targets=[5, 5, 5]).maps, exp.maps)
