"""Secondary paths, pinned by value: approximate occlusion, per-sample baselines through the
incremental engine, and the randomisation of parameters that have no ``reset_parameters``.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import xcam
from tests.nets import TinyNet, randomize_bn
from xcam.methods import InputGradient
from xcam.metrics import model_parameter_randomization
from xcam.metrics.sanity import reinitialize

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread


# ---------------------------------------------------------------- approximate occlusion

class ThreeConvs(nn.Module):
    """Three 3x3 convolutions (padding 1) with ReLUs, a global mean and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1),
                                    nn.Conv2d(4, 4, 3, padding=1)])
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.fc(x.mean(dim=(2, 3)))


def _approximate_reference(model: ThreeConvs, image: Tensor, y0: int, x0: int, window: int,
                           cap: float | None, align: str = "centre") -> Tensor:
    """The model output for ``image`` (1, C, H, W) with a zero window at (y0, x0), computed the
    approximate way from its definition, layer by layer.

    The region a window changes grows by one pixel per side at every 3x3 convolution; where it
    exceeds ``ceil(cap * size)`` it is cut to that size, keeping its centre (``align`` moves the
    kept part to the region's start or end instead, for the negative checks). Every layer's output
    is its clean value outside the kept region and the layer applied to the (already approximate)
    previous layer inside it.
    """
    h, w = image.shape[-2:]
    occluded = image.clone()
    occluded[..., y0:y0 + window, x0:x0 + window] = 0.0
    lo_y, lo_x, size_y, size_x = y0, x0, window, window
    clean, approx = image, occluded
    for conv in model.convs:
        clean = torch.relu(conv(clean))
        full = torch.relu(conv(approx))
        lo_y, lo_x, size_y, size_x = lo_y - 1, lo_x - 1, size_y + 2, size_x + 2
        if cap is not None:
            mh, mw = max(1, math.ceil(cap * h)), max(1, math.ceil(cap * w))
            shift = {"centre": lambda s, m: (s - m) // 2, "start": lambda s, m: 0,
                     "end": lambda s, m: s - m}[align]
            if size_y > mh:
                lo_y, size_y = lo_y + shift(size_y, mh), mh
            if size_x > mw:
                lo_x, size_x = lo_x + shift(size_x, mw), mw
        rows = (torch.arange(h) >= lo_y) & (torch.arange(h) < lo_y + size_y)
        cols = (torch.arange(w) >= lo_x) & (torch.arange(w) < lo_x + size_x)
        inside = rows[:, None] & cols[None, :]
        approx = torch.where(inside, full, clean)
    return model.fc(approx.mean(dim=(2, 3)))[0]


def _reference_maps(model: ThreeConvs, x: Tensor, targets: list[int], window: int,
                    cap: float | None, align: str = "centre") -> Tensor:
    """Occlusion maps (non-overlapping windows, stride = window) from the reference outputs."""
    b, _, h, w = x.shape
    maps = torch.zeros(b, h, w)
    with torch.no_grad():
        clean = model(x)
        for i in range(b):
            for y0 in range(0, h, window):
                for x0 in range(0, w, window):
                    out = _approximate_reference(model, x[i:i + 1], y0, x0, window, cap, align)
                    c = targets[i]
                    maps[i, y0:y0 + window, x0:x0 + window] = clean[i, c] - out[c]
    return maps


