"""CAM, Grad-CAM, Grad-CAM++ and Smooth Grad-CAM++ against the papers' equations and the peers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import xcam
from tests import reference as ref
from xcam.errors import GradientModeError, HeadNotFoundError, InputError, InputTypeError, TargetError
from xcam.methods import CAM, GradCAM, GradCAMPlusPlus, SmoothGradCAMPlusPlus
from xcam.targets import channel, neuron


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer2.1.conv2"])
def test_gradcam_matches_reference(resnet18, images, layer):
    classes = [2, 6, 9]
    exp = GradCAM(resnet18, layer)(images, targets=classes)
    module = resnet18.get_submodule(layer)
    positive = 0
    for b, cls in enumerate(classes):
        expected = ref.gradcam(resnet18, module, images[b], cls)
        positive += int(expected.max() > 0)
        assert float((exp.low_res[b] - expected).abs().max()) <= 1e-5 * max(1.0, float(expected.max()))
    assert positive >= 2  # random weights: a class can have negative evidence everywhere
    assert exp.targets.tolist() == classes
    with torch.no_grad():
        assert torch.allclose(exp.scores, resnet18(images)[torch.arange(3), exp.targets], atol=1e-5)


@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_gradcampp_matches_reference(resnet18, images, layer):
    exp = GradCAMPlusPlus(resnet18, layer)(images, targets=2)
    module = resnet18.get_submodule(layer)
    for b in range(3):
        expected = ref.gradcampp(resnet18, module, images[b], 2)
        assert expected.max() > 0
        assert rel_err(exp.low_res[b], expected) < 1e-5


def test_cam_matches_reference_and_is_hw_gradcam(resnet18, images):
    cam = CAM(resnet18)(images)
    assert cam.layer == "avgpool:input"
    for b in range(3):
        expected = ref.cam(resnet18, resnet18.avgpool, resnet18.fc, images[b], int(cam.targets[b]))
        assert rel_err(cam.low_res[b], expected) < 1e-5
    grad = GradCAM(resnet18, "avgpool:input")(images, cam.targets)
    h, w = cam.low_res.shape[-2:]
    assert rel_err(cam.low_res, h * w * grad.low_res) < 1e-5
    # layer4 output is the same tensor as avgpool's input in a ResNet
    grad4 = GradCAM(resnet18, "layer4")(images, cam.targets)
    assert rel_err(grad4.low_res, grad.low_res) < 1e-6


def test_maps_are_bilinear_upsampling_of_low_res(resnet18, images):
    exp = GradCAM(resnet18, "layer3")(images)
    assert exp.maps.shape == (3, 64, 64) and exp.maps.dtype == torch.float32
    up = torch.nn.functional.interpolate(exp.low_res[:, None], size=(64, 64), mode="bilinear",
                                         align_corners=False)[:, 0]
    assert torch.equal(exp.maps, up)


def test_smooth_gradcampp_at_zero_noise_is_gradcampp(resnet18, images):
    pp = GradCAMPlusPlus(resnet18, "layer3")(images)
    sm = SmoothGradCAMPlusPlus(resnet18, "layer3", n_samples=3, noise_level=0.0, batch_size=4,
                               seed=0)(images)
    assert sm.targets.tolist() == pp.targets.tolist()
    assert rel_err(sm.low_res, pp.low_res) < 1e-4


def test_smooth_gradcampp_matches_reference(resnet18, images):
    n, level, seed = 4, 0.2, 11
    exp = SmoothGradCAMPlusPlus(resnet18, "layer3", n_samples=n, noise_level=level, batch_size=5,
                                seed=seed)(images, targets=[0, 3, 5])
    # Reference: the same noise draws (one (B,C,H,W) tensor per copy), one sample at a time.
    gen = torch.Generator().manual_seed(seed)
    noises = [torch.randn(images.shape, generator=gen) for _ in range(n)]
    module = resnet18.layer3
    for b, cls in enumerate([0, 3, 5]):
        x = images[b]
        sigma = level * float(x.max() - x.min())
        fs, gs = [], []
        for i in range(n):
            f, g = ref.features_and_grad(resnet18, module, x + noises[i][b] * sigma, cls)
            fs.append(f.double())
            gs.append(g.double())
        g1 = sum(gs) / n
        g2 = sum(g**2 for g in gs) / n
        g3 = sum(g**3 for g in gs) / n
        fm = sum(fs) / n
        clean, _ = ref.features_and_grad(resnet18, module, x, cls)
        denom = 2 * g2 + fm.sum((1, 2))[:, None, None] * g3
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1), 0)
        w = (alpha * g1.clamp(min=0)).sum((1, 2))
        expected = (w[:, None, None] * clean.double()).sum(0).clamp(min=0)
        assert expected.max() > 0
        assert rel_err(exp.low_res[b], expected) < 1e-4


def test_smooth_gradcampp_seeds(resnet18, images):
    make = lambda seed, bs=32: SmoothGradCAMPlusPlus(  # noqa: E731
        resnet18, "layer3", n_samples=4, batch_size=bs, seed=seed)
    a, b, c = make(5)(images), make(5)(images), make(6)(images)
    assert torch.equal(a.maps, b.maps)
    assert not torch.allclose(a.maps, c.maps)
    # the noise does not depend on how copies are grouped into passes
    d = make(5, bs=1)(images)
    assert rel_err(d.low_res, a.low_res) < 1e-4


def test_gradcam_matches_captum_layergradcam(resnet18, images):
    from captum.attr import LayerGradCam

    for layer in ("layer4", "layer3"):
        exp = GradCAM(resnet18, layer)(images, targets=[2, 5, 9])
        attr = LayerGradCam(resnet18, resnet18.get_submodule(layer)).attribute(
            images, target=[2, 5, 9], relu_attributions=True)
        assert rel_err(exp.low_res, attr[:, 0]) < 1e-4


class FlatNet(nn.Module):
    """No downsampling, so maps at the tapped layer are already at input resolution."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            self.fc.weight.mul_(scale)

    def forward(self, x):
        return self.fc(self.pool(self.body(x)).flatten(1))


