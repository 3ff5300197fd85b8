"""Sanity checks and the map comparisons they use: SSIM and Spearman against scikit-image and
scipy, known answers for explainers that ignore (or follow) the model and the class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import xcam
from xcam.explanation import Explanation
from xcam.metrics import (
    cascade_layers,
    max_sensitivity,
    model_parameter_randomization,
    random_logit,
    spearman,
    ssim,
)

# ----------------------------------------------------------------------------- SSIM, Spearman


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 30, 27, generator=gen, dtype=torch.float64)
    b = (a + 0.3 * torch.rand(3, 30, 27, generator=gen, dtype=torch.float64)) ** 2
    got = ssim(a, b)
    for i in range(3):
        na = (a[i] - a[i].min()) / (a[i].max() - a[i].min())
        nb = (b[i] - b[i].min()) / (b[i].max() - b[i].min())
        ref = metrics.structural_similarity(
            na.numpy(), nb.numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False)
        assert got[i].item() == pytest.approx(ref, abs=1e-6)
    assert ssim(a, a).tolist() == pytest.approx([1.0] * 3, abs=1e-6)
    # min-max first: a positive rescaling changes nothing
    torch.testing.assert_close(ssim(a, 5 * b + 2), got)


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 5, (4, 9, 7), generator=gen).float()
    b = torch.randint(0, 7, (4, 9, 7), generator=gen).float() + a
    got = spearman(a, b)
    for i in range(4):
        ref = stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert got[i].item() == pytest.approx(ref, abs=1e-6)
    assert torch.isnan(spearman(torch.ones(1, 4, 4), torch.rand(1, 4, 4))).all()


# ----------------------------------------------------------------------------- randomisation


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.head = nn.Linear(64, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.conv(x).flatten(1))


class ConvMap:
    """An 'explainer' whose map is the conv layer's output: it depends on the conv only."""

    def __init__(self, model: TwoLayer) -> None:
        self.model = model

    def __call__(self, x: Tensor, targets: object) -> Tensor:
        return self.model.conv(x)[:, 0]


