"""No device sync per explainer call for checks, counted on the CPU.

On an accelerator the value checks (NaN inputs, NaN scores, class range, NaN or constant maps) are
deferred to the first read of the explanation (``xcam._checks.checks_deferred``). Here that rule is
patched to hold on the CPU, and every Python-level way to read a tensor value on the host
(``item``, ``bool``, ``int``, ``float``, ``tolist``, ``nonzero``, ``cpu``, ``numpy``) is counted: a
check that reads a flag inside the call shows up as a count, without a GPU.
"""

from __future__ import annotations

import pickle
import warnings
from collections import Counter
from contextlib import contextmanager

import pytest
import torch
from torch import nn

import xcam
from tests.nets import TinyNet
from xcam import _checks
from xcam.errors import DeadEndWarning, InputError, NonFiniteError, TargetError

READS = ("item", "__bool__", "__int__", "__float__", "__index__", "tolist", "nonzero", "cpu", "numpy")
LAYER = "features.4"
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@contextmanager
def counting():
    counts: Counter[str] = Counter()
    saved = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(name, fn):
        def counted(self, *args, **kwargs):
            counts[name] += 1
            return fn(self, *args, **kwargs)
        return counted

    for name, fn in saved.items():
        setattr(torch.Tensor, name, wrap(name, fn))
    try:
        yield counts
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


@pytest.fixture
def deferred(monkeypatch):
    monkeypatch.setattr(_checks, "checks_deferred", lambda device: True)


@pytest.fixture
def model(tiny) -> nn.Module:
    """The shared seeded TinyNet (conftest's ``tiny``) under the name these tests use."""
    return tiny


CAM7 = ["gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigencam"]


@pytest.mark.parametrize("targets", [None, 2, [0, 3], torch.tensor([2, 4]), lambda out: out[:, 0]])
def test_an_explainer_call_reads_no_tensor_value(model, deferred, targets):
    explainer = xcam.GradCAM(model, LAYER)
    explainer(X)  # the first call's range check reads the inputs once
    with counting() as counts:
        explanation = explainer(X, targets=targets)
    assert sum(counts.values()) == 0, counts
    with counting() as counts:
        _ = explanation.maps
        _ = explanation.scores
    assert counts == Counter({"tolist": 1}), counts  # one read of all the flags together


def test_eager_on_the_cpu_is_a_handful_of_reads(model):
    explainer = xcam.GradCAM(model, LAYER)
    explainer(X)
    with counting() as counts:
        explainer(X, targets=[0, 3])
    # input, scores, NaN map, constant map: one flag each, no range check for host ints
    assert counts == Counter({"__bool__": 4}), counts


def test_one_pass_for_seven_methods_reads_nothing(model, deferred):
    methods = [xcam.CAM(model), *[xcam.create(n, model, layer=LAYER) for n in CAM7]]
    xcam.explain(model, X, methods)
    with counting() as counts:
        out = xcam.explain(model, X, methods, targets=[3, 2])
    assert sum(counts.values()) == 0, counts
    alone = xcam.GradCAM(model, LAYER)(X, targets=[3, 2])
    assert torch.equal(out["gradcam"].maps, alone.maps)


def test_nan_inputs_are_reported_before_the_maps_can_be_read(model, deferred):
    bad = X.clone()
    bad[0, 0, 0, 0] = float("nan")
    explanation = xcam.GradCAM(model, LAYER)(bad)
    for _ in range(2):  # and again on the next read: the error is not used up
        with pytest.raises(InputError, match="1 NaN or infinite"):
            _ = explanation.maps
    with pytest.raises(InputError, match="NaN"):
        _ = xcam.explain(model, bad, ["gradcam", "eigencam"], layer=LAYER)["eigencam"].maps
    with pytest.raises(InputError, match="NaN"):
        pickle.dumps(explanation)


def test_nan_weights_out_of_range_classes_and_constant_maps(model, deferred):
    broken = TinyNet().eval()
    with torch.no_grad():
        broken.fc.weight[0, 0] = float("nan")
    explanation = xcam.GradCAM(broken, LAYER)(X)
    with pytest.raises(NonFiniteError, match="NaN or infinite"):
        _ = explanation.scores
    explanation = xcam.GradCAM(model, LAYER)(X, targets=torch.tensor([0, 9]))
    with pytest.raises(TargetError, match="class 9 is out of range"):
        _ = explanation.maps
    with pytest.raises(TargetError, match="class 9"):  # host ints: at once, no read needed
        xcam.GradCAM(model, LAYER)(X, targets=[0, 9])
    flat = TinyNet().eval()
    with torch.no_grad():
        flat.fc.weight.zero_()
    explanation = xcam.GradCAM(flat, LAYER)(X)
    with pytest.warns(DeadEndWarning, match="constant map"):
        _ = explanation.maps
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _ = explanation.maps  # warned once, on the first read


def test_an_error_inside_the_call_reports_the_bad_input_first(model, deferred):
    bad = X.clone()
    bad[1] = float("inf")

    def failing(out):
        raise RuntimeError("downstream failure")

    with pytest.raises(InputError, match="NaN or infinite") as info:
        xcam.GradCAM(model, LAYER)(bad, targets=failing)
    assert isinstance(info.value.__cause__, RuntimeError)
