"""Bad and unusual inputs to the metrics: one hand-written row each (issue 12).

Each row states its expected outcome: a value equal to a reference computed from the plain,
well-formed inputs; an ``XcamError`` whose message names the argument and the fix (key words
matched); or a specific warning (and then the value too). No raw torch or Python error where an
error is the answer, and no silent wrong value.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import OrderedDict, namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import xcam
from xcam.errors import InputError, InputTypeError, NonFiniteError, OutputError, TargetError, XcamError
from xcam.metrics import (
    average_drop,
    deletion,
    energy_pointing_game,
    faithfulness_correlation,
    increase_in_confidence,
    infidelity,
    insertion,
    max_box_acc,
    pointing_game,
    random_logit,
    relevance_mass,
    relevance_rank,
)

# ------------------------------------------------------------------------------------ fixtures


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


torch.manual_seed(0)
NET = Net().eval()
X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
MAPS = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(2))
MAPS[1, 3, 9] = 2.0  # a unique maximum inside sample 1's box
BOXES = [[(2, 2, 8, 8)], [(4, 0, 16, 6)]]
MASK = xcam.metrics.boxes_to_masks(BOXES, (16, 16))
T = torch.tensor([1, 3])


class HFLikeOutput(OrderedDict):
    """Like transformers' ModelOutput: an ordered dict whose entries are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


InceptionOutputs = namedtuple("InceptionOutputs", ["logits", "aux_logits"])


class Wrapped(nn.Module):
    """``NET`` whose scores come back in another container."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net = NET
        self.kind = kind

    def forward(self, x: Tensor) -> Any:
        out = self.net(x)
        return {
            "tuple": lambda: (out, out.detach() * 0),
            "list": lambda: [out],
            "dict_logits": lambda: {"aux": out * 0, "logits": out},
            "dict_out": lambda: {"out": out},
            "hf": lambda: HFLikeOutput(logits=out, hidden_states=None),
            "inception": lambda: InceptionOutputs(out, out * 0),
            "dict_scores": lambda: {"scores": out},
            "one_d": lambda: out[:, 0],
            "int": lambda: out.round().long(),
        }[self.kind]()


def nan_net() -> nn.Module:
    net = Net().eval()
    with torch.no_grad():
        net.fc.weight[0, 0] = float("nan")
    return net


# ------------------------------------------------------------------------------------ outcomes


@dataclass
class Row:
    id: str
    call: Callable[[], Any]
    expect: Callable[[Callable[[], Any]], None]


def _value(result: Any) -> Tensor:
    """The tensor to compare in a metric's result."""
    for attr in ("auc", "iou"):
        if hasattr(result, attr):
            return getattr(result, attr)
    return result


