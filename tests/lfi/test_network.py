"""LFICAMNet: the equations of the pinned definition, the gradient paths, the families, the cost."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import xcam
from tests.nets import randomize_bn, small_resnet, tiny_efficientnet
from xcam.errors import InputError, InputTypeError
from xcam.lfi import FeatureImportanceNetwork, LFICAMNet, channel_minmax, fin_input


@pytest.fixture(scope="module")
def net() -> LFICAMNet:
    model = LFICAMNet(small_resnet(), depth=2, seed=0)
    randomize_bn(model.fin, 7)
    return model.eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))


def reference_forward(net: LFICAMNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pinned equations written out by hand for a ResNet in eval mode: (logits, A, w)."""
    b = net.backbone
    f = b.layer4(b.layer3(b.layer2(b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x))))))))
    n = torch.empty_like(f)
    for i in range(f.shape[0]):
        for k in range(f.shape[1]):
            ch = f[i, k]
            lo, hi = ch.min(), ch.max()
            if hi > lo:
                n[i, k] = (ch - lo) / (hi - lo)
            else:
                n[i, k] = 1.0 if bool(ch.abs().max() > 0) else 0.0
    g = F.interpolate(x.mean(1, keepdim=True), size=f.shape[-2:], mode="bilinear", align_corners=False)
    h = n * g
    convs = [m for m in net.fin.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in net.fin.modules() if isinstance(m, nn.BatchNorm2d)]
    for conv, bn in zip(convs, bns):
        h = F.conv2d(h, conv.weight, padding=1)
        h = F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        h = torch.relu(h)
    w = torch.softmax(h.mean((2, 3)), dim=1)
    cam = torch.relu((w[:, :, None, None] * f).sum(1))
    flat = cam.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    a = ((cam - lo) / (hi - lo))[:, None]
    logits = b.fc(((1 + a) * f).mean((2, 3)))
    return logits, a, w