def test_randomization_cascades_from_the_output_on_one_copy():
    torch.manual_seed(0)
    model = TwoLayer().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    built: list[TwoLayer] = []

    def factory(m: TwoLayer) -> ConvMap:
        built.append(m)
        return ConvMap(m)

    rng = torch.random.get_rng_state()
    res = model_parameter_randomization(model, factory, x, None, seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the caller's RNG is not reseeded
    assert res.layers == ("head", "conv")  # output side first
    # step 1 randomised the head only: the conv map has not moved
    assert res.spearman[:, 0].tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    assert res.ssim[:, 0].tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    # step 2 randomised the conv too: the map changed
    assert (res.ssim[:, 1] < 0.99).all() and (res.spearman[:, 1] < 0.99).all()
    # one copy, built once and randomised progressively; the caller's model is untouched
    assert len(built) == 1 and built[0] is not model
    for name, value in built[0].state_dict().items():
        assert not torch.equal(value, before[name]), name
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    again = model_parameter_randomization(model, factory, x, None, seed=0)
    assert torch.equal(again.ssim, res.ssim) and torch.equal(again.spearman, res.spearman)


def test_a_model_blind_explainer_fails_the_check():
    torch.manual_seed(0)
    model = TwoLayer().eval()
    x = torch.randn(2, 1, 8, 8)

    def edges(m: nn.Module):
        return lambda inputs, targets: inputs[:, 0].abs()

    res = model_parameter_randomization(model, edges, x, [0, 1], seed=3)
    assert torch.allclose(res.ssim, torch.ones(2, 2))
    assert torch.allclose(res.spearman, torch.ones(2, 2))


def test_randomization_with_a_registered_explainer(net, images):
    gradcam = xcam.create("gradcam", net, layer="conv2")
    res = model_parameter_randomization(net, gradcam, images, None, layers=["fc", "conv2"],
                                        seed=0)
    assert res.layers == ("fc", "conv2") and res.ssim.shape == (3, 2)
    by_name = model_parameter_randomization(net, "gradcam", images, None, layers=["fc", "conv2"],
                                            seed=0, explainer_kwargs={"layer": "conv2"})
    torch.testing.assert_close(by_name.ssim, res.ssim, equal_nan=True)
    # Grad-CAM depends on the head: randomising fc already moves the map
    assert (res.ssim[:, 0] < 0.95).all()
    assert cascade_layers(net) == ["fc", "conv2", "conv1"]
    n = model_parameter_randomization.forward_passes(3, model=net, layers=["fc", "conv2"],
                                                     explainer=gradcam)
    assert n == 3 + 3 * 3


# ----------------------------------------------------------------------------- random logit


class ClassBlob:
    """A map with a bright square whose position depends on the class (or not)."""

    def __init__(self, follows_class: bool) -> None:
        self.follows_class = follows_class
        self.seen: list[list[int]] = []

    def __call__(self, x: Tensor, targets: Tensor) -> Explanation:
        self.seen.append(targets.tolist())
        maps = torch.zeros(x.shape[0], 16, 16)
        for i, t in enumerate(targets.tolist()):
            k = t if self.follows_class else 0
            maps[i, 4 * k:4 * k + 4, 4 * k:4 * k + 4] = 1.0
        return Explanation(maps, None, targets, torch.zeros(x.shape[0]), None, "blob")


def test_random_logit_known_answers():
    x = torch.zeros(3, 1, 16, 16)
    blind = ClassBlob(follows_class=False)
    assert random_logit(blind, x, [0, 1, 2], n_classes=4, seed=0).tolist() == pytest.approx(
        [1.0] * 3, abs=1e-6)
    sensitive = ClassBlob(follows_class=True)
    out = random_logit(sensitive, x, [0, 1, 2], n_classes=4, seed=0)
    assert (out < 0.7).all() and out.mean() < 0.3  # the blob moved with the class
    # the other class is never the target; with 2 classes it is the only other one
    two = ClassBlob(follows_class=True)
    random_logit(two, x, [0, 1, 0], n_classes=2, seed=5)
    assert two.seen == [[0, 1, 0], [1, 0, 1]]
    # seeded draws; precomputed maps save the target explanation
    a, b = ClassBlob(True), ClassBlob(True)
    random_logit(a, x, [0, 1, 2], 4, seed=9)
    random_logit(b, x, [0, 1, 2], 4, seed=9, maps=torch.zeros(3, 16, 16))
    assert a.seen[1] == b.seen[0] and len(b.seen) == 1


# ----------------------------------------------------------------------------- max-sensitivity


def test_max_sensitivity_known_answers(images):
    const = lambda x, t: torch.ones(x.shape[0], 32, 32)  # noqa: E731
    assert max_sensitivity(const, images, [0, 1, 2], seed=0).tolist() == [0.0, 0.0, 0.0]
    # E(x) = sum_c x_c moves by sum_c d_c, |d| <= r: the ratio is bounded by 3 r sqrt(N)/||E(x)||
    channel_sum = lambda x, t: x.sum(1)  # noqa: E731
    r = 0.05
    got = max_sensitivity(channel_sum, images, [0, 1, 2], radius=r, n_perturb_samples=5, seed=0)
    bound = 3 * r * 32 / images.sum(1).flatten(1).norm(dim=1)
    assert (got > 0).all() and (got <= bound).all()
    again = max_sensitivity(channel_sum, images, [0, 1, 2], radius=r, n_perturb_samples=5, seed=0)
    assert torch.equal(got, again)


def test_max_sensitivity_runs_gradient_explainers_and_counts_them(net, images):
    gradcam = xcam.create("gradcam", net, layer="conv2")
    calls: list[int] = []

    def counted(x: Tensor, t: object) -> Explanation:
        calls.append(x.shape[0])
        return gradcam(x, t)

    out = max_sensitivity(counted, images, None, n_perturb_samples=4, batch_size=8, seed=0)
    assert out.shape == (3,) and torch.isfinite(out).all() and (out > 0).all()
    assert sum(calls) == max_sensitivity.forward_passes(3, n_perturb_samples=4, batch_size=8)
    assert np.max(calls) <= 8