def _gradcam_lib_map(cls, model, layer, x, targets):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with cls(model=model, target_layers=[layer]) as cam:
        return torch.from_numpy(np.asarray(cam(x, targets=[ClassifierOutputTarget(t) for t in targets])))


def test_gradcampp_matches_pytorch_grad_cam_when_gradients_are_large():
    from pytorch_grad_cam import GradCAMPlusPlus as LibPP

    model = FlatNet(scale=1e4).eval()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    ours = GradCAMPlusPlus(model, "body")(x, targets=[1, 3])
    assert bool((ours.maps.amax((1, 2)) > 1).all())  # raw maps, not min-max normalised
    theirs = _gradcam_lib_map(LibPP, model, model.body, x, [1, 3])
    assert float((xcam.normalize(ours.maps) - theirs).abs().max()) < 1e-4


def test_gradcampp_epsilon_matters_when_gradients_are_small():
    """pytorch-grad-cam's +1e-6 is not scale-invariant; xcam keeps the paper's form."""
    from pytorch_grad_cam import GradCAMPlusPlus as LibPP

    model = FlatNet(scale=0.002).eval()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    ours = GradCAMPlusPlus(model, "body")(x, targets=[1, 3])
    for b, cls in enumerate([1, 3]):
        assert rel_err(ours.low_res[b], ref.gradcampp(model, model.body, x[b], cls)) < 1e-5
    theirs = _gradcam_lib_map(LibPP, model, model.body, x, [1, 3])
    assert float((xcam.normalize(ours.maps) - theirs).abs().max()) > 0.1


def test_inplace_relu_after_layer_does_not_change_map(tiny, images):
    plain = copy.deepcopy(tiny)
    plain.act = nn.ReLU(inplace=False)
    for cls in (GradCAM, GradCAMPlusPlus):
        a = cls(tiny, "features")(images, targets=1)
        b = cls(plain, "features")(images, targets=1)
        assert torch.equal(a.maps, b.maps)
        assert (a.maps > 0).any()


