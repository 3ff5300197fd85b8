"""Opti-CAM: the Adam loop against the plain reference; the optimization raises the score."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.nets import TinyNet, randomize_bn
from tests.reference import perturbation17 as ref17
from xcam.methods.opticam import OptiCAM, minmax


def _net() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    randomize_bn(model, 1)
    return model.eval()


X = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(5))


def _run(explainer, x, targets=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer(x, targets)


def test_opticam_equals_the_plain_loop():
    model = _net()
    exp = _run(OptiCAM(model, "features.2", steps=8, lr=0.1), X, targets=[1, 3])
    for b, cls in enumerate([1, 3]):
        want = ref17.opticam(model, model.features[2], X[b], cls, steps=8, lr=0.1)
        rel = float((exp.maps[b] - want).abs().max() / want.abs().max())
        assert rel < 1e-4, rel
    assert exp.maps.min() >= 0 and float(exp.maps.amax()) == pytest.approx(1.0)


def test_optimization_raises_the_masked_score_above_the_uniform_start():
    model = _net()
    start = _run(OptiCAM(model, "features.2", steps=1, lr=0.0), X, targets=[1, 3])  # u stays 0
    tuned = _run(OptiCAM(model, "features.2", steps=15, lr=0.2), X, targets=[1, 3])
    with torch.no_grad():
        s0 = model(X * start.maps[:, None]).gather(1, torch.tensor([[1], [3]]))[:, 0]
        s1 = model(X * tuned.maps[:, None]).gather(1, torch.tensor([[1], [3]]))[:, 0]
    assert (s1 > s0).all(), (s0, s1)


def test_batch_equals_samples_and_seeded_start_is_reproducible():
    model = _net()
    batch = _run(OptiCAM(model, "features.2", steps=5, init_std=0.5, seed=2), X[:1])
    again = _run(OptiCAM(model, "features.2", steps=5, init_std=0.5, seed=2), X[:1])
    other = _run(OptiCAM(model, "features.2", steps=5, init_std=0.5, seed=3), X[:1])
    assert torch.equal(batch.maps, again.maps) and not torch.equal(batch.maps, other.maps)
    both = _run(OptiCAM(model, "features.2", steps=5), X, targets=[1, 3])
    one = _run(OptiCAM(model, "features.2", steps=5), X[1:], targets=3)
    assert torch.allclose(both.maps[1], one.maps[0], atol=1e-5)


def test_minmax_of_a_constant_map_is_zero():
    assert torch.equal(minmax(torch.ones(1, 3, 3)), torch.zeros(1, 3, 3))
