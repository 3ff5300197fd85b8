"""ROAD (remove and debias): the imputation against SciPy-based peers, scores against a slow
reference, pytorch-grad-cam's ROAD and Quantus's ROAD, seeds and metadata."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import xcam
from tests.nets import TinyNet, randomize_bn
from tests.reference import metrics17 as ref
from xcam.metrics.road import noisy_linear_imputation, road, road_lerf, road_morf

SIDE = 16


def _removed(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    rem = torch.rand(n, SIDE, SIDE, generator=g) > 0.3  # scattered, 70 %
    rem[0] = False
    rem[0, 2:14, 1:12] = True  # one large hole touching nothing but its rim
    rem[-1, :, :] = False
    rem[-1, 0, :] = True  # a removed border row
    return rem


def _data(channels: int = 3):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, channels, SIDE, SIDE, generator=g)
    yy, xx = torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij")
    blob = torch.exp(-((yy - 6.0) ** 2 + (xx - 9.0) ** 2) / 18.0)
    maps = blob + 0.05 * torch.rand(3, SIDE, SIDE, generator=g)
    return x, maps


def _net(channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    net = TinyNet(n_classes=4)
    if channels != 3:
        net.features[0] = nn.Conv2d(channels, 8, 3, padding=1)
    return randomize_bn(net, 1).eval()


def test_imputation_equals_pytorch_grad_cam_and_quantus():
    pytest.importorskip("scipy")
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_nli

    x, _ = _data()
    rem = _removed(3)
    ours = noisy_linear_imputation(x, rem, noise=0.0)
    for i in range(3):
        theirs = NoisyLinearImputer(noise=0.0)(x[i], (~rem[i]).float())  # their mask: 1 = kept
        q = quantus_nli(x[i].double().numpy(), np.flatnonzero(rem[i].numpy()), noise=0.0)
        assert (ours[i] - theirs).abs().max() < 1e-4
        assert np.abs(ours[i].numpy() - q).max() < 1e-4
        assert torch.equal(ours[i][:, ~rem[i]], x[i][:, ~rem[i]])  # kept pixels untouched
    # not trivially the input: the imputed values moved
    assert (ours - x)[rem[:, None].expand_as(x)].abs().mean() > 0.05


def test_imputation_equals_the_dense_reference():
    x, _ = _data()
    rem = _removed(3)
    ours = noisy_linear_imputation(x, rem, noise=0.0).double()
    for i in range(3):
        want = ref.linear_imputation(x[i], rem[i])
        assert ((ours[i] - want).abs().max() / want.abs().max()) < 1e-4


@pytest.mark.parametrize("shape", [(37, 23), (3, 90)])
def test_multigrid_solve_equals_the_dense_reference(shape):
    """Several grids with odd sizes (37 x 23) and a thin image whose coarsest grid is too long to
    invert (3 x 90): the preconditioned CG still meets the exact solve; each image's result is
    the same alone or batched (up to rounding); float64 inputs or a tighter tol solve in float64."""
    from xcam.metrics.road import _prolong, _restrict

    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 2, *shape, generator=g)
    yy, xx = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    blob = -((yy - shape[0] / 3) ** 2 + (xx - shape[1] / 2) ** 2).float()
    rem = torch.stack([blob > blob.quantile(q) for q in (0.2, 0.5)]
                      + [torch.rand(*shape, generator=g) > 0.4])
    ours = noisy_linear_imputation(x, rem, noise=0.0)
    alone = torch.cat([noisy_linear_imputation(x[i:i + 1], rem[i:i + 1], noise=0.0)
                       for i in range(3)])
    assert (ours - alone).abs().max() < 1e-6  # converged systems are frozen: batch-independent
    precise = noisy_linear_imputation(x.double(), rem, noise=0.0, tol=1e-12)
    tight = noisy_linear_imputation(x, rem, noise=0.0, tol=1e-10)
    for i in range(3):
        want = ref.linear_imputation(x[i], rem[i])
        assert ((ours[i] - want).abs().max() / want.abs().max()) < 1e-5
        assert ((precise[i] - want).abs().max() / want.abs().max()) < 1e-9
        assert ((tight[i] - want).abs().max() / want.abs().max()) < 1e-6  # float32 output
    # the restriction is the transpose of the prolongation (the V-cycle is symmetric)
    c = torch.randn(2, 18, 11, dtype=torch.float64, generator=g)
    f = torch.randn(2, 37, 23, dtype=torch.float64, generator=g)
    mid = torch.empty(2, 18, 22, dtype=torch.float64)
    fine = torch.full((2, 37, 23), float("nan"), dtype=torch.float64)  # every value written
    coarse = torch.full((2, 18, 11), float("nan"), dtype=torch.float64)
    assert float((_prolong(c, fine, mid.clone()) * f).sum()) == pytest.approx(
        float((c * _restrict(f, coarse, mid.clone())).sum()), rel=1e-12)
    assert torch.allclose(fine[:, :36, :22], torch.nn.functional.interpolate(
        c[:, None], scale_factor=2, mode="bilinear", align_corners=False)[:, 0])
    assert not fine[:, 36:].any() and not fine[:, :, 22:].any()


def test_noise_is_seeded_and_independent_of_batch_size():
    x, maps = _data()
    rem = _removed(3)
    a = noisy_linear_imputation(x, rem, noise=0.1, seed=5)
    b = noisy_linear_imputation(x, rem, noise=0.1, seed=5)
    c = noisy_linear_imputation(x, rem, noise=0.1, seed=6)
    clean = noisy_linear_imputation(x, rem, noise=0.0)
    assert torch.equal(a, b) and not torch.equal(a, c)
    diff = (a - clean)[rem[:, None].expand_as(x)]
    assert 0.07 < float(diff.std()) < 0.13  # noise of std 0.1 on the removed pixels only
    assert torch.equal(a[~rem[:, None].expand_as(x)], x[~rem[:, None].expand_as(x)])
    net = _net()
    r1 = road_morf(net, x, maps, None, percentiles=[20, 60], seed=1, batch_size=1)
    r2 = road_morf(net, x, maps, None, percentiles=[20, 60], seed=1, batch_size=64)
    assert torch.equal(r1.curves, r2.curves)


@pytest.mark.parametrize("morf", [True, False])
def test_scores_equal_the_slow_reference(morf):
    x, maps = _data()
    net = _net()
    pct = [10, 45.5, 90]
    fn = road_morf if morf else road_lerf
    r = fn(net, x, maps, [0, 1, 2], percentiles=pct, noise=0.0)
    for i in range(3):
        want = torch.tensor(ref.road_curve(net, x[i], maps[i], i, pct, morf))
        assert ((r.curves[i].double() - want).abs() / want.abs()).max() < 1e-4
    trap = torch.trapezoid(r.curves.double(), torch.tensor(pct, dtype=torch.float64) / 100, dim=1)
    assert torch.allclose(r.auc.double(), trap, rtol=1e-6)
    assert torch.allclose(road(net, x, maps, [0, 1, 2], "morf" if morf else "lerf", pct,
                               noise=0.0).auc, r.auc)


@pytest.mark.parametrize("morf", [True, False])
def test_agrees_with_pytorch_grad_cam_road(morf):
    pytest.importorskip("scipy")
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    x, maps = _data()
    net = _net()
    targets = [0, 1, 2]
    cams = maps.numpy()
    # their percentile q keeps the q % of pixels below the q-th percentile: (100 - q) % removed
    for q in (25, 50, 75):
        remover = RemoveMostRelevantFirst if morf else RemoveLeastRelevantFirst
        theirs = PerturbationConfidenceMetric(remover(q, NoisyLinearImputer(noise=0.0)))(
            x, cams, [ClassifierOutputSoftmaxTarget(t) for t in targets], net)
        with torch.no_grad():
            clean = torch.softmax(net(x), 1)[torch.arange(3), targets].numpy()
        fn = road_morf if morf else road_lerf
        ours = fn(net, x, maps, targets, percentiles=[100 - q], noise=0.0).curves[:, 0]
        np.testing.assert_allclose(ours.numpy(), theirs + clean, atol=1e-5)


class _Texture(nn.Module):
    """Class 0 when a signed random texture's response is high, else class 1: imputation (a
    smoothing) flips the prediction of some images after some share of pixels is removed."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.w = nn.Parameter(torch.randn(1, 1, SIDE, SIDE, generator=g), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.w).flatten(1).sum(1)
        return torch.stack([s, torch.full_like(s, 1.0)], dim=1)


