"""The contract every registered explainer keeps; parametrised over the registry.

A new explainer is picked up here without editing this file. Explainers that need a special kind
of model get it from ``SPECIAL_MODELS``, keyed by their ``model_type`` flag (LFI-CAM its own
network; detector explainers such as D-RISE a tiny torchvision detector, and their own contract
below: detections, not class scores).
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
from torch import nn

import xcam
from tests.nets import TinyNet, randomize_bn, tiny_detector, tiny_vit
from xcam.explanation import AttentionModel, Detector
from xcam.methods import CAMExplainer, ViTModel
from xcam.registry import EXPLAINERS
from xcam.targets import channel, detection


def _lficam_model() -> nn.Module:
    from xcam.lfi import LFICAMNet

    torch.manual_seed(0)
    import torchvision

    backbone = torchvision.models.resnet18(num_classes=5)
    backbone.maxpool = nn.Identity()  # a 2x2 attention map at 32 px, not a constant 1x1 one
    return LFICAMNet(backbone, depth=1).eval()


SPECIAL_MODELS = {AttentionModel: _lficam_model, Detector: tiny_detector, ViTModel: tiny_vit}
ALL_NAMES = xcam.list_explainers()
DETECTORS = [n for n in ALL_NAMES if EXPLAINERS.get(n).model_type is Detector]
NAMES = [n for n in ALL_NAMES if n not in DETECTORS]  # explainers of class scores


def make(name: str) -> tuple[nn.Module, object]:
    cls = EXPLAINERS.get(name)
    if cls.model_type is not None:
        model = SPECIAL_MODELS[cls.model_type]()
    else:
        torch.manual_seed(0)
        model = TinyNet()
        randomize_bn(model, torch.Generator().manual_seed(1))
    model.eval()
    kwargs = {}
    if "seed" in inspect.signature(cls).parameters:
        kwargs["seed"] = 0
    if cls.model_type is Detector and "n_masks" in inspect.signature(cls).parameters:
        kwargs["n_masks"] = 4  # a detector pass is costly: few masks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, xcam.create(name, model, **kwargs)


def hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def run(explainer, x, targets=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer(x, targets)


def test_registry_lists_the_core_methods():
    assert {"cam", "gradcam", "gradcampp", "smoothgradcampp"} <= set(NAMES)
    with pytest.raises(ValueError, match="did you mean 'gradcam'"):
        xcam.create("gradcma", TinyNet())


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtype_fields(name):
    model, explainer = make(name)
    exp = run(explainer, X)
    assert exp.maps.shape == (2, 32, 32)
    assert exp.maps.dtype == torch.float32
    assert exp.maps.device == X.device
    assert torch.isfinite(exp.maps).all()
    assert exp.method == name
    assert exp.scores.shape == (2,) and not exp.scores.requires_grad
    with torch.no_grad():
        out = model(X)
    assert exp.targets is not None and torch.equal(exp.targets, out.argmax(1))
    assert torch.allclose(exp.scores, out.gather(1, exp.targets[:, None])[:, 0], atol=1e-5)
    one = run(explainer, X[:1])
    assert one.maps.shape == (1, 32, 32)  # B = 1 stays 3-D


@pytest.mark.parametrize("name", NAMES)
def test_leaves_model_as_it_was(name):
    model, explainer = make(name)
    model.train()
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    sentinel = {n: torch.full_like(p, 3.0) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = sentinel[n].clone()
    requires = [p.requires_grad for p in model.parameters()]
    n_hooks = hooks(model)
    run(explainer, X, targets=1)
    assert hooks(model) == n_hooks
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # BN stats too
    assert all(torch.equal(p.grad, sentinel[n]) for n, p in model.named_parameters())
    assert [p.requires_grad for p in model.parameters()] == requires


@pytest.mark.parametrize("name", NAMES)
def test_no_hook_left_after_an_exception(name):
    model, explainer = make(name)
    n_hooks = hooks(model)
    with pytest.raises(ValueError):
        run(explainer, X, targets=[0, 99])
    assert hooks(model) == n_hooks
    with pytest.raises(ValueError):
        run(explainer, X, targets=lambda out: out[:, :2])  # wrong shape from a callable
    assert hooks(model) == n_hooks


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_samples_one_by_one(name):
    model, explainer = make(name)
    cls = EXPLAINERS.get(name)
    if not cls.deterministic:
        pytest.skip("stochastic: noise for a batch is not the noise for its samples alone")
    batch = run(explainer, X, targets=[1, 3])
    for b, t in enumerate([1, 3]):
        single = run(explainer, X[b:b + 1], targets=t)
        scale = max(1e-6, float(batch.maps[b].abs().max()))
        assert float((single.maps[0] - batch.maps[b]).abs().max()) <= 1e-4 * scale


@pytest.mark.parametrize("name", [n for n in NAMES if n != "cam"
                                  and issubclass(EXPLAINERS.get(n), CAMExplainer)])
def test_cam_family_accepts_unit_targets(name):
    model, explainer = make(name)
    exp = run(explainer, X, targets=channel("pool:input", 3))
    assert exp.targets is None
    with torch.no_grad(), xcam.capture(model, "pool:input") as cap:
        model(X)
    assert torch.allclose(exp.scores, cap["pool:input"][:, 3].sum((1, 2)), rtol=1e-5)


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if not EXPLAINERS.get(n).deterministic])
def test_stochastic_methods_are_reproducible_with_a_seed(name):
    _, a = make(name)
    _, b = make(name)
    assert torch.equal(run(a, X).maps, run(b, X).maps)


def test_controls_are_a_class_flag():
    """Controls are found by their ``is_control`` flag, not by a list of names (issue 14)."""
    from xcam.methods.controls import CONTROL_NAMES
    from xcam.registry import list_controls

    assert sorted(CONTROL_NAMES) == list_controls() == ["blank", "center", "edges", "random"]
    assert not any(EXPLAINERS.get(n).is_control for n in xcam.list_explainers() if n not in CONTROL_NAMES)


def test_explainers_satisfy_the_protocol_metrics_use():
    """Every registered explainer is an ExplainerLike (what metrics take, without xcam.methods)."""
    from xcam.explanation import ExplainerLike, Explanation, ExplanationLike

    for name in ALL_NAMES:
        assert issubclass(EXPLAINERS.get(name), ExplainerLike), name
    maps = torch.zeros(1, 2, 2)
    assert isinstance(Explanation(maps, None, None, torch.zeros(1), None, "x"), ExplanationLike)


def test_one_did_you_mean_hint():
    """Every name suggestion in xcam comes from xcam._checks.did_you_mean."""
    from xcam._checks import did_you_mean

    assert did_you_mean("gradcma", ["gradcam", "scorecam"]) == "; did you mean 'gradcam'?"
    assert did_you_mean("zzz", ["gradcam"]) == ""
    assert did_you_mean("layr4", ["layer4"], cutoff=0.5) == "; did you mean 'layer4'?"


# ---- detector explainers (model_type Detector): detections, not class scores -----------------

XD = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # pixels in [0, 1]


def _top(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    with torch.no_grad():
        dets = model(list(x))
    k = [int(d["scores"].argmax()) for d in dets]
    labels = [int(d["labels"][i]) for d, i in zip(dets, k)]
    return torch.stack([d["boxes"][i] for d, i in zip(dets, k)]), labels


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", DETECTORS)
def test_detector_shapes_targets_and_batch(name):
    model, explainer = make(name)
    boxes, labels = _top(model, XD)
    exp = run(explainer, XD)  # targets=None: each image's top detection
    assert exp.maps.shape == (2, 32, 32) and exp.maps.dtype == torch.float32
    assert torch.isfinite(exp.maps).all() and exp.maps.abs().sum() > 0
    assert exp.method == name and exp.targets.tolist() == labels
    assert exp.scores.shape == (2,) and not exp.scores.requires_grad
    # the same detections named explicitly give the same maps; each sample alone gives its row
    explicit = run(explainer, XD, targets=boxes)
    assert explicit.targets is None  # a box-only target
    named = run(explainer, XD, targets=detection(label=labels[1], box=boxes[1]))
    alone = run(explainer, XD[1:], targets=detection(label=labels[1], box=boxes[1]))
    assert torch.allclose(named.maps[1], exp.maps[1], atol=1e-6)
    assert torch.allclose(alone.maps[0], named.maps[1], atol=1e-6)
    assert run(explainer, XD[:1]).maps.shape == (1, 32, 32)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", DETECTORS)
def test_detector_leaves_model_as_it_was_and_no_hook_after_an_exception(name):
    model, explainer = make(name)
    model.train()
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    n_hooks = hooks(model)
    run(explainer, XD, targets=1)
    assert hooks(model) == n_hooks
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(torch.equal(p.grad, torch.full_like(p, 3.0)) for p in model.parameters())
    for bad in ([0, 99], lambda out: out, [1.0, 2.0, 3.0]):
        with pytest.raises(ValueError):
            run(explainer, XD, targets=bad)
        assert hooks(model) == n_hooks
    with pytest.raises(TypeError, match="detector"):  # a classifier is refused with the fix
        run(xcam.create(name, TinyNet().eval()), XD)
