"""The model-output adapter (:mod:`xcam.outputs`) and its use by every explainer (issue 12, item 2).

A model that wraps its logits (Hugging Face ``ModelOutput``, a dict, a tuple or list, torchvision's
Inception / GoogLeNet namedtuples) must give the same maps as the same model returning the plain
tensor; ``output=`` replaces the rules; callable targets receive the raw output.
"""

from __future__ import annotations

import inspect
import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torchvision.models.googlenet import GoogLeNetOutputs
from torchvision.models.inception import InceptionOutputs

import xcam
from tests.nets import TinyNet, randomize_bn
from xcam.errors import OutputError
from xcam.explanation import Detector
from xcam.outputs import logits
from xcam.registry import EXPLAINERS

T = torch.arange(6.0).reshape(2, 3)
AUX = torch.full((2, 3), -1.0)


class HFLike(OrderedDict):
    """What transformers' ModelOutput is: an ordered dict whose entries are also attributes."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(key) from err


@pytest.mark.parametrize(
    "output",
    [
        pytest.param(T, id="tensor"),
        pytest.param(HFLike(loss=None, logits=T, hidden_states=AUX), id="hf-like"),
        pytest.param(InceptionOutputs(T, AUX), id="inception-namedtuple"),
        pytest.param(GoogLeNetOutputs(T, AUX, AUX), id="googlenet-namedtuple"),
        pytest.param({"logits": T, "aux": AUX}, id="dict-logits"),
        pytest.param({"out": T, "aux": AUX}, id="dict-out-segmentation"),
        pytest.param({"out": AUX, "logits": T}, id="dict-logits-before-out"),
        pytest.param((T, AUX), id="tuple-first"),
        pytest.param([T, AUX], id="list-first"),
    ],
)
def test_rules_find_the_scores(output):
    assert logits(output) is T


def test_hugging_face_model_output():
    modeling_outputs = pytest.importorskip("transformers.modeling_outputs")
    out = modeling_outputs.ImageClassifierOutput(logits=T)
    assert logits(out) is T


@pytest.mark.parametrize(
    "output, words",
    [
        ({"scores": T}, ["dict with keys ['scores']", "output=lambda out"]),
        ((None, T), ["tuple of 2 (NoneType, Tensor)", "output=lambda out"]),
        ([], ["list of 0", "targets=lambda out"]),
        ("logits", ["str", "output="]),
        (None, ["NoneType", "output="]),
    ],
)
def test_unknown_output_is_an_error_naming_the_fix(output, words):
    with pytest.raises(OutputError) as info:
        logits(output)
    for word in words:
        assert word in str(info.value)


def test_output_fn_replaces_the_rules_and_must_return_a_tensor():
    assert logits({"scores": T}, lambda o: o["scores"]) is T
    assert logits(T, lambda o: -o).equal(-T)  # even for a plain tensor
    with pytest.raises(OutputError, match="returned list, not a tensor"):
        logits(T, lambda o: [o])


# ---- every explainer, on wrapped outputs ----------------------------------------------------

class Wrapped(nn.Module):
    def __init__(self, inner: nn.Module, kind: str) -> None:
        super().__init__()
        self.inner = inner
        self.kind = kind

    def forward(self, x):
        out = self.inner(x)
        aux = out.detach() * 0 - 1
        return {
            "dict": lambda: {"logits": out, "aux": aux},
            "tuple": lambda: (out, aux),
            "inception": lambda: InceptionOutputs(out, aux),
            "hf": lambda: HFLike(logits=out),
            "custom": lambda: {"scores": out},
        }[self.kind]()


SPECIAL = {"lficam": "LFI-CAM runs its own LFICAMNet, whose forward returns the logits tensor"}
X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
FAST = {"smoothgrad": {"n_samples": 3}, "vargrad": {"n_samples": 3}, "smoothgradcampp": {"n_samples": 3},
        "integrated_gradients": {"n_steps": 8}, "gradient_shap": {"n_samples": 3},
        "occlusion": {"window": 8, "stride": 8}}


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    model = TinyNet()
    randomize_bn(model, torch.Generator().manual_seed(1))
    return model.eval()


def _maps(name: str, model: nn.Module, targets=None, **kwargs):
    cls = EXPLAINERS.get(name)
    kwargs = {**FAST.get(name, {}), **kwargs}
    if "seed" in inspect.signature(cls).parameters:
        kwargs["seed"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = xcam.create(name, model, **kwargs)(X, targets)
    return exp


KINDS = ["dict", "tuple", "inception", "hf"]
# every wrapper for the explainers that failed before issue 12 and one per explainer otherwise
CLASSIFIERS = [n for n in xcam.list_explainers() if EXPLAINERS.get(n).model_type is not Detector]
CASES = [(name, kind) for i, name in enumerate(CLASSIFIERS)
         for kind in (KINDS if name in ("occlusion", "scorecam", "gradcam") else [KINDS[i % 4]])]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: small convolutions crawl when oversubscribed
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name, kind", CASES)
def test_wrapped_outputs_give_the_plain_tensor_maps(name, kind):
    if name in SPECIAL:
        pytest.skip(SPECIAL[name])
    if EXPLAINERS.get(name).model_type is not None:
        pytest.skip("explains its own kind of model (model_type), not the tiny CNN; see tests/methods")
    tiny = _tiny()
    plain = _maps(name, tiny, targets=[1, 4])
    wrapped = _maps(name, Wrapped(tiny, kind), targets=[1, 4])
    assert torch.allclose(wrapped.maps, plain.maps, rtol=1e-5, atol=1e-7)
    assert torch.equal(wrapped.targets, plain.targets)
    assert torch.allclose(wrapped.scores, plain.scores)


def _with_output() -> list:
    return [n for n in xcam.list_explainers() if n not in SPECIAL
            and EXPLAINERS.get(n).model_type is None
            and "output" in inspect.signature(EXPLAINERS.get(n)).parameters]


@pytest.mark.parametrize("name", _with_output())
def test_output_keyword_reads_any_output(name):
    tiny = _tiny()
    plain = _maps(name, tiny)  # targets=None: the top class, read through output= as well
    custom = _maps(name, Wrapped(tiny, "custom"), output=lambda out: out["scores"])
    assert torch.allclose(custom.maps, plain.maps, rtol=1e-5, atol=1e-7)
    assert torch.equal(custom.targets, plain.targets)
    with pytest.raises(OutputError, match="output="):
        _maps(name, Wrapped(tiny, "custom"))  # without output=: a clear error, not a traceback


@pytest.mark.parametrize("name", ["occlusion", "scorecam", "gradcam", "gradient", "saliency", "smoothgrad"])
def test_callable_targets_receive_the_raw_output(name):
    # Occlusion and Score-CAM raised a raw AttributeError on tuple outputs before issue 12
    tiny = _tiny()
    plain = _maps(name, tiny, targets=lambda out: out[:, 2] - out[:, 0])
    seen: list[type] = []

    def score(out):
        seen.append(type(out))
        return out[0][:, 2] - out[0][:, 0]

    wrapped = _maps(name, Wrapped(tiny, "tuple"), targets=score)
    assert set(seen) == {tuple}
    assert torch.allclose(wrapped.maps, plain.maps, rtol=1e-5, atol=1e-7)
    assert wrapped.targets is None