def test_approximate_occlusion_keeps_the_center_of_each_grown_region():
    torch.manual_seed(3)
    model = ThreeConvs().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    targets = [0, 2]
    # cap 0.5 of 8 px = 4: the 2 px window's region grows 4 -> 6 -> 8 across the convolutions and
    # is cut back to 4 (centred: one pixel off each side) after the second and third
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to plain occlusion
        got = xcam.Occlusion(model, window=2, stride=2, approximate=0.5, channels_last=False)(
            x, targets).maps
    want = _reference_maps(model, x, targets, 2, cap=0.5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # the reference can tell: exact occlusion and off-centre cuts give other maps
    exact = xcam.Occlusion(model, window=2, stride=2)(x, targets).maps
    torch.testing.assert_close(_reference_maps(model, x, targets, 2, cap=None), exact,
                               rtol=1e-5, atol=1e-6)
    for other in (exact, _reference_maps(model, x, targets, 2, 0.5, "start"),
                  _reference_maps(model, x, targets, 2, 0.5, "end")):
        assert (other - want).abs().max() > 1e-3 * want.abs().max()


# ---------------------------------------------------------------- per-sample baseline, incremental

def test_incremental_occlusion_uses_each_samples_own_baseline():
    torch.manual_seed(0)
    model = TinyNet()
    randomize_bn(model, torch.Generator().manual_seed(1))
    model.eval()
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 3, 16, 16, generator=gen)
    base = torch.randn(3, 3, 16, 16, generator=gen)  # e.g. a blurred copy of each image
    targets = torch.tensor([1, 4, 2])
    inc = xcam.Occlusion(model, window=6, stride=4, baseline=base, incremental=True,
                         channels_last=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the engine runs: no fallback to plain occlusion
        got = inc(x, targets).maps
    assert inc._engine is not None
    plain = xcam.Occlusion(model, window=6, stride=4, baseline=base, channels_last=False)
    want = plain(x, targets).maps
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # the test can tell: one baseline for every sample gives other maps
    first = xcam.Occlusion(model, window=6, stride=4, baseline=base[:1], channels_last=False)
    assert (first(x, targets).maps[1:] - want[1:]).abs().max() > 1e-2 * want.abs().max()
    # and a batch equals its samples one by one with their own baselines
    for i in range(3):
        one = xcam.Occlusion(model, window=6, stride=4, baseline=base[i:i + 1], incremental=True,
                             channels_last=False)(x[i:i + 1], targets[i:i + 1]).maps
        torch.testing.assert_close(one[0], want[i], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- randomisation without reset

class LayerScale(nn.Module):
    """ConvNeXt's per-channel layer scale: a bare parameter, no ``reset_parameters``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma[:, None, None]


class PositionEmbedding(nn.Module):
    """A learned additive position embedding (as in ViT), no ``reset_parameters``."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, channels, size, size))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pos


class ScaledNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pos = PositionEmbedding(4, 8)
        self.scale = LayerScale(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.scale(torch.relu(self.pos(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


def _trained_like(model: nn.Module, seed: int) -> nn.Module:
    """Every parameter holds distinct values, as after training (no constant layer scale)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + 1.0)
    return model.eval()


class Snapshots:
    """An input-gradient explainer that records the model's parameters at every call."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.inner = InputGradient(model)
        self.seen: list[dict[str, Tensor]] = []

    def __call__(self, x: Tensor, targets: object) -> object:
        self.seen.append({k: v.detach().clone() for k, v in self.model.named_parameters()})
        return self.inner(x, targets)


def _run(model: nn.Module, x: Tensor, seed: int) -> tuple[object, Snapshots]:
    made: list[Snapshots] = []

    def factory(m: nn.Module) -> Snapshots:
        made.append(Snapshots(m))
        return made[-1]

    res = model_parameter_randomization(model, factory, x, None, seed=seed)
    assert len(made) == 1
    return res, made[0]


def _owned_by(name: str, params: dict[str, Tensor]) -> list[str]:
    return [k for k in params if name == "" or k.startswith(name + ".")]


def test_randomization_changes_parameters_of_modules_without_reset_parameters():
    torch.manual_seed(0)
    model = _trained_like(ScaledNet(), seed=1)
    assert not hasattr(LayerScale, "reset_parameters") and not hasattr(PositionEmbedding,
                                                                        "reset_parameters")
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    res, snaps = _run(model, x, seed=17)
    assert res.layers == ("fc", "scale", "pos", "conv")
    assert len(snaps.seen) == 5  # the original, then one call per step
    for j, name in enumerate(res.layers):
        before, after = snaps.seen[j], snaps.seen[j + 1]
        for key in before:
            mine = key in _owned_by(name, before)
            assert torch.equal(before[key], after[key]) != mine, (name, key)
    # the bare parameters are shuffled (a permutation of their values, as documented)
    original = dict(model.named_parameters())
    final = snaps.seen[-1]
    for key in ("scale.gamma", "pos.pos"):
        assert not torch.equal(final[key], original[key])
        assert torch.equal(final[key].flatten().sort().values,
                           original[key].detach().flatten().sort().values)
    # randomising the layer scale moves the map (Spearman falls below 1 at that step)
    assert (res.spearman[:, 1] < 0.999).all()


def test_randomization_reaches_a_vit_position_embedding_and_class_token():
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    model = _trained_like(VisionTransformer(image_size=16, patch_size=8, num_layers=1,
                                            num_heads=1, hidden_dim=8, mlp_dim=8,
                                            num_classes=3), seed=3)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    res, snaps = _run(model, x, seed=29)
    assert "encoder" in res.layers and "" in res.layers  # owners of pos_embedding, class_token
    j = res.layers.index("encoder")
    assert not torch.equal(snaps.seen[j]["encoder.pos_embedding"],
                           snaps.seen[j + 1]["encoder.pos_embedding"])
    j = res.layers.index("")
    assert not torch.equal(snaps.seen[j]["class_token"], snaps.seen[j + 1]["class_token"])
    original = dict(model.named_parameters())
    for key, value in snaps.seen[-1].items():  # after the cascade nothing is left as it was
        assert not torch.equal(value, original[key].detach()), key


def test_randomization_reinitialises_modules_that_have_reset_parameters():
    # the other branch: Conv2d / Linear are redrawn from their init (not shuffled)
    torch.manual_seed(0)
    model = _trained_like(ScaledNet(), seed=1)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    _, snaps = _run(model, x, seed=17)
    fc = snaps.seen[1]["fc.weight"]
    bound = 1 / 4 ** 0.5  # kaiming-uniform bound of Linear(4, 3)
    assert fc.abs().max() <= bound
    assert not torch.equal(fc.flatten().sort().values,
                           model.fc.weight.detach().flatten().sort().values)
    assert F.mse_loss(fc, model.fc.weight.detach()) > 0.1


def test_randomization_of_a_named_block_reaches_every_parameter_inside_it():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("body", _trained_like(ScaledNet(), seed=1))
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    made: list[Snapshots] = []

    def factory(m: nn.Module) -> Snapshots:
        made.append(Snapshots(m))
        return made[-1]

    res = model_parameter_randomization(model, factory, x, None, layers=["body"], seed=23)
    assert res.layers == ("body",)
    before, after = made[0].seen
    for key in before:  # children with and without reset_parameters, all in one step
        assert not torch.equal(before[key], after[key]), key


def test_randomization_redraws_constant_parameters_and_attention_weights():
    """Untrained layer scales (1e-6 * ones) and class tokens (zeros) would survive a shuffle: they
    are redrawn around their value; multi-head attention is re-initialised (not shuffled)."""
    from torchvision.models import VisionTransformer
    from torchvision.models.convnext import CNBlock

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=1, hidden_dim=8,
                            mlp_dim=8, num_classes=3).eval()
    block = CNBlock(8, layer_scale=1e-6, stochastic_depth_prob=0.0).eval()
    assert torch.equal(vit.class_token, torch.zeros_like(vit.class_token))
    assert torch.equal(block.layer_scale, torch.full_like(block.layer_scale, 1e-6))
    attention = vit.encoder.layers[0].self_attention
    attention_before = attention.in_proj_weight.detach().clone()
    reinitialize(vit, seed=5)
    reinitialize(block, seed=5)
    for value, old in ((vit.class_token, 0.0), (block.layer_scale, 1e-6)):
        spread = (value - old).detach()
        assert bool((spread != 0).all()) and 0.005 < float(spread.std()) < 0.05
    after = attention.in_proj_weight.detach()
    assert not torch.equal(after.flatten().sort().values, attention_before.flatten().sort().values)
