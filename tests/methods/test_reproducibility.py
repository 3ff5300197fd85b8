"""Every stochastic explainer of this package: the same seed, bit-identical maps; no seed, fresh noise."""

from __future__ import annotations

import pytest
import torch

import xcam

STOCHASTIC = ["smoothgrad", "vargrad", "random", "gradient_shap"]


@pytest.mark.parametrize("name", STOCHASTIC)
def test_seed_is_bit_reproducible_and_none_is_fresh(tiny, images, name):
    kwargs = {"n_samples": 2} if name != "random" else {}
    if name == "gradient_shap":
        kwargs["stdevs"] = 0.3
    assert not xcam.registry.EXPLAINERS.get(name).deterministic
    a = xcam.create(name, tiny, seed=123, **kwargs)(images)
    b = xcam.create(name, tiny, seed=123, **kwargs)(images)
    assert torch.equal(a.maps, b.maps)
    assert a.params["seed"] == 123
    unseeded = xcam.create(name, tiny, **kwargs)
    assert not torch.equal(unseeded(images).maps, unseeded(images).maps)
