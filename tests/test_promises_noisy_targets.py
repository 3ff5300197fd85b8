"""Promise: with ``targets=None`` every noisy or perturbed copy explains the clean input's top class.

The model below is built so that its top class *flips* under the perturbations the explainers use
(Gaussian noise, occluding windows, Score-CAM masks, integrated-gradient interpolations): class 0
reads the smooth intensity, class 1 the high-frequency energy (a Laplacian). Each test first
asserts that the flip happens for the perturbation used, so it cannot pass vacuously, then that
``targets=None`` gives exactly the result of the explicit clean class, and not that of the flipped
class.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

import xcam
from xcam.methods import GradCAM, InputGradient
from xcam.methods.smooth_gradcampp import noise_sigma

H = 12


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread


class FlatOrEdges(nn.Module):
    """Two channels at full resolution: a 3x3 mean and a 3x3 Laplacian, ReLU, global mean, Linear.

    ``logit0 = 3 mean(ReLU(box))`` (bright, smooth regions),
    ``logit1 = 4 mean(ReLU(Laplacian)) + 0.3`` (high-frequency energy): a smooth bright image is
    class 0, a noisy, occluded or darkened copy of it class 1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, padding_mode="replicate")
        self.act = nn.ReLU()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1 / 9
            self.conv.weight[1, 0] = torch.tensor([[-1.0, -1, -1], [-1, 8, -1], [-1, -1, -1]])
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 0.3]))
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture
def model() -> FlatOrEdges:
    return FlatOrEdges()


@pytest.fixture
def x() -> Tensor:
    """Two smooth ramps (class 0 on the clean input), values in [-0.1, 0.4]."""
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")
    a = -0.1 + 0.5 * (yy + xx) / (2 * H - 2)
    b = 0.4 - 0.4 * yy / (H - 1)
    return torch.stack([a, b])[:, None].float()


def _top(model: nn.Module, batch: Tensor) -> Tensor:
    with torch.no_grad():
        return model(batch).argmax(dim=1)


def _assert_noise_flips(model: nn.Module, x: Tensor, noise_level: float) -> None:
    """The clean class is 0, and the top class of noisy copies at this noise level is 1."""
    assert _top(model, x).tolist() == [0, 0]
    gen = torch.Generator().manual_seed(11)
    sigma = noise_sigma(x, noise_level)
    for _ in range(8):
        noisy = x + sigma * torch.randn(x.shape, generator=gen)
        assert _top(model, noisy).tolist() == [1, 1]


