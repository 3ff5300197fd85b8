"""Boundaries the docs state: each test sits exactly on the boundary, and checks both sides.

- MaxBoxAcc counts an IoU exactly equal to the level (``IoU >= d``).
- The Wilcoxon test switches from exact to asymptotic above n = 50, and from the permutation test
  to the asymptotic one above n = 13 (ties or zeros), as ``scipy.stats.wilcoxon``.
- The pointing game's centre baseline points at pixel ``(H // 2, W // 2)``, also on even sizes.
- SSIM's window shrinks to the largest odd size that fits a map smaller than 11 pixels.
- Bool targets are an error (explainers and metrics), not classes 0 and 1.

The MaxBoxAcc maps hold only 0 and 1 and use thresholds strictly between, so they hold whether the
map is thresholded with ``>`` or ``>=``; the centre baseline has a single maximum, so tie rules do
not matter.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats
from torch import Tensor, nn

import xcam
from tests.nets import TinyNet, randomize_bn
from xcam.errors import TargetError
from xcam.methods import ViTModel
from xcam.metrics import (
    average_drop,
    deletion,
    faithfulness_correlation,
    increase_in_confidence,
    infidelity,
    insertion,
    max_box_acc,
    max_sensitivity,
    model_parameter_randomization,
    pointing_game,
    pointing_game_baseline,
    random_logit,
    ssim,
)
from xcam.metrics.stats import wilcoxon
from xcam.registry import EXPLAINERS

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread


# ---------------------------------------------------------------- MaxBoxAcc: IoU == level counts

def _block(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> Tensor:
    m = torch.zeros(h, w)
    m[y0:y1, x0:x1] = 1.0
    return m


def test_max_box_acc_counts_an_iou_exactly_at_the_level():
    # sample 0: estimated box (0, 0, 4, 2), area 8, inside the ground truth (0, 0, 4, 4), area 16:
    # IoU = 8 / 16 = 0.5 exactly. Sample 1: (0, 0, 3, 3) in (0, 0, 4, 5): IoU = 9 / 20 < 0.5.
    maps = torch.stack([_block(8, 8, 0, 0, 4, 2), _block(8, 8, 0, 0, 3, 3)])
    boxes = [[(0, 0, 4, 4)], [(0, 0, 4, 5)]]
    res = max_box_acc(maps, boxes, thresholds=[0.25, 0.5, 0.75])
    assert res.iou[0].tolist() == [0.5] * 3
    assert res.iou[1].tolist() == pytest.approx([0.45] * 3)
    assert res.box_acc.tolist() == [[0.5, 0.5, 0.5]]
    assert res.value == 0.5
    # just above and just below the level
    assert max_box_acc(maps, boxes, [0.5], iou_thresholds=[0.45]).value == 1.0
    assert max_box_acc(maps, boxes, [0.5], iou_thresholds=[0.5 + 1e-12]).value == 0.0


def test_max_box_acc_v2_counts_each_level_exactly():
    # one row of 10 ground-truth pixels; estimated boxes of 3, 5 and 7 pixels inside it give
    # IoU 3/10, 5/10 and 7/10, exactly the V2 levels 0.3, 0.5 and 0.7 in float64
    gt = [[(0, 0, 10, 1)]] * 3
    maps = torch.stack([_block(4, 12, 0, 0, k, 1) for k in (3, 5, 7)])
    res = max_box_acc(maps, gt, thresholds=[0.5], v2=True)
    assert res.iou_thresholds == (0.3, 0.5, 0.7)
    assert res.box_acc[:, 0].tolist() == pytest.approx([1.0, 2 / 3, 1 / 3], abs=1e-7)
    assert res.value == pytest.approx((1 + 2 / 3 + 1 / 3) / 3, abs=1e-12)


# ---------------------------------------------------------------- Wilcoxon: the documented switch

def _distinct(n: int, seed: int) -> tuple[list[float], list[float]]:
    """n pairs with distinct nonzero |a - b| (no ties, no zeros) and mixed signs."""
    rng = np.random.default_rng(seed)
    mags = (np.arange(1, n + 1) + 0.25 * rng.random(n)) / 64
    signs = np.where(rng.random(n) < 0.62, 1.0, -1.0)
    b = rng.random(n)
    return (b + signs * mags).tolist(), b.tolist()


def _tied(n: int, seed: int) -> tuple[list[float], list[float]]:
    """n pairs with tied |a - b| and one zero difference."""
    rng = np.random.default_rng(seed)
    d = rng.integers(1, 4, n) * np.where(rng.random(n) < 0.6, 1.0, -1.0) / 8
    d[0] = 0.0
    b = rng.integers(0, 8, n) / 8
    return (b + d).tolist(), b.tolist()


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
@pytest.mark.parametrize("n, method", [(50, "exact"), (51, "asymptotic")])
def test_wilcoxon_exact_up_to_50_pairs_then_asymptotic(n, method, alternative):
    a, b = _distinct(n, seed=n)
    ours = wilcoxon(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64),
                    alternative=alternative)
    exact = scipy_stats.wilcoxon(a, b, alternative=alternative, method="exact").pvalue
    approx = scipy_stats.wilcoxon(a, b, alternative=alternative, method="asymptotic").pvalue
    assert abs(exact - approx) > 1e-4 * exact  # the two methods are distinguishable here
    assert ours.method == method
    want = exact if method == "exact" else approx
    assert ours.p_value == pytest.approx(float(want), rel=1e-9, abs=1e-15)
    assert ours.p_value == pytest.approx(float(scipy_stats.wilcoxon(
        a, b, alternative=alternative).pvalue), rel=1e-9, abs=1e-15)  # scipy's own "auto"


@pytest.mark.parametrize("n, method", [(13, "permutation"), (14, "asymptotic")])
def test_wilcoxon_permutation_up_to_13_pairs_with_ties(n, method):
    a, b = _tied(n, seed=100 + n)
    ours = wilcoxon(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    auto = scipy_stats.wilcoxon(a, b).pvalue
    approx = scipy_stats.wilcoxon(a, b, method="asymptotic").pvalue
    assert abs(auto - approx) > 1e-4 * auto or method == "asymptotic"
    assert ours.method == method
    assert ours.p_value == pytest.approx(float(auto), rel=1e-9, abs=1e-15)
    if method == "asymptotic":
        assert ours.p_value == pytest.approx(float(approx), rel=1e-9, abs=1e-15)


def test_wilcoxon_one_zero_at_50_pairs_leaves_the_exact_method():
    a, b = _distinct(50, seed=7)
    a[3] = b[3]  # one zero difference: scipy's "auto" then uses the normal approximation
    ours = wilcoxon(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    assert ours.method == "asymptotic"
    assert ours.p_value == pytest.approx(float(scipy_stats.wilcoxon(a, b).pvalue), rel=1e-9)


# ---------------------------------------------------------------- pointing game: centre baseline

@pytest.mark.parametrize("size, center", [((8, 8), (4, 4)), ((6, 10), (3, 5)), ((7, 9), (3, 4)),
                                          ((2, 2), (1, 1))])
def test_pointing_game_baseline_center_pixel_on_even_and_odd_sizes(size, center):
    h, w = size
    cy, cx = center
    # one box per pixel of the 3x3 neighbourhood of the centre: with tolerance 0 only the centre
    # pixel (H // 2, W // 2) hits
    boxes, want = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            y, x = cy + dy, cx + dx
            if 0 <= y < h and 0 <= x < w:
                boxes.append([(x, y, x + 1, y + 1)])
                want.append(1.0 if (dy, dx) == (0, 0) else 0.0)
    assert pointing_game_baseline(boxes, tolerance=0, size=size).tolist() == want
    masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    for i, [(x0, y0, x1, y1)] in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = True
    assert pointing_game_baseline(masks, tolerance=0).tolist() == want
    # the diagonal neighbour (up-left) is sqrt(2) away: a miss at tolerance 1, a hit at 1.5
    if cy >= 1 and cx >= 1:
        diag = [[(cx - 1, cy - 1, cx, cy)]]
        assert pointing_game_baseline(diag, tolerance=1, size=size).tolist() == [0.0]
        assert pointing_game_baseline(diag, tolerance=1.5, size=size).tolist() == [1.0]


def test_pointing_game_baseline_box_touching_the_center_from_above_left():
    # 8x8: the four middle pixels are rows/cols 3..4; the baseline points at (4, 4), so a box
    # ending at row 4 / col 4 (exclusive) touches the middle but misses at tolerance 0
    touching = [[(0, 0, 4, 4)], [(4, 4, 8, 8)], [(0, 4, 4, 8)], [(4, 0, 8, 4)]]
    assert pointing_game_baseline(touching, tolerance=0, size=(8, 8)).tolist() == \
        [0.0, 1.0, 0.0, 0.0]
    # and the same as scoring that single-maximum map with pointing_game
    peak = torch.zeros(4, 8, 8)
    peak[:, 4, 4] = 1.0
    assert pointing_game(peak, touching, tolerance=0).tolist() == [0.0, 1.0, 0.0, 0.0]


# ---------------------------------------------------------------- SSIM on maps smaller than 11

def _ssim_reference(a: np.ndarray, b: np.ndarray, k: int, sigma: float = 1.5) -> float:
    """SSIM from its definition: every valid k x k window, Gaussian weights, population moments."""
    t = np.arange(k) - (k - 1) / 2
    g = np.exp(-0.5 * (t / sigma) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for y in range(a.shape[0] - k + 1):
        for x in range(a.shape[1] - k + 1):
            pa, pb = a[y:y + k, x:x + k], b[y:y + k, x:x + k]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * pa * pa).sum() - ma**2, (w * pb * pb).sum() - mb**2
            cov = (w * pa * pb).sum() - ma * mb
            values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


@pytest.mark.parametrize("shape, window", [((8, 8), 7), ((5, 20), 5), ((10, 13), 9),
                                           ((11, 11), 11), ((14, 12), 11), ((3, 6), 3),
                                           ((2, 9), 1), ((12, 6), 5), ((9, 4), 3)])
def test_ssim_window_shrinks_to_the_largest_odd_size_that_fits(shape, window):
    gen = torch.Generator().manual_seed(sum(shape))
    a = torch.rand(2, *shape, generator=gen, dtype=torch.float64)
    b = (a + 0.5 * torch.rand(2, *shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(a, b)
    for i in range(2):
        na = ((a[i] - a[i].min()) / (a[i].max() - a[i].min())).numpy()
        nb = ((b[i] - b[i].min()) / (b[i].max() - b[i].min())).numpy()
        ref = _ssim_reference(na, nb, window)
        assert float(ours[i]) == pytest.approx(ref, abs=1e-5)
        if window > 1:  # the next smaller odd window gives a different value: the test can tell
            assert abs(ref - _ssim_reference(na, nb, window - 2)) > 1e-4


def test_ssim_reference_matches_scikit_image_at_full_size():
    from skimage.metrics import structural_similarity

    gen = torch.Generator().manual_seed(4)
    a, b = torch.rand(2, 13, 12, generator=gen, dtype=torch.float64)
    a[0, 0], a[0, 1], b[0, 0], b[0, 1] = 0.0, 1.0, 0.0, 1.0  # already min-max normalised
    ref = structural_similarity(a.numpy(), b.numpy(), data_range=1.0, gaussian_weights=True,
                                sigma=1.5, use_sample_covariance=False)
    assert _ssim_reference(a.numpy(), b.numpy(), 11) == pytest.approx(float(ref), abs=1e-9)


# ---------------------------------------------------------------- bool targets are an error

def _make(name: str) -> tuple[nn.Module, object]:
    if name == "lficam":
        import torchvision

        from xcam.lfi import LFICAMNet

        torch.manual_seed(0)
        backbone = torchvision.models.resnet18(num_classes=5)
        backbone.maxpool = nn.Identity()
        model: nn.Module = LFICAMNet(backbone, depth=1).eval()
    elif EXPLAINERS.get(name).model_type is ViTModel:
        from tests.nets import tiny_vit

        model = tiny_vit()  # the ViT-native explainers' model_type
    elif EXPLAINERS.get(name).model_type is not None:  # a detector explainer (model_type flag)
        from tests.nets import tiny_detector

        model = tiny_detector()
    else:
        torch.manual_seed(0)
        model = TinyNet()
        randomize_bn(model, torch.Generator().manual_seed(1))
        model.eval()
    kwargs: dict[str, object] = {}
    small = {"smoothgrad": {"n_samples": 2}, "vargrad": {"n_samples": 2},
             "smoothgradcampp": {"n_samples": 2}, "occlusion": {"window": 16, "stride": 16},
             "integrated_gradients": {"n_steps": 4}, "gradient_shap": {"n_samples": 2}}
    kwargs.update(small.get(name, {}))
    import inspect

    if "seed" in inspect.signature(EXPLAINERS.get(name)).parameters:
        kwargs["seed"] = 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, xcam.create(name, model, **kwargs)


BOOLS = {"python_bool": True, "bool_tensor": torch.tensor([True, False]),
         "bool_list": [True, False], "bool_scalar_tensor": torch.tensor(True),
         "numpy_bool": np.bool_(True), "numpy_bool_array": np.array([True, False])}
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("name", xcam.list_explainers())
def test_explainers_reject_bool_targets(name):
    _, explainer = _make(name)
    for targets in BOOLS.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(TargetError, match="(?i)bool|integer|int"):
                explainer(X, targets)  # type: ignore[operator]


def _metric_calls(model: nn.Module, maps: Tensor):
    gradcam = xcam.GradCAM(model, layer="features")
    return {
        "deletion": lambda t: deletion(model, X, maps, t, steps=4),
        "insertion": lambda t: insertion(model, X, maps, t, steps=4),
        "average_drop": lambda t: average_drop(model, X, maps, t),
        "increase_in_confidence": lambda t: increase_in_confidence(model, X, maps, t),
        "faithfulness_correlation": lambda t: faithfulness_correlation(model, X, maps, t, n=4,
                                                                       subset=16, seed=1),
        "infidelity": lambda t: infidelity(model, X, maps, t, n_perturb_samples=2, seed=1),
        "max_sensitivity": lambda t: max_sensitivity(gradcam, X, t, n_perturb_samples=2, seed=1),
        "random_logit": lambda t: random_logit(gradcam, X, t, n_classes=5, seed=1),
        "random_logit_maps": lambda t: random_logit(gradcam, X, t, n_classes=5, seed=1, maps=maps),
        "model_parameter_randomization": lambda t: model_parameter_randomization(
            model, gradcam, X, t, layers=["fc"], seed=1),
    }


METRIC_NAMES = ["deletion", "insertion", "average_drop", "increase_in_confidence",
                "faithfulness_correlation", "infidelity", "max_sensitivity", "random_logit",
                "random_logit_maps", "model_parameter_randomization"]


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_metrics_reject_bool_targets(metric):
    model, _ = _make("gradcam")
    maps = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(3))
    calls = _metric_calls(model, maps)
    assert sorted(calls) == sorted(METRIC_NAMES)
    call = calls[metric]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random tiny net may give all-zero Grad-CAM maps
        call([1, 0])  # class indices are fine
        for targets in BOOLS.values():
            with pytest.raises(TargetError, match="(?i)bool|integer|int"):
                call(targets)
