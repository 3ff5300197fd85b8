"""RISE: the mask generator, eq. 6 against the one-mask-at-a-time reference, seeds, batches."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.nets import TinyNet, randomize_bn
from tests.reference import perturbation17 as ref17
from xcam.errors import InputError
from xcam.methods.rise import RISE, rise_cells, rise_grids, rise_masks


def _net() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    randomize_bn(model, 1)
    return model.eval()


X = torch.randn(2, 3, 24, 20, generator=torch.Generator().manual_seed(3))


def _run(explainer, x, targets=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer(x, targets)


def test_masks_equal_the_one_mask_reference_and_are_smooth():
    size, cell = (24, 20), rise_cells((24, 20), 6)
    grids, shifts = rise_grids(40, size, cell, 0.5, torch.Generator().manual_seed(0))
    masks = rise_masks(grids, shifts, size, cell)
    assert masks.shape == (40, 24, 20)
    for i in range(40):
        one = ref17.rise_mask(grids[i], (int(shifts[i, 0]), int(shifts[i, 1])), size, cell)
        assert torch.allclose(masks[i].double(), one, atol=1e-6)
    assert masks.min() >= 0 and masks.max() <= 1 + 1e-6
    assert ((masks > 0) & (masks < 1)).float().mean() > 0.3  # bilinear: smooth, not binary
    assert len({(int(a), int(b)) for a, b in shifts}) > 5  # random shifts
    assert abs(float(grids.mean()) - 0.5) < 0.15


def test_rise_equals_the_reference_with_the_same_masks():
    model = _net()
    explainer = RISE(model, n_masks=48, p=0.5, cell_size=6, batch_size=20, seed=7)
    exp = _run(explainer, X)
    masks = explainer.masks((24, 20))
    with torch.no_grad():
        top = model(X).argmax(1)
    assert torch.equal(exp.targets, top)
    for b in range(2):
        want = ref17.rise(model, X[b], int(top[b]), masks, 0.5)
        rel = float((exp.maps[b].double() - want).abs().max() / want.abs().max())
        assert rel < 1e-4, rel


def test_class_target_and_p_normalisation():
    model = _net()
    explainer = RISE(model, n_masks=30, p=0.3, cell_size=(8, 5), batch_size=7, seed=1)
    exp = _run(explainer, X, targets=[4, 0])
    masks = explainer.masks((24, 20))
    for b, cls in enumerate([4, 0]):
        want = ref17.rise(model, X[b], cls, masks, 0.3)
        assert float((exp.maps[b].double() - want).abs().max() / want.abs().max()) < 1e-4


def test_seeded_masks_are_bit_identical_and_batch_equals_samples():
    model = _net()
    a = _run(RISE(model, n_masks=32, cell_size=6, seed=3), X)
    b = _run(RISE(model, n_masks=32, cell_size=6, batch_size=5, seed=3), X)
    c = _run(RISE(model, n_masks=32, cell_size=6, seed=4), X)
    assert torch.allclose(a.maps, b.maps, rtol=1e-5, atol=1e-7)
    assert torch.equal(a.maps, _run(RISE(model, n_masks=32, cell_size=6, seed=3), X).maps)
    assert not torch.allclose(a.maps, c.maps)
    single = _run(RISE(model, n_masks=32, cell_size=6, seed=3), X[1:], targets=int(a.targets[1]))
    assert torch.allclose(single.maps[0], a.maps[1], rtol=1e-5, atol=1e-7)


def test_bad_arguments_name_the_fix():
    model = _net()
    with pytest.raises(InputError, match="p"):
        RISE(model, p=0.0)
    with pytest.raises(ValueError, match="n_masks"):
        RISE(model, n_masks=0)
    with pytest.raises(TypeError, match="cell_size"):
        RISE(model, cell_size="big")
