"""Smooth MPRT and efficient MPRT (Hedström et al., 2024): slow references and Quantus."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

import xcam
from tests.nets import TinyNet, randomize_bn
from tests.reference import mprt17 as ref
from xcam.errors import InputError
from xcam.metrics import mprt

pytestmark = pytest.mark.usefixtures("one_thread")

X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
TARGETS = [1, 3, 4]
LAYERS = ["features.0", "features.1", "features.4", "features.5", "fc"]  # forward order


@pytest.fixture
def model():
    torch.manual_seed(0)
    return randomize_bn(TinyNet(), 1).eval()


def gradcam(m):
    return xcam.GradCAM(m, "act")


def test_histogram_entropy_is_numpys_histogram_and_scipys_entropy():
    maps = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1)) ** 3
    maps[2] = 0.5  # constant: one bin, entropy 0
    got = mprt.histogram_entropy(maps, n_bins=37)
    want = [ref.entropy(m.double().numpy(), 37) for m in maps]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-12)
    assert float(got[2]) == 0 and float(got[0]) > 1


def test_layers_are_randomized_bottom_up(model):
    result = mprt.smooth_mprt(model, gradcam, X[:1], [1], n_samples=1, seed=0)
    assert list(result.layers) == LAYERS


def test_smooth_mprt_equals_the_slow_reference(model):
    got = mprt.smooth_mprt(model, gradcam, X, TARGETS, n_samples=3, noise_level=0.2, seed=7, batch_size=4)
    want = ref.smooth_mprt(gradcam, model, X, TARGETS, LAYERS, n_samples=3, noise_level=0.2, seed=7)
    assert got.spearman.shape == (3, len(LAYERS))
    assert np.allclose(got.spearman.numpy(), want, atol=1e-4, equal_nan=True)
    assert torch.equal(got.last, got.spearman[:, -1])
    # the noise matters: one copy (the clean input) gives other correlations
    plain = mprt.smooth_mprt(model, gradcam, X, TARGETS, n_samples=1, seed=7)
    assert float(torch.nan_to_num(plain.spearman - got.spearman).abs().max()) > 1e-3
    again = mprt.smooth_mprt(model, gradcam, X, TARGETS, n_samples=3, noise_level=0.2, seed=7, batch_size=4)
    assert torch.equal(again.spearman.nan_to_num(), got.spearman.nan_to_num())  # seeded


def test_efficient_mprt_equals_the_slow_reference(model):
    got = mprt.efficient_mprt(model, gradcam, X, TARGETS, seed=3)
    want = ref.efficient_mprt(gradcam, model, X, TARGETS, LAYERS, seed=3)
    assert np.allclose(got.numpy(), want, rtol=1e-4, equal_nan=True)
    assert np.isfinite(want).any()


def test_efficient_mprt_direction():
    """A model with structured weights (a bright square in its pixel weights, the stand-in for a
    trained one): its gradient map has a simple histogram, which re-initialization makes complex
    (rise > 0); a map blind to the weights (the squared input) does not change (rise 0)."""

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 16 * 16, 2)
            with torch.no_grad():
                self.fc.weight.zero_()
                self.fc.weight.view(2, 3, 16, 16)[0, :, 4:9, 4:9] = 1.0

        def forward(self, x):
            return self.fc(x.flatten(1))

    def gradient(m):
        def explain(x, targets):
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(m(x)[:, 0].sum(), x)
            return g.sum(1)
        return explain

    def blind(m):
        return lambda x, targets: (x ** 2).sum(1)

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    good = mprt.efficient_mprt(Linear(), gradient, x, [0, 0], seed=0)
    poor = mprt.efficient_mprt(Linear(), blind, x, [0, 0], seed=0)
    assert (good > 1).all() and torch.equal(poor, torch.zeros(2))


def _quantus_reset(module, seed):
    """Quantus' re-initialization: torch.manual_seed(its seed + 1), then reset_parameters()."""
    torch.manual_seed(43)
    module.reset_parameters()


def test_agree_with_quantus(model, monkeypatch):
    """Where the definitions match: Quantus' re-initialization (seed 42 + 1 before every reset) and
    its noise (numpy's global RNG, drawn anew for every model, where xcam reuses one seeded draw for
    all models) are put in place of xcam's seeded draws; then both metrics equal Quantus'
    SmoothMPRT (Saliency maps, 3 copies) and EfficientMPRT (Grad-CAM) sample by sample."""
    quantus = pytest.importorskip("quantus")
    monkeypatch.setattr(mprt, "reinitialize", _quantus_reset)
    x, y = X.numpy(), np.array(TARGETS)
    gen = torch.Generator().manual_seed(11)
    noise = torch.randn((2, *X.shape), generator=gen)
    draws = itertools.cycle(noise.double().numpy())  # Quantus draws anew for every model: the same
    monkeypatch.setattr(np.random, "randn", lambda *shape: next(draws))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantus.SmoothMPRT(nr_samples=3, noise_magnitude=0.1, seed=42, disable_warnings=True)(
            model=model, x_batch=x, y_batch=y, a_batch=None, explain_func=quantus.explain,
            explain_func_kwargs={"method": "Saliency"}, device="cpu")
    ours = mprt.smooth_mprt(model, "saliency", X, TARGETS, n_samples=3, noise_level=0.1, seed=11)
    theirs = np.array([q[name] for name in LAYERS]).T
    print("smooth MPRT vs Quantus, max abs diff:", float(np.abs(ours.spearman.numpy() - theirs).max()))
    assert np.allclose(ours.spearman.numpy(), theirs, atol=1e-4)

    def explain(model, inputs, targets, **kwargs):
        exp = xcam.GradCAM(model, "act")(torch.as_tensor(inputs), torch.as_tensor(targets))
        return exp.maps.numpy()[:, None]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qe = quantus.EfficientMPRT(seed=42, disable_warnings=True)(
            model=model, x_batch=x, y_batch=y, a_batch=None, explain_func=explain, device="cpu")
    ours_e = mprt.efficient_mprt(model, gradcam, X, TARGETS, seed=0).numpy()
    finite = np.isfinite(qe)
    print("efficient MPRT vs Quantus:", ours_e, qe)
    assert finite.any() and np.allclose(ours_e[finite], np.asarray(qe)[finite], rtol=1e-5)
    assert np.isnan(ours_e[~finite]).all()  # a constant trained map: entropy 0, Quantus inf


def test_bad_arguments_name_the_fix(model):
    with pytest.raises(InputError, match="n_samples"):
        mprt.smooth_mprt(model, gradcam, X, TARGETS, n_samples=0)
    with pytest.raises(ValueError, match="noise_level"):
        mprt.smooth_mprt(model, gradcam, X, TARGETS, noise_level=-1)
