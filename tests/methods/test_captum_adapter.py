"""The captum adapter returns captum's own numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GradientShap, IntegratedGradients, LayerGradCam, NoiseTunnel, Saliency

from xcam.errors import InputError, InputTypeError
from xcam.methods import (
    CaptumAttribution,
    CaptumGradientShap,
    CaptumIntegratedGradients,
    CaptumSaliency,
    GradCAM,
    InputGradient,
)
from xcam.targets import channel


def test_integrated_gradients_is_captums(resnet18, images):
    base = torch.full_like(images, 0.1)
    exp = CaptumIntegratedGradients(resnet18, n_steps=16, baselines=base)(images, targets=[1, 4, 7])
    theirs = IntegratedGradients(resnet18).attribute(images, baselines=base, target=[1, 4, 7], n_steps=16)
    assert torch.allclose(exp.maps, theirs.sum(1), rtol=1e-5, atol=1e-7)
    assert exp.method == "integrated_gradients" and exp.low_res is None
    # completeness: the map sums to S(x) - S(x') up to the quadrature error
    with torch.no_grad():
        gap = resnet18(images)[torch.arange(3), [1, 4, 7]] - resnet18(base)[torch.arange(3), [1, 4, 7]]
    assert torch.allclose(exp.maps.sum((1, 2)), gap, rtol=0.05, atol=0.05 * float(gap.abs().max()))


def test_saliency_is_captums_and_the_input_gradient(resnet18, images):
    exp = CaptumSaliency(resnet18)(images)
    theirs = Saliency(resnet18).attribute(images.clone().requires_grad_(True), target=exp.targets)
    assert torch.equal(exp.maps, theirs.sum(1))
    # xcam's input gradient runs channels-last on the CPU: equal up to float rounding
    ours = InputGradient(resnet18)(images).maps
    assert float((exp.maps - ours).abs().max()) < 1e-5 * float(ours.abs().max())
    assert torch.equal(exp.maps, InputGradient(resnet18, channels_last=False)(images).maps)


def test_gradient_shap_is_captums_and_reproducible(resnet18, images):
    exp = CaptumGradientShap(resnet18, n_samples=4, stdevs=0.1, seed=3)(images, targets=2)
    again = CaptumGradientShap(resnet18, n_samples=4, stdevs=0.1, seed=3)(images, targets=2)
    other = CaptumGradientShap(resnet18, n_samples=4, stdevs=0.1, seed=4)(images, targets=2)
    assert torch.equal(exp.maps, again.maps)
    assert not torch.allclose(exp.maps, other.maps)
    torch.manual_seed(3)
    np.random.seed(3)
    theirs = GradientShap(resnet18).attribute(images, baselines=torch.zeros_like(images[:1]), target=2,
                                              n_samples=4, stdevs=0.1)
    assert torch.allclose(exp.maps, theirs.sum(1), rtol=1e-5, atol=1e-7)


def test_seed_restores_the_global_rngs(resnet18, images):
    torch.manual_seed(11)
    np.random.seed(11)
    expected = (torch.rand(3), np.random.rand(3))
    torch.manual_seed(11)
    np.random.seed(11)
    CaptumGradientShap(resnet18, n_samples=2, seed=0)(images[:1])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])


def test_callable_and_unit_targets_become_the_forward_function(resnet18, tiny, images):
    diff = lambda out: out[:, 2] - out[:, 1]  # noqa: E731
    exp = CaptumIntegratedGradients(resnet18, n_steps=8)(images, targets=diff)
    theirs = IntegratedGradients(lambda x: diff(resnet18(x))).attribute(images, n_steps=8)
    assert exp.targets is None
    assert torch.allclose(exp.maps, theirs.sum(1), rtol=1e-5, atol=1e-7)
    unit = channel("features", 3)
    exp = CaptumSaliency(tiny, abs=False)(images, targets=unit)
    assert torch.allclose(exp.maps, InputGradient(tiny, reduction="sum")(images, targets=unit).maps,
                          rtol=1e-5, atol=1e-7)


def test_any_captum_class_including_layer_attributions(resnet18, images):
    nt = CaptumAttribution(resnet18, lambda f: NoiseTunnel(Saliency(f)), reduction="abs_sum", seed=0,
                           nt_type="smoothgrad", nt_samples=3, stdevs=0.2)
    assert torch.equal(nt(images, 5).maps, nt(images, 5).maps)
    # a layer attribution keeps its resolution as low_res: captum's Grad-CAM + ReLU is xcam's
    lgc = CaptumAttribution(resnet18, LayerGradCam, init_kwargs={"layer": resnet18.layer3},
                            relu_attributions=True)(images, targets=[0, 1, 2])
    ours = GradCAM(resnet18, "layer3")(images, targets=[0, 1, 2])
    assert lgc.low_res.shape == (3, 4, 4) and lgc.layer == "layer3"
    assert torch.allclose(lgc.low_res, ours.low_res, rtol=1e-4, atol=1e-6)
    assert torch.allclose(lgc.maps, ours.maps, rtol=1e-4, atol=1e-6)


def test_errors(resnet18):
    with pytest.raises(InputError, match="target is set by xcam"):
        CaptumAttribution(resnet18, Saliency, target=3)
    with pytest.raises(InputTypeError, match="attribution_cls"):
        CaptumAttribution(resnet18, "Saliency")
    with pytest.raises(InputError, match="reduction"):
        CaptumSaliency(resnet18, reduction="mean")
    with pytest.raises(InputTypeError, match="no .attribute"):
        CaptumAttribution(resnet18, lambda f: f)(torch.zeros(1, 3, 32, 32))
