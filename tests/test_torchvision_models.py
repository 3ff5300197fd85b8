"""Every torchvision classification builder, with no `layer` argument (random weights, small input).

CI runs a representative subset (one or two builders per family); `make test-all` (or
`pytest -m slow tests/test_torchvision_models.py`) runs every builder.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

import xcam
from xcam.errors import HeadNotFoundError
from xcam.targets import detection, segmentation

ALL = sorted(torchvision.models.list_models(module=torchvision.models))
SUBSET = {"resnet18", "vgg11", "densenet121", "mobilenet_v2", "mobilenet_v3_small",
          "efficientnet_b0", "regnet_y_400mf", "convnext_tiny", "squeezenet1_1",
          "shufflenet_v2_x0_5", "mnasnet0_5", "googlenet", "alexnet", "vit_b_32", "swin_t"}
# Token / windowed models need their native input size; everything else runs at 192 px.
FIXED_SIZE = {"vit": 224, "swin": 224, "maxvit": 224, "inception": 299}
TRANSFORMERS = ("vit", "swin", "maxvit")
# Heads that flatten a 7x7 grid into a Linear weigh each position differently: shifting the scene
# changes the evidence itself, so their maps need not follow a shift.
POSITIONAL_HEADS = ("vgg", "alexnet")
# Builders whose head is global-average-pool -> (dropout) -> Linear, so CAM applies.
NO_GAP_LINEAR = ("vgg", "alexnet", "squeezenet", "mobilenet_v3", "convnext", "vit", "maxvit")


def params(names):
    return [pytest.param(n, marks=() if n in SUBSET else pytest.mark.slow) for n in names]


def size_of(name: str) -> int:
    return next((s for k, s in FIXED_SIZE.items() if name.startswith(k)), 192)


def scene(size: int, shift: int, seed: int) -> torch.Tensor:
    """Faint noise with one textured patch: a salient object for the map to follow."""
    gen = torch.Generator().manual_seed(seed)
    big = torch.randn(1, 3, size + shift, size + shift, generator=gen) * 0.1
    p = size // 3
    top, left = size // 2 - p // 2 + shift // 2, size // 3
    big[:, :, top:top + p, left:left + p] += torch.randn(1, 3, p, p, generator=gen) * 2
    return big


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    # their own init (truncated normal, std 0.01-0.1) makes activations vanish: every occluded
    # score equals the clean one to the last bit; PyTorch's default init keeps them alive
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, weights=None, num_classes=8, **kwargs).eval()
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        # torchvision zero-initialises some heads (ViT): every logit and gradient would be 0.
        if isinstance(m, nn.Linear) and not bool(m.weight.detach().abs().sum() > 0):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.05)
    if isinstance(model, torchvision.models.ResNet):
        calibrate_batchnorm(model, size_of(name))
    return model


def calibrate_batchnorm(model: nn.Module, size: int) -> None:
    """Set BatchNorm running statistics from a few scenes, as a trained model's come from its data.

    Done for ResNets. With torchvision's defaults (mean 0, variance 1) eval-mode BN normalises
    nothing and each residual block about doubles the activations (logits 3e4 on resnet101, 1e8 on
    resnet152): 23-36 random blocks with zero padding act like a power iteration, so the features
    converge to a centred bump that barely depends on the input, and Grad-CAM++ saturates
    (S_k g_k up to 3e3, so w_k -> h*w / S_k whatever the gradient). Its map then did not follow a
    shift (best correlation 0.40 / 0.58 / 0.53 on resnet101 / resnet152 / wide_resnet101_2, while
    matching the float64 reference); calibrated, logits are about 1, S_k g_k < 0.05 and the
    correlation 0.99. Other families stay as built (those checked have logits below 1 as built).
    """
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch sets the statistics exactly
        m.train()
    try:
        with torch.no_grad():
            model(torch.cat([scene(size, 0, seed=100 + i) for i in range(4)]))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            m.eval()


def explain(explainer, x, targets):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer(x, targets)


def methods(model, size):
    out = {"gradcam": xcam.GradCAM(model), "gradcampp": xcam.GradCAMPlusPlus(model)}
    if "occlusion" in xcam.list_explainers():
        out["occlusion"] = xcam.create("occlusion", model, window=(size // 4, size // 4),
                                       stride=(size // 4, size // 4))
    return out


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))


@pytest.mark.parametrize("name", params(ALL))
def test_automatic_layer_gives_a_real_map(name):
    model = build(name)
    size = size_of(name)
    shift = 32
    big = scene(size, shift, seed=2)
    x = big[:, :, :size, :size]
    with pytest.warns(UserWarning, match="layer=None: using"):
        xcam.GradCAM(model)(x)
    with torch.no_grad():
        top = model(x).argsort(dim=1, descending=True)[0].tolist()
    y = big[:, :, shift:, shift:]
    margin = size // 8
    inner = (slice(margin, -margin), slice(margin, -margin))
    for method, explainer in methods(model, size).items():
        varied, follows = [], []
        for cls in top:
            m = explain(explainer, x, cls).maps[0]
            assert m.shape == (size, size) and torch.isfinite(m).all(), (method, cls)
            if not float(m.max() - m.min()) > 1e-5 * float(m.abs().max()):
                continue  # constant (random weights can make a map tiny, so the test is relative)
            varied.append(cls)
            if name.startswith(TRANSFORMERS + POSITIONAL_HEADS) or method == "occlusion":
                break
            # The map follows the input: the same scene cropped `shift` pixels further gives
            # the same map on the overlap, away from the borders.
            m1 = m[shift:, shift:]
            m2 = explain(explainer, y, cls).maps[0][:-shift, :-shift]
            follows.append(corr(m1[inner], m2[inner]))
            if follows[-1] > 0.8:
                break
        # With random weights a class can have negative evidence everywhere (a correct Grad-CAM
        # map is then exactly 0; Grad-CAM++ on MaxViT gives 0 for 7 of its 8 classes), so classes are
        # tried in order of score.
        assert varied, f"{method}: constant map for every class {top}"
        if follows:
            assert max(follows) > 0.8, (method, follows)


@pytest.mark.parametrize("name", params(ALL))
def test_cam_where_the_head_allows_it(name):
    model = build(name)
    size = size_of(name)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    if name.startswith(NO_GAP_LINEAR):
        with pytest.raises(HeadNotFoundError, match="use GradCAM"):
            xcam.CAM(model)(x)
        return
    cam = xcam.CAM(model)(x)
    grad = xcam.GradCAM(model, cam.layer)(x, cam.targets)
    h, w = cam.low_res.shape[-2:]
    scale = float(cam.low_res.abs().max()) + 1e-12
    if cam.layer.endswith(":relu"):
        # DenseNet pools relu(norm5) with a functional ReLU: the gradient reaches the features
        # through that ReLU, so the identity holds where the features are positive.
        return
    assert float((cam.low_res - h * w * grad.low_res).abs().max()) <= 1e-4 * scale


def test_list_layers_shows_shapes():
    rows = xcam.list_layers(build("resnet18"), torch.zeros(1, 3, 64, 64))
    table = {name: shape for name, _, shape in rows}
    assert table["layer4"] == (512, 2, 2)
    assert table["layer3.1.conv2"] == (256, 4, 4)
    assert table["fc"] == (8,)


def test_vit_tokens_reshaped_to_a_grid():
    model = build("vit_b_32")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    with pytest.warns(UserWarning, match="encoder_layer_11.ln_1"):
        exp = xcam.GradCAM(model)(x)
    assert exp.low_res.shape == (2, 7, 7)
    # same numbers as Grad-CAM written by hand on the (class token dropped) token grid
    with xcam.capture(model, exp.layer) as cap:
        out = model(x)
        g = cap.gradients(out.gather(1, exp.targets[:, None]))[exp.layer]
    f = cap[exp.layer].detach()[:, 1:]
    g = g[:, 1:]
    expected = torch.relu((g.mean(1, keepdim=True) * f).sum(-1)).reshape(2, 7, 7)
    assert torch.allclose(exp.low_res, expected, atol=1e-6)


def test_segmentation_targets():
    torch.manual_seed(0)  # the maps depend on the random weights; not on the tests run before
    model = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=4, aux_loss=False).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[10:30, 20:50] = True
    exp = xcam.GradCAM(model, "backbone.layer4")(x, targets=segmentation(1, mask))
    with torch.no_grad():
        logits = model(x)["out"][0, 1]
    assert torch.allclose(exp.scores, logits[mask].sum()[None], rtol=1e-4)
    assert exp.maps.shape == (1, 64, 64) and float(exp.maps.std()) > 0


def test_detection_targets():
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0,
        min_size=128, max_size=128).eval()
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        det = model(x)[0]
    label = int(det["labels"][0])
    exp = xcam.GradCAM(model, "backbone.body.16")(x, targets=detection(label=label))
    assert torch.allclose(exp.scores, det["scores"][det["labels"] == label].max()[None])
    assert exp.maps.shape == (1, 128, 128) and torch.isfinite(exp.maps).all()