def equals(reference: Callable[[], Any]) -> Callable[[Callable[[], Any]], None]:
    """The call gives exactly the reference's value (NaN where it has NaN), with no warning."""
    def check(call: Callable[[], Any]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = _value(call())
        want = _value(reference())
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    return check


def raises(exc: type[XcamError], *words: str) -> Callable[[Callable[[], Any]], None]:
    """An XcamError of this class whose message holds every pattern in ``words``."""
    assert issubclass(exc, XcamError)

    def check(call: Callable[[], Any]) -> None:
        with pytest.raises(exc) as info:
            call()
        message = str(info.value)
        for word in words:
            assert re.search(word, message), f"{word!r} not in {message!r}"
    return check


def warns(pattern: str, reference: Callable[[], Any]) -> Callable[[Callable[[], Any]], None]:
    """A UserWarning matching ``pattern``, and the reference's value."""
    def check(call: Callable[[], Any]) -> None:
        with pytest.warns(UserWarning, match=pattern):
            got = _value(call())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = _value(reference())
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    return check


def nan_at(*rows: int) -> Callable[[Callable[[], Any]], None]:
    """NaN exactly at ``rows`` (an undefined score), finite elsewhere."""
    def check(call: Callable[[], Any]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = _value(call())
        assert [i for i, v in enumerate(got.tolist()) if math.isnan(v)] == list(rows)
    return check


def dele(model: Any = NET, inputs: Any = X, maps: Any = MAPS, targets: Any = T, **kw: Any) -> Any:
    return deletion(model, inputs, maps, targets, steps=4, **kw)


def with_nan(t: Tensor, value: float = float("nan")) -> Tensor:
    t = t.clone()
    t[0, 1, 1] = value
    return t


EXPLAINER = xcam.create("gradcam", NET, layer="conv")

# ------------------------------------------------------------------------------------ the table

ROWS = [
    # ---- maps
    Row("maps 2-D", lambda: pointing_game(MAPS[0], BOXES[:1]),
        raises(InputError, r"maps must have shape \(B, H, W\)", r"maps\[None\]")),
    Row("maps 4-D (B, 1, H, W)", lambda: relevance_mass(MAPS[:, None], BOXES),
        raises(InputError, r"\(B, H, W\)", r"\(2, 1, 16, 16\)")),
    Row("maps integer dtype", lambda: relevance_mass(MAPS.long(), BOXES),
        raises(InputTypeError, "maps must be a floating-point", r"maps\.float\(\)")),
    Row("maps numpy array", lambda: energy_pointing_game(MAPS.numpy(), BOXES),
        raises(InputTypeError, "maps must be a torch.Tensor", r"explanation\.maps")),
    Row("maps nested list", lambda: max_box_acc(MAPS.tolist(), BOXES),
        raises(InputTypeError, "maps must be a torch.Tensor", "list")),
    Row("maps with NaN", lambda: relevance_rank(with_nan(MAPS), BOXES),
        raises(InputError, "maps contains 1 NaN", "nan_to_num")),
    Row("maps with inf", lambda: max_box_acc(with_nan(MAPS, float("inf")), BOXES),
        raises(InputError, "NaN or infinite", "finite")),
    Row("maps empty batch", lambda: pointing_game(torch.zeros(0, 16, 16), []),
        raises(InputError, "maps is empty", r"\(0, 16, 16\)")),
    Row("maps zero width", lambda: pointing_game(torch.zeros(2, 16, 0), BOXES),
        raises(InputError, "maps is empty")),
    Row("maps at another resolution", lambda: dele(maps=MAPS[:, :8, :8]),
        raises(InputError, r"input resolution \(16, 16\)", r"xcam\.upsample")),
    Row("maps for fewer images", lambda: dele(maps=MAPS[:1]),
        raises(InputError, "maps has 1 samples but inputs has 2", "one map per image")),
    Row("maps float64", lambda: relevance_mass(MAPS.double(), BOXES),
        equals(lambda: relevance_mass(MAPS, BOXES))),
    Row("maps float16", lambda: pointing_game(MAPS.half(), BOXES),
        equals(lambda: pointing_game(MAPS.half().float(), BOXES))),
    Row("maps requiring grad", lambda: relevance_rank(MAPS.clone().requires_grad_(), BOXES),
        equals(lambda: relevance_rank(MAPS, BOXES))),
    Row("maps float64 in deletion", lambda: dele(maps=MAPS.double()), equals(lambda: dele())),
    # ---- ground truth
    Row("one box not wrapped in a list", lambda: pointing_game(MAPS[:1], [(2, 2, 8, 8)]),
        raises(InputError, r"gt\[0\] looks like one box", r"wrap it as \[\[x0")),
    Row("box corners swapped", lambda: pointing_game(MAPS[:1], [[(8, 2, 2, 8)]]),
        raises(InputError, "x1 < x0", "top-left corner first")),
    Row("box with NaN", lambda: relevance_mass(MAPS[:1], [[(0, 0, float("nan"), 4)]]),
        raises(InputError, r"gt\[0\] contains NaN")),
    Row("boxes for another batch size", lambda: pointing_game(MAPS, [[(0, 0, 4, 4)]]),
        raises(InputError, "gt has 1 entries for a batch of 2", r"one \(possibly empty\) list")),
    Row("box reaching outside the image", lambda: relevance_mass(MAPS, [[(8, 8, 40, 40)], BOXES[1]]),
        warns(r"gt\[0\] has a box .* reaches outside the 16 x 16 .* clipped",
              lambda: relevance_mass(MAPS, [[(8, 8, 16, 16)], BOXES[1]]))),
    Row("box with negative corner", lambda: energy_pointing_game(MAPS, [[(-5, -5, 4, 4)], BOXES[1]]),
        warns("reaches outside", lambda: energy_pointing_game(MAPS, [[(0, 0, 4, 4)], BOXES[1]]))),
    Row("box entirely outside the image", lambda: pointing_game(MAPS, [[(20, 20, 30, 30)], BOXES[1]]),
        warns(r"gt\[0\] has boxes but none covers a pixel",
              lambda: torch.tensor([float("nan"), 1.0]))),
    Row("box rounding half a pixel past the edge",
        lambda: relevance_rank(MAPS, [[(2, 2, 16.5, 8)], BOXES[1]]),
        equals(lambda: relevance_rank(MAPS, [[(2, 2, 16, 8)], BOXES[1]]))),
    Row("a sample without boxes", lambda: pointing_game(MAPS, [[], BOXES[1]]), nan_at(0)),
    Row("empty mask", lambda: relevance_rank(MAPS, torch.zeros(2, 16, 16, dtype=torch.bool)),
        nan_at(0, 1)),
    Row("mask as float 0 / 1", lambda: pointing_game(MAPS, MASK.float()),
        raises(InputTypeError, "gt mask must be a bool tensor", r"gt > 0")),
    Row("mask of another size", lambda: energy_pointing_game(MAPS, MASK[:, :8]),
        raises(InputError, r"gt mask must have the maps' shape", r"\(2, 16, 16\)")),
    Row("mask as numpy bool array", lambda: energy_pointing_game(MAPS, MASK.numpy()),
        equals(lambda: energy_pointing_game(MAPS, MASK))),
    Row("boxes as a numpy (B, 4) array",
        lambda: max_box_acc(MAPS, np.array([[2, 2, 8, 8], [4, 0, 16, 6]])),
        equals(lambda: max_box_acc(MAPS, BOXES))),
    Row("boxes as an integer (B, 4) tensor",
        lambda: pointing_game(MAPS, torch.tensor([[2, 2, 8, 8], [4, 0, 16, 6]])),
        equals(lambda: pointing_game(MAPS, BOXES))),
    Row("boxes as numpy arrays per sample",
        lambda: relevance_mass(MAPS, [np.array([[2.0, 2, 8, 8]]), np.array([[4, 0, 16, 6]])]),
        equals(lambda: relevance_mass(MAPS, BOXES))),
    Row("gt a string", lambda: pointing_game(MAPS, "boxes.csv"),
        raises(InputTypeError, "gt must be a list", "str")),
    Row("MaxBoxAcc threshold below 0", lambda: max_box_acc(MAPS, BOXES, thresholds=[-0.5]),
        # every pixel is kept: the whole image is the box, IoU = box area / 256
        warns("thresholds below 0 .* whole\\s+image", lambda: torch.tensor([[36 / 256], [72 / 256]]))),
    Row("MaxBoxAcc thresholds a string", lambda: max_box_acc(MAPS, BOXES, thresholds="0.5"),
        raises(InputTypeError, "thresholds must be a sequence", "str")),
    Row("MaxBoxAcc no IoU level", lambda: max_box_acc(MAPS, BOXES, iou_thresholds=[]),
        raises(InputError, "iou_thresholds is empty", r"\(0\.5,\)")),
    Row("MaxBoxAcc v2 not a bool", lambda: max_box_acc(MAPS, BOXES, v2="yes"),
        raises(InputTypeError, "v2 must be a bool")),
    Row("pointing tolerance negative", lambda: pointing_game(MAPS, BOXES, tolerance=-1),
        raises(InputError, "tolerance must be >= 0")),
    Row("pointing tolerance NaN", lambda: pointing_game(MAPS, BOXES, tolerance=float("nan")),
        raises(InputTypeError, "tolerance must be a real number")),
    # ---- targets
    Row("targets numpy int64 array", lambda: dele(targets=np.array([1, 3])), equals(lambda: dele())),
    Row("targets numpy integer", lambda: dele(targets=np.int64(2)), equals(lambda: dele(targets=2))),
    Row("targets 0-d tensor", lambda: dele(targets=torch.tensor(2)), equals(lambda: dele(targets=2))),
    Row("targets a list", lambda: dele(targets=[1, 3]), equals(lambda: dele())),
    Row("targets int32 tensor", lambda: dele(targets=T.int()), equals(lambda: dele())),
    Row("targets bool tensor", lambda: dele(targets=torch.tensor([True, False])),
        raises(TargetError, "targets is a bool tensor", "not classes")),
    Row("targets True", lambda: dele(targets=True), raises(TargetError, "not a bool", "pass an int")),
    Row("targets float tensor", lambda: dele(targets=T.float()),
        raises(TargetError, "integer tensor", r"targets\.long\(\)")),
    Row("targets out of range", lambda: dele(targets=7),
        raises(TargetError, "class 7 is out of range", r"0\.\.4")),
    Row("targets one per sample missing", lambda: dele(targets=[1, 2, 3]),
        raises(TargetError, "3 entries for a batch of 2")),
    Row("targets a callable", lambda: dele(targets=lambda out: out[:, 0]),
        raises(TargetError, "class indices")),
    Row("targets 2-D tensor", lambda: dele(targets=T[:, None]),
        raises(TargetError, "1-D integer tensor", r"argmax\(dim=1\)")),
    Row("random_logit targets numpy", lambda: random_logit(EXPLAINER, X, np.array([1, 3]), 5, seed=0),
        equals(lambda: random_logit(EXPLAINER, X, T, 5, seed=0))),
    # ---- model outputs
    Row("output tuple", lambda: dele(Wrapped("tuple")), equals(lambda: dele())),
    Row("output list", lambda: insertion(Wrapped("list"), X, MAPS, T, steps=4),
        equals(lambda: insertion(NET, X, MAPS, T, steps=4))),
    Row("output dict 'logits'", lambda: average_drop(Wrapped("dict_logits"), X, MAPS, T),
        equals(lambda: average_drop(NET, X, MAPS, T))),
    Row("output dict 'out'", lambda: increase_in_confidence(Wrapped("dict_out"), X, MAPS, None),
        equals(lambda: increase_in_confidence(NET, X, MAPS, None))),
    Row("output Hugging Face ModelOutput",
        lambda: faithfulness_correlation(Wrapped("hf"), X, MAPS, T, n=4, subset=16, seed=0),
        equals(lambda: faithfulness_correlation(NET, X, MAPS, T, n=4, subset=16, seed=0))),
    Row("output Inception namedtuple",
        lambda: infidelity(Wrapped("inception"), X, MAPS, T, n_perturb_samples=2, seed=0),
        equals(lambda: infidelity(NET, X, MAPS, T, n_perturb_samples=2, seed=0))),
    Row("output dict with another key and output=",
        lambda: dele(Wrapped("dict_scores"), output=lambda out: out["scores"]),
        equals(lambda: dele())),
    Row("output dict with another key, no output=", lambda: dele(Wrapped("dict_scores")),
        raises(OutputError, r"dict with keys \['scores'\]", r"output=lambda out")),
    Row("output 1-D", lambda: dele(Wrapped("one_d")),
        raises(OutputError, r"\(B, classes\) = \(2, K\)", r"\(2,\)", "output=")),
    Row("output integer scores", lambda: dele(Wrapped("int")),
        raises(OutputError, "floating point", r"int64")),
    Row("output= returns a list", lambda: dele(output=lambda out: [out]),
        raises(OutputError, "callable returned list")),
    Row("output= a string", lambda: dele(output="logits"),
        raises(InputTypeError, "output must be None or a callable", "str")),
    Row("clean_output a tuple", lambda: dele(clean_output=(NET(X), None)), equals(lambda: dele())),
    Row("clean_output a number", lambda: dele(clean_output=0.5),
        raises(InputTypeError, "clean_output must be the model's output", "float")),
    Row("model with NaN weights", lambda: dele(nan_net()),
        raises(NonFiniteError, "NaN or infinite", "weights")),
    # ---- inputs and settings
    Row("inputs float64, model float32", lambda: dele(inputs=X.double()),
        raises(InputTypeError, "inputs are torch.float64", "float32", r"inputs\.float\(\)")),
    Row("inputs float16 (lossless cast up)", lambda: dele(inputs=X.half()),
        equals(lambda: dele(inputs=X.half().float()))),
    Row("inputs with one channel", lambda: dele(inputs=X[:, :1]),
        raises(InputError, "inputs has 1 channels", "first convolution", r"expand\(-1, 3")),
    Row("inputs numpy", lambda: dele(inputs=X.numpy()),
        raises(InputTypeError, "inputs must be a torch.Tensor", "to_tensor")),
    Row("inputs uint8", lambda: dele(inputs=(X * 50).clamp(0, 255).to(torch.uint8)),
        raises(InputTypeError, "floating-point", r"inputs\.float\(\)")),
    Row("inputs with NaN", lambda: dele(inputs=with_nan(X)),
        raises(InputError, "inputs contains 16 NaN", "clean or clamp")),
    Row("inputs 3-D", lambda: dele(inputs=X[0]), raises(InputError, r"inputs\[None\]")),
    Row("model not callable", lambda: dele(model="resnet50"),
        raises(InputTypeError, "model must be a torch.nn.Module", "str")),
    Row("batch_size 0", lambda: dele(batch_size=0), raises(InputError, "batch_size must be >= 1")),
    Row("steps 0", lambda: deletion(NET, X, MAPS, T, steps=0), raises(InputError, "steps must be >= 1")),
    Row("baseline of the wrong shape", lambda: dele(baseline=torch.zeros(2, 1, 1)),
        raises(InputError, r"baseline of shape \(2, 1, 1\) does not broadcast", r"\(C, 1, 1\)")),
    Row("baseline NaN", lambda: dele(baseline=float("nan")),
        raises(InputError, "baseline must be finite")),
    Row("correlation subset larger than the image",
        lambda: faithfulness_correlation(NET, X, MAPS, T, subset=300),
        raises(InputError, "subset=300", "subset <= 256")),
]


def test_the_table_is_large_enough() -> None:
    assert len(ROWS) >= 30
    assert len({row.id for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input(row: Row) -> None:
    row.expect(row.call)