def test_agrees_with_quantus_road_accuracy():
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(0)
    net = _Texture().eval()
    x = torch.rand(6, 1, SIDE, SIDE, generator=g) * 2 + 0.3 * net.w.data
    maps = torch.rand(6, SIDE, SIDE, generator=g)
    with torch.no_grad():
        y = net(x).argmax(1)
    pct = [10, 30, 50, 70, 90]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = quantus.ROAD(percentages=pct, noise=0.0, disable_warnings=True)
        theirs = metric(model=net, x_batch=x.numpy(), y_batch=y.numpy(),
                        a_batch=maps[:, None].numpy().copy(), device="cpu")
    ours = road_morf(net, x, maps, y, percentiles=pct, noise=0.0, score="accuracy")
    assert ours.curves.mean(0).tolist() == pytest.approx([theirs[p] for p in pct], abs=1e-6)
    assert 0 < float(ours.curves.mean()) < 1  # the curve moves: not all kept or all lost


def test_metadata_and_bad_arguments():
    morf = xcam.registry.METRICS.get("road_morf")
    lerf = xcam.registry.METRICS.get("road_lerf")
    assert morf.higher_is_better is False and lerf.higher_is_better is True
    assert morf.curves and morf.stochastic and morf.needs == {"model", "inputs", "maps", "targets"}
    assert morf.forward_passes(2, percentiles=[10, 20, 30]) == 2 * 4
    x, maps = _data()
    net = _net()
    with pytest.raises(xcam.errors.InputError, match="percentiles"):
        road_morf(net, x, maps, None, percentiles=[10, 100])
    with pytest.raises(xcam.errors.InputError, match="order"):
        road(net, x, maps, None, order="middle")
    with pytest.raises(xcam.errors.InputError, match="every pixel"):
        noisy_linear_imputation(x, torch.ones(3, SIDE, SIDE, dtype=torch.bool))


@pytest.mark.parametrize("targets", [[0, 1, 7], torch.tensor([0, 9, 1])])
def test_given_classes_skip_the_clean_pass_and_are_range_checked(targets):
    """Classes given: no clean pass (forward_passes says so), and an out-of-range class is
    still refused, naming the class, once the first imputed batch shows the class count."""
    x, maps = _data()
    net = _net()
    seen: list[int] = []
    handle = net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    try:
        road_morf(net, x, maps, [0, 1, 2], percentiles=[20, 60], noise=0.0)
        assert seen == [6]  # 3 images x 2 percentiles in one batch; no clean pass
        morf = xcam.registry.METRICS.get("road_morf")
        assert morf.forward_passes(3, targets=[0, 1, 2], percentiles=[20, 60]) == 6
        seen.clear()
        road_morf(net, x, maps, None, percentiles=[20, 60], noise=0.0)
        assert seen == [3, 6]  # the top class needs the clean pass
        bad = max(int(t) for t in targets)
        with pytest.raises(xcam.errors.TargetError, match=f"class {bad} is out of range"):
            road_morf(net, x, maps, targets, percentiles=[20, 60], noise=0.0)
    finally:
        handle.remove()
