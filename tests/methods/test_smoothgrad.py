"""SmoothGrad, its squared form, VarGrad, and the input gradient they wrap."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr

import xcam
from tests import reference as ref
from xcam.errors import InputError, InputTypeError
from xcam.methods import GradCAM, InputGradient, SmoothGrad, VarGrad
from xcam.targets import channel


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


def test_input_gradient_matches_reference_for_every_reduction(resnet18, images):
    grads = torch.stack([ref.input_gradient(resnet18, images[b], c) for b, c in enumerate([1, 4, 7])])
    expected = {"abs_sum": grads.abs().sum(1), "abs_max": grads.abs().amax(1), "sum": grads.sum(1)}
    for reduction, want in expected.items():
        exp = InputGradient(resnet18, reduction=reduction)(images, targets=[1, 4, 7])
        assert exp.low_res is None and exp.layer is None
        assert rel_err(exp.maps, want) < 1e-5


def test_input_gradient_of_a_unit(tiny, images):
    exp = InputGradient(tiny, reduction="sum")(images, targets=channel("features", 3))
    x = images.clone().requires_grad_(True)
    with torch.enable_grad(), xcam.capture(tiny, "features") as cap:
        tiny(x)
        (g,) = torch.autograd.grad(cap["features"][:, 3].sum(), x)
    assert exp.targets is None
    assert rel_err(exp.maps, g.sum(1)) < 1e-5


@pytest.mark.parametrize("reduction", ["abs_sum", "abs_max", "sum"])
def test_one_sample_without_noise_is_the_input_gradient(resnet18, images, reduction):
    plain = InputGradient(resnet18, reduction=reduction)(images)
    smooth = SmoothGrad(resnet18, n_samples=1, noise_level=0.0, reduction=reduction, seed=0)(images)
    assert smooth.targets.tolist() == plain.targets.tolist()
    assert torch.allclose(smooth.scores, plain.scores)
    assert rel_err(smooth.maps, plain.maps) < 1e-6


def test_one_sample_without_noise_is_the_wrapped_explainer(resnet18, images):
    gradcam = GradCAM(resnet18, "layer3")
    plain = gradcam(images, targets=[2, 0, 5])
    smooth = SmoothGrad(resnet18, gradcam, n_samples=1, noise_level=0.0, seed=0)(images, targets=[2, 0, 5])
    assert smooth.layer == "layer3"
    assert rel_err(smooth.low_res, plain.low_res) < 1e-6
    assert rel_err(smooth.maps, plain.maps) < 1e-6


def _reference(model, images, targets, n, level, seed, statistic, reduce):
    """Same noise draws (one (B, C, H, W) tensor per copy), one copy of one sample at a time."""
    gen = torch.Generator().manual_seed(seed)
    noises = [torch.randn(images.shape, generator=gen) for _ in range(n)]
    out = []
    for b, cls in enumerate(targets):
        x = images[b]
        sigma = level * float(x.max() - x.min())
        grads = torch.stack([ref.input_gradient(model, x + noises[i][b] * sigma, cls) for i in range(n)])
        if statistic == "mean":
            stat = grads.mean(0)
        elif statistic == "squared":
            stat = (grads**2).mean(0)
        else:
            stat = grads.var(0, unbiased=False)
        out.append(reduce(stat))
    return torch.stack(out)


@pytest.mark.parametrize("statistic", ["mean", "squared", "var"])
def test_matches_reference(resnet18, images, statistic):
    n, level, seed, targets = 5, 0.2, 3, [6, 1, 2]
    kwargs = dict(n_samples=n, noise_level=level, batch_size=4, seed=seed)  # 15 copies in 4 passes
    if statistic == "var":
        exp = VarGrad(resnet18, reduction="sum", **kwargs)(images, targets)
        reduce = lambda s: s.sum(0)  # noqa: E731
    else:
        exp = SmoothGrad(resnet18, squared=statistic == "squared", **kwargs)(images, targets)
        reduce = lambda s: s.abs().sum(0)  # noqa: E731
    expected = _reference(resnet18, images, targets, n, level, seed, statistic, reduce)
    assert expected.abs().max() > 0
    assert rel_err(exp.maps, expected) < 1e-4
    assert exp.method == ("vargrad" if statistic == "var" else "smoothgrad")


def _captum_map(model, x, nt_type, n, sigma, seed, signed):
    from captum.attr import NoiseTunnel, Saliency

    torch.manual_seed(seed)
    attr = NoiseTunnel(Saliency(model)).attribute(
        x, nt_type=nt_type, nt_samples=n, stdevs=sigma, target=3, abs=False)
    return attr.sum(1) if signed else attr.abs().sum(1)


def _rho(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(spearmanr(a.flatten().numpy(), b.flatten().numpy())[0])


@pytest.mark.parametrize("nt_type, squared, vargrad", [
    ("smoothgrad", False, False), ("smoothgrad_sq", True, False), ("vargrad", False, True)])
def test_agrees_with_captum_noise_tunnel(resnet18, images, nt_type, squared, vargrad):
    """Independent noise, same estimator: the maps agree in rank at 64 samples.

    captum's ``Saliency`` is called with ``abs=False`` so that, like xcam (and the SmoothGrad
    authors' code), the gradients are averaged before the absolute value is taken.
    """
    x, level, n = images[:1], 0.05, 64
    sigma = level * float(x.max() - x.min())
    ours = SmoothGrad(resnet18, n_samples=n, noise_level=level, squared=squared, vargrad=vargrad,
                      reduction="sum" if vargrad else "abs_sum", seed=0)(x, targets=3)
    theirs = _captum_map(resnet18, x, nt_type, n, sigma, seed=1, signed=vargrad)
    assert _rho(ours.maps, theirs) > 0.9


def test_agrees_with_captum_as_well_as_captum_agrees_with_itself(resnet18, images):
    """At the default noise level 64 samples leave visible noise: two captum runs with different
    seeds agree only to a rank correlation of about 0.82. xcam must agree with captum as well."""
    x, level, n = images[:1], 0.15, 64
    sigma = level * float(x.max() - x.min())
    ours = SmoothGrad(resnet18, n_samples=n, noise_level=level, seed=0)(x, targets=3)
    a = _captum_map(resnet18, x, "smoothgrad", n, sigma, seed=1, signed=False)
    b = _captum_map(resnet18, x, "smoothgrad", n, sigma, seed=2, signed=False)
    assert _rho(ours.maps, a) > _rho(a, b) - 0.05
    assert _rho(ours.maps, a) > 0.7


def test_seed_makes_calls_bit_identical(resnet18, images):
    for cls in (SmoothGrad, VarGrad):
        a = cls(resnet18, n_samples=3, seed=7)(images)
        b = cls(resnet18, n_samples=3, seed=7)(images)
        c = cls(resnet18, n_samples=3, seed=8)(images)
        assert torch.equal(a.maps, b.maps)
        assert not torch.allclose(a.maps, c.maps)
    # the noise does not depend on how the copies are grouped into passes
    d = SmoothGrad(resnet18, n_samples=3, seed=7, batch_size=2)(images)
    assert rel_err(d.maps, SmoothGrad(resnet18, n_samples=3, seed=7)(images).maps) < 1e-5


def test_noisy_copies_keep_the_clean_class(tiny, images):
    exp = SmoothGrad(tiny, n_samples=2, noise_level=2.0, seed=0)(images)
    with torch.no_grad():
        assert torch.equal(exp.targets, tiny(images).argmax(1))
    # the same as asking for those classes explicitly
    explicit = SmoothGrad(tiny, n_samples=2, noise_level=2.0, seed=0)(images, targets=exp.targets)
    assert torch.equal(exp.maps, explicit.maps)


def test_cost():
    model = torch.nn.Conv2d(3, 2, 1)
    assert SmoothGrad(model, n_samples=10).forward_passes(4) == 44
    assert SmoothGrad(model, GradCAM(model), n_samples=2).forward_passes(3) == 9


def test_errors_name_the_argument(tiny):
    other = GradCAM(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)))
    with pytest.raises(InputError, match="different model"):
        SmoothGrad(tiny, other)
    with pytest.raises(InputTypeError, match="explainer must be an xcam explainer"):
        SmoothGrad(tiny, lambda x: x)
    with pytest.raises(InputError, match="reduction='sum' applies to the default input gradient"):
        SmoothGrad(tiny, GradCAM(tiny), reduction="sum")
    with pytest.raises(InputError, match="exclude each other"):
        SmoothGrad(tiny, squared=True, vargrad=True)
    with pytest.raises(InputError, match="n_samples must be >= 1"):
        SmoothGrad(tiny, n_samples=0)
    with pytest.raises(InputError, match="noise_level"):
        SmoothGrad(tiny, noise_level=-0.1)
    with pytest.raises(InputError, match="reduction must be one of"):
        SmoothGrad(tiny, reduction="l2")
    with pytest.raises(InputTypeError, match="seed"):
        SmoothGrad(tiny, seed=1.5)