def _same(a: Tensor, b: Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def _differ(a: Tensor, b: Tensor) -> None:
    assert (a - b).abs().max() > 1e-3 * max(1.0, float(a.abs().max()))


NOISY: dict[str, Callable[[nn.Module], object]] = {
    "smoothgrad": lambda m: xcam.SmoothGrad(m, n_samples=6, noise_level=0.2, batch_size=5, seed=3),
    "smoothgrad_squared": lambda m: xcam.SmoothGrad(m, n_samples=6, noise_level=0.2, squared=True,
                                                    seed=3),
    "vargrad": lambda m: xcam.VarGrad(m, n_samples=6, noise_level=0.2, batch_size=4, seed=3),
    "smoothgrad_of_gradcam": lambda m: xcam.SmoothGrad(m, GradCAM(m, layer="act"), n_samples=6,
                                                       noise_level=0.2, seed=3),
    "vargrad_of_gradient": lambda m: xcam.VarGrad(m, InputGradient(m, "sum"), n_samples=6,
                                                  noise_level=0.2, seed=3),
    "smoothgradcampp": lambda m: xcam.SmoothGradCAMPlusPlus(m, layer="act", n_samples=6,
                                                            noise_level=0.2, batch_size=5, seed=3),
}


@pytest.mark.parametrize("name", list(NOISY))
def test_noisy_copies_explain_the_clean_class(name, model, x):
    _assert_noise_flips(model, x, 0.2)
    explain = NOISY[name](model)
    auto = explain(x)
    assert auto.targets.tolist() == [0, 0]
    for explicit in (0, torch.tensor([0, 0]), [0, 0]):
        ref = explain(x, explicit)
        _same(auto.maps, ref.maps)
        if ref.low_res is not None:
            _same(auto.low_res, ref.low_res)
        _same(auto.scores, ref.scores)
    # the class the noisy copies themselves would pick gives another map
    _differ(auto.maps, explain(x, 1).maps)


def _scorecam_masked(model: FlatOrEdges, x: Tensor) -> Tensor:
    """The masked inputs of Score-CAM at layer ``act`` (full resolution: no upsampling)."""
    with torch.no_grad():
        f = model.act(model.conv(x))  # (B, 2, H, W)
    lo = f.amin(dim=(2, 3), keepdim=True)
    hi = f.amax(dim=(2, 3), keepdim=True)
    masks = (f - lo) / (hi - lo)
    return (x * masks).reshape(-1, 1, H, H)  # (B * 2, 1, H, W), sample-major


def _occluded(x: Tensor, window: int) -> Tensor:
    out = []
    for i in range(x.shape[0]):
        for y0 in range(0, H, window):
            for x0 in range(0, H, window):
                o = x[i:i + 1].clone()
                o[..., y0:y0 + window, x0:x0 + window] = 0.0
                out.append(o)
    return torch.cat(out)


PERTURBED: dict[str, Callable[[nn.Module], object]] = {
    "occlusion": lambda m: xcam.Occlusion(m, window=4, stride=4, batch_size=7),
    "occlusion_overlapping": lambda m: xcam.Occlusion(m, window=4, stride=2, batch_size=64),
    "occlusion_incremental": lambda m: xcam.Occlusion(m, window=4, stride=4, incremental=True),
    "scorecam": lambda m: xcam.ScoreCAM(m, layer="act", batch_size=3),
    "scorecam_baseline": lambda m: xcam.ScoreCAM(m, layer="act", subtract_baseline=True),
    "integrated_gradients": lambda m: xcam.create("integrated_gradients", m, n_steps=8),
    "gradient_shap": lambda m: xcam.create("gradient_shap", m, n_samples=4, stdevs=0.1, seed=2),
}


@pytest.mark.parametrize("name", list(PERTURBED))
def test_perturbed_batches_explain_the_clean_class(name, model, x):
    assert _top(model, x).tolist() == [0, 0]
    # the perturbations flip the top class: occluded windows, Score-CAM masks, dark interpolations
    occluded = _top(model, _occluded(x, 4))
    assert occluded.float().mean() > 0.5
    assert (_top(model, _scorecam_masked(model, x)) == 1).any()
    assert _top(model, 0.05 * x).tolist() == [1, 1]  # integrated gradients' first steps
    explain = PERTURBED[name](model)
    auto = explain(x)
    assert auto.targets.tolist() == [0, 0]
    for explicit in (0, torch.tensor([0, 0])):
        ref = explain(x, explicit)
        _same(auto.maps, ref.maps)
        _same(auto.scores, ref.scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the flipped class may give an all-zero Score-CAM map
        flipped = explain(x, 1).maps
    _differ(auto.maps, flipped)


def test_targets_follow_their_samples_in_mixed_batches(model, x):
    """Sample 0 is class 0, sample 1 class 1 on the clean input; copies keep each its own class."""
    gen = torch.Generator().manual_seed(4)
    edgy = x[1:] + 0.5 * torch.randn(1, 1, H, H, generator=gen)
    batch = torch.cat([x[:1], edgy])
    assert _top(model, batch).tolist() == [0, 1]
    for make in (NOISY["smoothgrad"], NOISY["smoothgradcampp"], NOISY["vargrad_of_gradient"],
                 PERTURBED["occlusion"], PERTURBED["scorecam"]):
        explain = make(model)
        auto = explain(batch)
        ref = explain(batch, torch.tensor([0, 1]))
        assert auto.targets.tolist() == [0, 1]
        _same(auto.maps, ref.maps)


def _metric_calls(model: nn.Module) -> dict[str, Callable[[Tensor, Tensor, object], Tensor]]:
    from xcam import metrics as M

    grad = InputGradient(model)
    return {
        "deletion": lambda x, m, t: M.deletion(model, x, m, t, steps=8).auc,
        "insertion": lambda x, m, t: M.insertion(model, x, m, t, steps=8).auc,
        "average_drop": lambda x, m, t: M.average_drop(model, x, m, t),
        "faithfulness_correlation": lambda x, m, t: M.faithfulness_correlation(
            model, x, m, t, n=8, subset=30, seed=1),
        "infidelity": lambda x, m, t: M.infidelity(model, x, m, t, n_perturb_samples=4,
                                                   noise_std=0.3, seed=1),
        "max_sensitivity": lambda x, m, t: M.max_sensitivity(grad, x, t, n_perturb_samples=3,
                                                             radius=0.3, seed=1),
    }


@pytest.mark.parametrize("metric", ["deletion", "insertion", "average_drop",
                                    "faithfulness_correlation", "infidelity", "max_sensitivity"])
def test_metrics_score_the_clean_class_on_perturbed_copies(metric, model, x):
    # max-sensitivity's copies x + U[-0.3, 0.3] flip the top class; deletion's dark pixels too
    gen = torch.Generator().manual_seed(8)
    assert _top(model, x + 0.6 * torch.rand(x.shape, generator=gen) - 0.3).tolist() == [1, 1]
    maps = torch.rand(2, H, H, generator=gen)
    call = _metric_calls(model)[metric]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = call(x, maps, None)
        for explicit in (0, torch.tensor([0, 0])):
            _same(auto, call(x, maps, explicit))
        _differ(auto, call(x, maps, 1))
