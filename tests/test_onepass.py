"""``xcam.explain``: one forward + backward pass shared by the methods that declare ``shares_pass``.

Driven by the registry and the declared needs (``shares_pass``, ``needs_gradients``), never by
names: a new CAM-family method that only implements ``low_res`` is picked up here.
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
from torch import nn

import xcam
from tests.nets import TinyNet
from xcam.errors import InputError, InputTypeError, TargetError
from xcam.methods import CAMExplainer
from xcam.registry import EXPLAINERS
from xcam.targets import channel

LAYER = "features.4"
X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def model(tiny) -> nn.Module:
    """The shared seeded TinyNet (conftest's ``tiny``) under the name these tests use."""
    return tiny


def build(name: str, model: nn.Module, **extra):
    params = inspect.signature(EXPLAINERS.get(name)).parameters
    kwargs = dict(extra)
    if "seed" in params:
        kwargs["seed"] = 0
    if "layer" in params and name != "cam":  # CAM only takes its head's features
        kwargs["layer"] = LAYER
    return xcam.create(name, model, **kwargs)


SHARING = [n for n in xcam.list_explainers() if EXPLAINERS.get(n).shares_pass]
CAM_FAMILY = [n for n in SHARING if issubclass(EXPLAINERS.get(n), CAMExplainer)]


def test_the_cam_family_and_the_controls_declare_it():
    # what the issue lists must be found through the declared needs
    for name in ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigencam"):
        assert name in CAM_FAMILY
    assert set(xcam.registry.list_controls()) <= set(SHARING)
    # methods whose explain does more than one pass do not share
    for name in ("scorecam", "smoothgradcampp", "shapleycam", "ablationcam", "opticam", "occlusion"):
        assert name not in SHARING


def count_passes(model: nn.Module):
    counts = {"forward": 0, "backward": 0}

    def fwd(*_):
        counts["forward"] += 1

    def bwd(*_):
        counts["backward"] += 1

    handles = [model.register_forward_hook(fwd), model.fc.register_full_backward_hook(bwd)]
    return counts, handles


def test_one_forward_and_one_backward_for_every_sharing_method(model):
    explainers = {n: build(n, model) for n in SHARING}
    xcam.explain(model, X, explainers)  # first call: CAM finds its head, layers resolve
    counts, handles = count_passes(model)
    try:
        out = xcam.explain(model, X, explainers, targets=[0, 3, 1])
    finally:
        for h in handles:
            h.remove()
    assert counts == {"forward": 1, "backward": 1}
    assert list(out) == SHARING
    # alone, each pays for its own pass
    counts, handles = count_passes(model)
    try:
        for e in explainers.values():
            e(X, targets=[0, 3, 1])
    finally:
        for h in handles:
            h.remove()
    assert counts["forward"] == len(SHARING)
    assert counts["backward"] == sum(EXPLAINERS.get(n).needs_gradients for n in SHARING)
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules()) == 0


def test_controls_alone_need_only_the_clean_forward(model):
    controls = xcam.registry.list_controls()
    counts, handles = count_passes(model)
    try:
        xcam.explain(model, X, [build(n, model) for n in controls])
    finally:
        for h in handles:
            h.remove()
    assert counts == {"forward": 1, "backward": 0}


@pytest.mark.parametrize("targets", [None, [4, 0, 2], lambda out: out.softmax(1)[:, 1],
                                     channel("features.5", 3)])
def test_results_equal_each_explainer_alone(model, targets):
    names = [n for n in SHARING if not (n == "cam" and targets is not None and not isinstance(targets, list))]
    names += ["scorecam"]  # runs as usual, in the same call
    together = xcam.explain(model, X, {n: build(n, model) for n in names}, targets=targets)
    assert list(together) == names
    for name in names:
        alone = build(name, model)(X, targets=targets)
        got = together[name]
        assert torch.equal(got.maps, alone.maps), name
        assert torch.equal(got.scores, alone.scores), name
        assert (got.targets is None) == (alone.targets is None), name
        if alone.targets is not None:
            assert torch.equal(got.targets, alone.targets), name
        if alone.low_res is not None:
            assert torch.equal(got.low_res, alone.low_res), name
        assert (got.layer, got.method, got.params) == (alone.layer, alone.method, alone.params)


def test_two_layers_and_eigen_smooth_in_one_pass(model):
    methods = {
        "gradcam_deep": xcam.GradCAM(model, LAYER),
        "gradcam_shallow": xcam.GradCAM(model, "features.2"),
        "gradcampp_smooth": xcam.GradCAMPlusPlus(model, LAYER, eigen_smooth=True),
        "cam": xcam.CAM(model),
    }
    xcam.explain(model, X, methods)
    counts, handles = count_passes(model)
    try:
        out = xcam.explain(model, X, methods, targets=2)
    finally:
        for h in handles:
            h.remove()
    assert counts == {"forward": 1, "backward": 1}
    for key, e in methods.items():
        assert torch.equal(out[key].maps, e(X, targets=2).maps), key
    assert not torch.equal(out["gradcam_deep"].maps, out["gradcam_shallow"].maps)


def test_names_take_layer_and_output(model):
    out = xcam.explain(model, X, ["gradcam", "layercam"], layer=LAYER, output=lambda o: o * 2)
    alone = xcam.GradCAM(model, LAYER, output=lambda o: o * 2)(X)
    assert out["gradcam"].layer == LAYER
    assert torch.equal(out["gradcam"].maps, alone.maps)
    assert torch.allclose(out["gradcam"].scores, 2 * xcam.GradCAM(model, LAYER)(X).scores)


def test_errors(model):
    with pytest.raises(InputError, match="two entries called 'gradcam'"):
        xcam.explain(model, X, [xcam.GradCAM(model, LAYER), xcam.GradCAM(model, "features.2")])
    with pytest.raises(InputError, match="did you mean 'gradcam'"):
        xcam.explain(model, X, ["gradcan"])
    with pytest.raises(InputError, match="another model"):
        xcam.explain(model, X, [xcam.GradCAM(TinyNet(), LAYER)])
    with pytest.raises(InputTypeError, match="list of names"):
        xcam.explain(model, X, "gradcam")
    with pytest.raises(InputError, match="empty"):
        xcam.explain(model, X, [])
    with pytest.raises(TargetError):  # what CAM alone raises for a callable target
        xcam.explain(model, X, [xcam.CAM(model), "gradcam"], targets=lambda out: out[:, 0])
    with pytest.raises(InputError, match="eigen_smooth"):
        xcam.explain(model, X, [xcam.HiResCAM(model, LAYER, eigen_smooth=True)])
    with pytest.raises(InputError, match="NaN"):
        xcam.explain(model, X.clone().fill_(float("nan")), ["gradcam"])
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0


def test_a_declaration_without_its_method_is_refused():
    with pytest.raises(TypeError, match="explain_pass"):
        class Broken(xcam.methods.Explainer):  # noqa: F841
            shares_pass = True

            def explain(self, inputs, target):
                raise NotImplementedError

    class OwnPasses(CAMExplainer):  # overrides explain without declaring: does not share
        def explain(self, inputs, target):
            raise NotImplementedError

    assert not OwnPasses.shares_pass
