"""Seeds that cannot pass by coincidence.

Every model here is built under ``torch.manual_seed(0)`` and every explicit seed differs from 0,
from each other and from the global RNG state set around the calls, so a method that reseeds with
the wrong value, reuses one seed for every step, or reads torch's global RNG instead of its
``seed`` fails.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import xcam
from tests.nets import TinyNet, randomize_bn
from xcam.methods.smooth_gradcampp import noise_sigma
from xcam.metrics import faithfulness_correlation, model_parameter_randomization, random_logit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread


@pytest.fixture
def tiny() -> nn.Module:
    torch.manual_seed(0)
    model = TinyNet()
    randomize_bn(model, torch.Generator().manual_seed(1))
    return model.eval()


@pytest.fixture
def x() -> Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(9))


def _under_global_seed(seed: int, fn):
    """``fn()`` with torch's global RNG set to ``seed`` (restored afterwards)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return fn()


# ---------------------------------------------------------------- cascading randomisation

class TwinHeads(nn.Module):
    """Two Linear layers of the same shape: the same seed would give them the same values."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc2(torch.tanh(self.fc1(h)))


class Recorder:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.inner = xcam.methods.InputGradient(model)
        self.seen: list[dict[str, Tensor]] = []

    def __call__(self, inputs: Tensor, targets: object) -> object:
        self.seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return self.inner(inputs, targets)


def _cascade(model: nn.Module, x: Tensor, seed: int | None) -> tuple[object, Recorder]:
    made: list[Recorder] = []
    res = model_parameter_randomization(model, lambda m: made.append(Recorder(m)) or made[-1],
                                        x, None, seed=seed)
    return res, made[0]


def _fresh_linear(seed: int) -> nn.Linear:
    with torch.random.fork_rng():
        layer = nn.Linear(4, 4)
        torch.manual_seed(seed)
        layer.reset_parameters()
    return layer


def test_each_cascade_step_draws_its_own_parameters(x):
    torch.manual_seed(0)
    model = TwinHeads().eval()
    res, rec = _under_global_seed(5, lambda: _cascade(model, x, seed=11))
    assert res.layers == ("fc2", "fc1", "conv")
    assert not res.spearman.isnan().any()  # the maps are not constant
    after_fc2, after_fc1 = rec.seen[1], rec.seen[2]
    # step j re-initialises with seed + j (documented): fc2 with 11, fc1 with 12
    for name, seed in (("fc2", 11), ("fc1", 12)):
        want = _fresh_linear(seed)
        got = rec.seen[-1]
        assert torch.equal(got[f"{name}.weight"], want.weight.detach()), name
        assert torch.equal(got[f"{name}.bias"], want.bias.detach()), name
    # two steps never draw the same values, even for layers of the same shape
    assert not torch.equal(after_fc1["fc1.weight"], after_fc2["fc2.weight"])
    # and the draws are not the ones the model was built with (seed 0)
    for key in ("fc1.weight", "fc2.weight", "conv.weight"):
        assert not torch.equal(rec.seen[-1][key], model.state_dict()[key]), key
    # the global RNG plays no part: another global state, the same result
    again, rec2 = _under_global_seed(6, lambda: _cascade(model, x, seed=11))
    assert torch.equal(again.spearman, res.spearman) and torch.equal(again.ssim, res.ssim)
    assert all(torch.equal(rec2.seen[-1][k], v) for k, v in rec.seen[-1].items())
    # another seed, other parameters
    _, rec3 = _cascade(model, x, seed=12)
    assert not torch.equal(rec3.seen[-1]["fc1.weight"], rec.seen[-1]["fc1.weight"])


def test_cascade_without_seed_follows_the_global_rng(x):
    torch.manual_seed(0)
    model = TwinHeads().eval()
    _, a = _under_global_seed(21, lambda: _cascade(model, x, seed=None))
    _, b = _under_global_seed(21, lambda: _cascade(model, x, seed=None))
    _, c = _under_global_seed(22, lambda: _cascade(model, x, seed=None))
    assert torch.equal(a.seen[-1]["fc1.weight"], b.seen[-1]["fc1.weight"])
    assert not torch.equal(a.seen[-1]["fc1.weight"], c.seen[-1]["fc1.weight"])
    assert not torch.equal(a.seen[-1]["fc1.weight"], a.seen[-1]["fc2.weight"])


# ---------------------------------------------------------------- SmoothGrad: noise from the seed

def _smoothgrad_reference(model: nn.Module, x: Tensor, target: Tensor, n: int, level: float,
                          seed: int) -> Tensor:
    """SmoothGrad from its docstring: copies drawn one at a time from a generator seeded with
    ``seed``, mean input gradient of the class, then ``abs().sum(channel)``."""
    gen = torch.Generator().manual_seed(seed)
    sigma = noise_sigma(x, level)
    total = torch.zeros_like(x)
    for _ in range(n):
        noisy = (x + sigma * torch.randn(x.shape, generator=gen)).requires_grad_(True)
        score = model(noisy).gather(1, target[:, None]).sum()
        total += torch.autograd.grad(score, noisy)[0]
    return (total / n).abs().sum(dim=1)


def test_smoothgrad_noise_comes_from_its_seed_only(tiny, x):
    explain = xcam.SmoothGrad(tiny, n_samples=4, noise_level=0.2, batch_size=3, seed=7,
                              channels_last=False)
    got = _under_global_seed(1, lambda: explain(x))
    target = got.targets
    want = _smoothgrad_reference(tiny, x, target, 4, 0.2, seed=7)
    torch.testing.assert_close(got.maps, want, rtol=1e-5, atol=1e-7)
    assert torch.equal(_under_global_seed(2, lambda: explain(x)).maps, got.maps)
    other = xcam.SmoothGrad(tiny, n_samples=4, noise_level=0.2, seed=8, channels_last=False)(x)
    assert (other.maps - got.maps).abs().max() > 1e-3 * got.maps.abs().max()


def test_smooth_gradcampp_seeded_noise_ignores_global_rng_and_batch_size(tiny, x):
    def run(seed: int, batch_size: int) -> Tensor:
        explain = xcam.SmoothGradCAMPlusPlus(tiny, layer="features", n_samples=5, seed=seed,
                                             batch_size=batch_size)
        return explain(x, [1, 3]).maps

    a = _under_global_seed(3, lambda: run(13, 4))
    b = _under_global_seed(4, lambda: run(13, 32))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    c = _under_global_seed(3, lambda: run(14, 4))
    assert (a - c).abs().max() > 1e-4 * a.abs().max()


# ---------------------------------------------------------------- metrics and controls

def test_random_logit_draws_another_class_from_its_seed(tiny):
    xs = torch.randn(40, 3, 8, 8, generator=torch.Generator().manual_seed(12))
    targets = torch.arange(40) % 5
    asked: list[Tensor] = []

    def blind(inputs: Tensor, t: object) -> Tensor:
        asked.append(torch.as_tensor(t).clone())
        return inputs[:, 0].abs()

    a = _under_global_seed(1, lambda: random_logit(blind, xs, targets, n_classes=5, seed=31))
    drawn = asked[-1]
    assert (drawn != targets).all()  # never the target class itself
    assert set(drawn.tolist()) == {0, 1, 2, 3, 4}  # every other class can be drawn
    b = _under_global_seed(2, lambda: random_logit(blind, xs, targets, n_classes=5, seed=31))
    assert torch.equal(asked[-1], drawn) and torch.equal(a, b)
    random_logit(blind, xs, targets, n_classes=5, seed=32)
    assert not torch.equal(asked[-1], drawn)


def test_faithfulness_correlation_subsets_come_from_its_seed(tiny, x):
    maps = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(17))
    run = lambda seed: faithfulness_correlation(tiny, x, maps, [1, 2], n=6, subset=20, seed=seed)  # noqa: E731
    a = _under_global_seed(1, lambda: run(41))
    b = _under_global_seed(2, lambda: run(41))
    assert torch.equal(a, b)
    assert not torch.equal(a, run(42))


def test_random_map_control_is_its_seeds_noise(tiny, x):
    a = _under_global_seed(1, lambda: xcam.create("random", tiny, seed=19)(x).maps)
    b = _under_global_seed(2, lambda: xcam.create("random", tiny, seed=19)(x).maps)
    c = xcam.create("random", tiny, seed=20)(x).maps
    assert torch.equal(a, b) and not torch.equal(a, c)