def test_channels_restrict_the_sum(resnet18, images):
    full = GradCAM(resnet18, "layer3")(images, targets=3)
    one = GradCAM(resnet18, "layer3", channels=[7])(images, targets=3)
    with xcam.capture(resnet18, "layer3") as cap:
        out = resnet18(images)
        g = cap.gradients(out[:, 3])["layer3"]
    f = cap["layer3"].detach()
    expected = torch.relu(g[:, 7].mean((1, 2))[:, None, None] * f[:, 7])
    assert torch.allclose(one.low_res, expected, atol=1e-6)
    every = GradCAM(resnet18, "layer3", channels=list(range(256)))(images, targets=3)
    assert torch.allclose(every.low_res, full.low_res, atol=1e-6)
    with pytest.raises(InputError, match="out of range"):
        GradCAM(resnet18, "layer3", channels=[256])(images)
    cam_one = CAM(resnet18, channels=[5, 9])(images, targets=3)
    w = resnet18.fc.weight[3, [5, 9]].detach()
    with xcam.capture(resnet18, "layer4") as cap2, torch.no_grad():
        resnet18(images)
    exp_cam = torch.relu(torch.einsum("c,bchw->bhw", w, cap2["layer4"][:, [5, 9]]))
    assert torch.allclose(cam_one.low_res, exp_cam, atol=1e-5)


@pytest.mark.parametrize("cls", [GradCAM, GradCAMPlusPlus, SmoothGradCAMPlusPlus])
def test_unit_targets(resnet18, images, cls):
    kwargs = {"n_samples": 2, "noise_level": 0.0, "seed": 0} if cls is SmoothGradCAMPlusPlus else {}
    exp = cls(resnet18, "layer3", **kwargs)(images, targets=channel("layer4", 11))
    assert exp.targets is None
    with xcam.capture(resnet18, ["layer3", "layer4"]) as cap:
        resnet18(images)
        score = cap["layer4"][:, 11].sum((1, 2))
        g = cap.gradients(score, "layer3")["layer3"]
    assert torch.allclose(exp.scores, score.detach(), rtol=1e-5)
    f = cap["layer3"].detach()
    if cls is GradCAM:
        expected = torch.relu((g.mean((2, 3))[:, :, None, None] * f).sum(1))
        assert torch.allclose(exp.low_res, expected, atol=1e-5)
    else:
        pp = GradCAMPlusPlus(resnet18, "layer3")(images, targets=channel("layer4", 11))
        assert rel_err(exp.low_res, pp.low_res) < 1e-4
    # a neuron of the explained layer itself: only channel k carries gradient, at one pixel
    nexp = cls(resnet18, "layer3", **kwargs)(images, targets=neuron("layer3", 4, 1, 2))
    assert torch.allclose(nexp.scores, f[:, 4, 1, 2], rtol=1e-5)
    with pytest.raises(TargetError, match="runs before the explained layer"):
        cls(resnet18, "layer4", **kwargs)(images, targets=channel("layer3", 0))


def test_efficientnet_lite0_real_model():
    pytest.importorskip("efficientnet_lite_pytorch")
    from xcam.models import efficientnet_lite0

    model = efficientnet_lite0()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="_avg_pooling:input"):
        grad = GradCAM(model)(x)
    cam = CAM(model)(x, grad.targets)
    assert cam.layer == grad.layer == "_avg_pooling:input"
    assert rel_err(cam.low_res, 49 * grad.low_res) < 1e-4


def test_errors(resnet18, images):
    with pytest.raises(HeadNotFoundError, match="GradCAM"):
        CAM(torchvision.models.vgg11(num_classes=3))(torch.randn(1, 3, 32, 32))
    with pytest.raises(TargetError, match="CAM explains classes"):
        CAM(resnet18)(images, targets=lambda out: out[:, 0])
    with pytest.raises(InputTypeError, match="floating-point"):
        GradCAM(resnet18, "layer4")(images.to(torch.uint8))
    with pytest.raises(InputError, match=r"inputs\[None\]"):
        GradCAM(resnet18, "layer4")(images[0])
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        GradCAM(resnet18, "layer4")(bad)
    with pytest.raises(TargetError, match="out of range"):
        GradCAM(resnet18, "layer4")(images, targets=10)
    with pytest.raises(TargetError, match="3 entries|2 entries"):
        GradCAM(resnet18, "layer4")(images, targets=[1, 2])
    with torch.inference_mode():
        with pytest.raises(GradientModeError, match="inference_mode"):
            GradCAM(resnet18, "layer4")(images)
    with pytest.raises(InputTypeError, match="model"):
        GradCAM("resnet", "layer4")
    # CAM needs no gradients, so it runs under inference mode
    with torch.inference_mode():
        assert CAM(resnet18)(images).maps.shape == (3, 64, 64)
