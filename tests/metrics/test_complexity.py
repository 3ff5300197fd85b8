"""Sparseness (Gini) and complexity (entropy) of maps: hand values and Quantus's definitions."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import xcam
from xcam.metrics.complexity import complexity, sparseness


def _maps() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(4, 16, 16, generator=g)
    m[1] = m[1].abs() ** 4  # peaked
    m[2, 4:8, 4:8] += 5.0  # a bright square
    return m


def test_hand_values():
    one_hot = torch.zeros(1, 4, 4)
    one_hot[0, 1, 2] = -3.0
    flat = torch.full((1, 4, 4), 2.0)
    assert float(sparseness(flat)) == pytest.approx(0.0, abs=1e-6)
    # Gini of one nonzero pixel among N: (N - 1) / N
    assert float(sparseness(one_hot)) == pytest.approx(15 / 16, abs=1e-5)
    assert float(complexity(flat)) == pytest.approx(math.log(16), rel=1e-6)
    assert float(complexity(one_hot)) == pytest.approx(0.0, abs=1e-6)
    # scale and sign do not change either score
    m = _maps()
    assert torch.allclose(sparseness(-3 * m), sparseness(m), rtol=1e-5)
    assert torch.allclose(complexity(7 * m), complexity(m), rtol=1e-6)


def test_registered_with_metadata():
    for name, up in (("sparseness", True), ("complexity", False)):
        m = xcam.registry.METRICS.get(name)
        assert m.needs == frozenset({"maps"}) and m.scope == "image"
        assert m.higher_is_better is up and m.forward_passes(3) == 0


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 16 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("ours, theirs", [("sparseness", "Sparseness"),
                                          ("complexity", "Complexity")])
def test_equals_quantus(ours, theirs):
    quantus = pytest.importorskip("quantus")
    m = _maps()
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    # one sample per call: Quantus divides the whole batch by its largest value, so that a
    # sample's score would depend (through the 1e-7) on its batch mates; xcam scores each alone
    q = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(4):
            q += getattr(quantus, theirs)(disable_warnings=True)(
                model=_Tiny(), x_batch=x[i:i + 1].numpy(), y_batch=np.zeros(1, dtype=int),
                a_batch=m[i:i + 1, None].numpy().copy(), device="cpu")
    got = xcam.registry.METRICS.get(ours)(m)
    np.testing.assert_allclose(got.numpy(), np.asarray(q, dtype=np.float64), rtol=1e-5)