def test_forward_matches_the_equations_written_out(net: LFICAMNet, x: torch.Tensor) -> None:
    with torch.no_grad():
        logits, attention = net(x, return_attention=True)
        ref_logits, ref_a, ref_w = reference_forward(net, x)
        weights = net.importance(x)
    assert attention.shape == (2, 1, 4, 4)
    torch.testing.assert_close(weights, ref_w, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(attention, ref_a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    # The attention changes the logits: (1 + A) * F is not F.
    with torch.no_grad():
        plain = net.backbone(x)
    assert (logits - plain).abs().max() > 1e-3


def test_fin_weights_are_positive_sum_to_one_and_depend_on_the_input(net: LFICAMNet, x: torch.Tensor) -> None:
    with torch.no_grad():
        w = net.importance(x)
    assert w.shape == (2, net.channels) == (2, 512)
    assert bool((w > 0).all())
    torch.testing.assert_close(w.sum(1), torch.ones(2), rtol=0, atol=1e-6)
    assert (w[0] - w[1]).abs().max() > 1e-6  # not a constant (e.g. uniform) output
    assert (w - 1 / 512).abs().max() > 1e-5


def test_attention_is_a_min_max_map_in_unit_interval(net: LFICAMNet, x: torch.Tensor) -> None:
    with torch.no_grad():
        _, a = net(x, return_attention=True)
    flat = a.flatten(1)
    assert bool((flat >= 0).all()) and bool((flat <= 1).all())
    torch.testing.assert_close(flat.min(1).values, torch.zeros(2))
    torch.testing.assert_close(flat.max(1).values, torch.ones(2))


def test_channel_minmax_and_fin_input_follow_the_pinned_rules() -> None:
    f = torch.tensor([[[[0.0, 2.0], [4.0, 8.0]],
                       [[3.0, 3.0], [3.0, 3.0]],     # constant, nonzero -> 1
                       [[0.0, 0.0], [0.0, 0.0]],     # all zero -> 0
                       [[-2.0, -2.0], [-2.0, -2.0]]]])  # constant negative -> 1
    n = channel_minmax(f)
    expected = torch.tensor([[[[0.0, 0.25], [0.5, 1.0]], [[1.0, 1.0], [1.0, 1.0]],
                              [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]])
    torch.testing.assert_close(n, expected)
    # G: the channel mean of the input, bilinearly resized; M = N * G.
    x = torch.zeros(1, 3, 4, 4)
    x[:, :, :, 2:] = torch.tensor([3.0, 6.0, 9.0])[:, None, None]  # mean 6 on the right half
    m = fin_input(x, f)
    g = torch.tensor([[0.0, 6.0], [0.0, 6.0]])
    torch.testing.assert_close(m[0], expected[0] * g)


def test_uniform_fin_weights_give_the_mean_channel_map(net: LFICAMNet, x: torch.Tensor) -> None:
    c = net.channels
    handle = net.fin.register_forward_hook(lambda mod, args, out: torch.full_like(out, 1.0 / c))
    try:
        with torch.no_grad():
            _, a = net(x, return_attention=True)
    finally:
        handle.remove()
    with torch.no_grad():
        f = net.features(x)
        _, learned = net(x, return_attention=True)
    expected = xcam.normalize(torch.relu(f.mean(1)))[:, None]
    torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-6)
    assert (learned - expected).abs().max() > 1e-3  # the hook changed something


def test_fin_learns_from_the_cross_entropy(net: LFICAMNet, x: torch.Tensor) -> None:
    loss = F.cross_entropy(net(x), torch.tensor([1, 3]))
    params = list(net.fin.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    assert len(params) == 6  # two blocks: conv weight, BN weight and bias
    for p, g in zip(params, grads):
        assert g is not None and g.abs().max() > 0, tuple(p.shape)


def test_fin_reaches_the_logits_only_through_the_attention(net: LFICAMNet, x: torch.Tensor) -> None:
    """Replace A by a fixed tensor: the logits must then be head((1 + A0) * F), exactly, and no
    gradient may reach the FIN; with A0 = 0 they are the plain backbone's logits."""
    a0 = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(9))
    for fixed, compare_plain in ((a0, False), (torch.zeros_like(a0), True)):
        handle = net.attention.register_forward_hook(lambda mod, args, out, v=fixed: v.clone())
        try:
            logits = net(x)
        finally:
            handle.remove()
        with torch.no_grad():
            expected = net.head((1 + fixed) * net.features(x))
        torch.testing.assert_close(logits.detach(), expected, rtol=0, atol=0)
        if compare_plain:
            with torch.no_grad():
                torch.testing.assert_close(logits.detach(), net.backbone(x), rtol=0, atol=0)
        grads = torch.autograd.grad(logits.sum(), list(net.fin.parameters()), allow_unused=True)
        assert all(g is None or not bool(g.any()) for g in grads)


# -- families ----------------------------------------------------------------------------------
FAST = ["resnet18", "densenet121", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
        "regnet_y_400mf", "convnext_tiny"]
SLOW = ["vgg11_bn", "efficientnet_v2_s", "resnext50_32x4d"]


@pytest.mark.parametrize(
    "arch", FAST + [pytest.param(a, marks=pytest.mark.slow) for a in SLOW]
)
def test_family_keeps_the_backbone_pooling_and_head(arch: str) -> None:
    torch.manual_seed(0)
    backbone = torchvision.models.get_model(arch, weights=None, num_classes=3).eval()
    net = LFICAMNet(backbone, depth=1, width=None, seed=0).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    handle = net.attention.register_forward_hook(lambda mod, args, out: torch.zeros_like(out))
    try:
        with torch.no_grad():
            zero_attention = net(x)
    finally:
        handle.remove()
    with torch.no_grad():
        torch.testing.assert_close(zero_attention, backbone(x), rtol=0, atol=0)
        # net.layer names the tapped stage, and F is what that layer outputs.
        with xcam.capture(net, net.layer) as cap:
            net(x)
        tapped = cap[net.layer]
        if net.family == "densenet":
            tapped = torch.relu(tapped)  # DenseNet applies its final ReLU functionally
        torch.testing.assert_close(net.features(x), tapped, rtol=0, atol=0)
        _, a = net(x, return_attention=True)
    assert a.shape[:2] == (2, 1) and a.shape[-2:] == net.features(x).shape[-2:]


def test_unsupported_backbones_are_refused_with_the_supported_list() -> None:
    seq = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(InputError, match="resnet.*vgg.*densenet.*mobilenet_v2.*efficientnet.*Sequential"):
        LFICAMNet(seq)
    net = LFICAMNet(tiny_efficientnet(), depth=1)
    with pytest.raises(InputError, match="already an LFICAMNet"):
        LFICAMNet(net)
    with pytest.raises(InputTypeError, match="nn.Module"):
        LFICAMNet("resnet18")  # type: ignore[arg-type]


# -- FIN configuration and cost ----------------------------------------------------------------
def test_fin_depth_width_and_relu_placement() -> None:
    fin = FeatureImportanceNetwork(40, depth=3, width=8)
    convs = [m for m in fin.blocks if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(8, 40, 3, 3), (8, 8, 3, 3), (40, 8, 3, 3)]
    assert all(c.bias is None for c in convs)
    kinds = lambda f: "".join({nn.Conv2d: "c", nn.BatchNorm2d: "b", nn.ReLU: "r"}[type(m)] for m in f.blocks)  # noqa: E731
    assert kinds(fin) == "cbr" * 3
    assert kinds(FeatureImportanceNetwork(4, depth=2, relu="before_bn")) == "crb" * 2
    assert kinds(FeatureImportanceNetwork(4, depth=2, relu="hidden")) == "cbrcb"
    assert kinds(FeatureImportanceNetwork(4, depth=2, relu="none")) == "cbcb"
    m = torch.randn(3, 40, 5, 5)
    w = fin.eval()(m)
    torch.testing.assert_close(w, torch.softmax(fin.logits(m), 1))
    with pytest.raises(InputError, match="depth >= 2"):
        FeatureImportanceNetwork(4, depth=1, width=2)
    with pytest.raises(InputError, match="did you mean 'after_bn'"):
        FeatureImportanceNetwork(4, relu="afterbn")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="depth must be >= 1"):
        FeatureImportanceNetwork(4, depth=0)


def test_fin_initialisation_follows_the_seed() -> None:
    a = FeatureImportanceNetwork(16, depth=2, seed=3).state_dict()
    b = FeatureImportanceNetwork(16, depth=2, seed=3).state_dict()
    c = FeatureImportanceNetwork(16, depth=2, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["blocks.0.weight"], c["blocks.0.weight"])


def test_cost_of_the_paper_sized_fin_on_resnet18() -> None:
    torch.manual_seed(0)
    net = LFICAMNet(torchvision.models.resnet18(), depth=4)
    cost = net.cost((3, 224, 224))
    # Paper: about 9.4 M extra parameters on ResNet-18: 4 x (3x3 conv 512->512 + BN).
    assert cost.fin_params == 4 * (512 * 512 * 9 + 2 * 512) == 9_441_280
    assert cost.backbone_params == 11_689_512
    assert cost.attention_size == (7, 7)
    # 2 FLOPs per multiply-add, 4 convolutions over a 7x7 map.
    assert cost.fin_flops == 4 * 2 * 512 * 512 * 9 * 7 * 7
    assert 3.6e9 < cost.backbone_flops < 3.7e9  # ResNet-18: 1.82 G multiply-adds
    assert "FIN" in str(cost) and cost.total_params == cost.fin_params + cost.backbone_params


@pytest.mark.slow
def test_cost_of_the_paper_sized_fin_on_resnet50() -> None:
    net = LFICAMNet(torchvision.models.resnet50(), depth=4)
    cost = net.cost((224, 224))
    assert cost.fin_params == 4 * (2048 * 2048 * 9 + 2 * 2048)  # ~151 M, as the paper says
    assert round(cost.fin_params / 1e6) == 151


def test_a_one_pixel_attention_map_is_announced() -> None:
    net = LFICAMNet(tiny_efficientnet(), depth=1).eval()
    with pytest.warns(UserWarning, match="1x1"):
        net(torch.randn(1, 3, 8, 8))
