# ruff: noqa: E501  (a table: one row per line reads best)
"""Bad and unusual inputs across explainers, capture and targets (issue 12: no silent wrong answers).

A hand-written table. Each row states the expected outcome and is checked exactly:

- ``Same(got, reference)``: the result equals a reference computed another way (a cast done by
  hand, a plain int target, the plain-tensor model);
- ``Fails(error, words)``: an :class:`~xcam.errors.XcamError` of that type whose message holds every
  key word (the argument, what was given, the fix); never a raw torch or Python exception;
- ``Warns(category, words)``: a warning of that category whose message holds the words (and the
  call still returns);
- ``Quiet(category)``: the call succeeds without a warning of that category.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

import xcam
from tests.nets import TinyNet, randomize_bn
from xcam.errors import (
    DeadEndWarning,
    DisconnectedError,
    GradientModeError,
    HeadNotFoundError,
    InputError,
    InputRangeWarning,
    InputTypeError,
    LayerNotFoundError,
    NonFiniteError,
    OutputError,
    TargetError,
    XcamError,
)
from xcam.methods import (
    CAM,
    GradCAM,
    GradCAMPlusPlus,
    InputGradient,
    Occlusion,
    ScoreCAM,
    SmoothGrad,
)
from xcam.targets import class_scores

# ---- models ---------------------------------------------------------------------------------

def _tiny() -> nn.Module:
    torch.manual_seed(0)
    model = TinyNet()
    randomize_bn(model, torch.Generator().manual_seed(1))
    return model.eval()


TINY = _tiny()
X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
RAW = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 255  # raw pixels
UNIT = RAW / 255  # to_tensor output, not normalized


class Wrap(nn.Module):
    """TINY's logits in another container."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net = TINY
        self.kind = kind

    def forward(self, x):
        out = self.net(x)
        return {"dict": lambda: {"logits": out}, "tuple": lambda: (out, out.detach()),
                "hf": lambda: _HF(logits=out), "scores": lambda: {"scores": out},
                "inf": lambda: out * float("inf"), "map": lambda: out[:, :, None, None]}[self.kind]()


class _HF(dict):
    def __getattr__(self, key):
        return self[key]


class NormalizesInside(nn.Module):
    """Takes [0, 1] pixels and normalises them, as torchvision's detection models do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TINY
        self.image_mean, self.image_std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

    def forward(self, x):
        mean, std = torch.tensor(self.image_mean)[:, None, None], torch.tensor(self.image_std)[:, None, None]
        return self.net((x - mean) / std)


class SideBranch(nn.Module):
    """``side`` runs in every forward pass but does not feed the output."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TINY
        self.side = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        self.side(x)
        return self.net(x)


class LinearProbe(nn.Module):
    """A frozen backbone run under no_grad inside forward, and a trained linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = copy.deepcopy(TINY.features)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        with torch.no_grad():
            f = self.backbone(x)
        return self.head(f.mean((2, 3)))


class Detached(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = TINY

    def forward(self, x):
        f = self.net.act(self.net.features(x)).detach()
        return self.net.fc(f.mean((2, 3)))


class TupleLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.conv(x), x


class HasTupleLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair = TupleLayer()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        a, _ = self.pair(x)
        return self.fc(a.mean((2, 3)))


def _variant(fn: Callable[[nn.Module], None]) -> nn.Module:
    model = copy.deepcopy(TINY)
    with torch.no_grad():
        fn(model)
    return model


def _nan_weight(m: nn.Module) -> None:
    m.fc.weight[0, 0] = float("nan")


def _zero_head(m: nn.Module) -> None:
    m.fc.weight.zero_()


# ---- outcomes -------------------------------------------------------------------------------

@dataclass
class Same:
    got: Callable[[], torch.Tensor]
    reference: Callable[[], torch.Tensor]


@dataclass
class Fails:
    error: type[XcamError]
    words: list[str] = field(default_factory=list)
    run: Callable[[], object] | None = None


@dataclass
class Warns:
    category: type[Warning]
    words: list[str]
    run: Callable[[], object] | None = None


@dataclass
class Quiet:
    category: type[Warning]
    run: Callable[[], object] | None = None


def gc(model: nn.Module = TINY, **kw) -> GradCAM:
    return GradCAM(model, layer=kw.pop("layer", "features"), **kw)


def ig(model: nn.Module = TINY, **kw) -> InputGradient:
    return InputGradient(model, channels_last=kw.pop("channels_last", False), **kw)


def occ(model: nn.Module = TINY, **kw) -> Occlusion:
    return Occlusion(model, kw.pop("window", 8), kw.pop("stride", 8), channels_last=False, **kw)


def sc(model: nn.Module = TINY, **kw) -> ScoreCAM:
    return ScoreCAM(model, layer="features", channels_last=False, **kw)


def call(make, x=X, targets=None):
    """A thunk that builds a fresh explainer (first-call checks included) and runs it."""
    return lambda: make()(x, targets)


OUT = torch.tensor([[0.1, 0.9, 0.3], [2.0, -1.0, 0.5]])
OUT_NAN = torch.tensor([[0.1, float("nan"), 0.3], [2.0, -1.0, 0.5]])

ROWS: list[tuple[str, object]] = [
    # -- inputs: dtype ---------------------------------------------------------------------
    ("float64 inputs, float32 model", Fails(InputTypeError, ["float64", "float32", "inputs.float()"],
                                            call(lambda: gc(), X.double()))),
    ("float64 inputs, occlusion", Fails(InputTypeError, ["float64", "inputs.float()"],
                                        call(lambda: occ(), X.double()))),
    ("float16 inputs are cast up", Same(lambda: gc()(X.half(), 1).maps, lambda: gc()(X.half().float(), 1).maps)),
    ("bfloat16 inputs are cast up", Same(lambda: ig()(X.bfloat16(), 2).maps,
                                         lambda: ig()(X.bfloat16().float(), 2).maps)),
    ("float16 inputs, scorecam", Same(lambda: sc()(X.half(), 3).maps, lambda: sc()(X.half().float(), 3).maps)),
    ("float32 inputs, float64 model cast up", Same(
        lambda: ig(copy.deepcopy(TINY).double())(X, 1).maps,
        lambda: ig(copy.deepcopy(TINY).double())(X.double(), 1).maps)),
    ("float32 inputs, float16 model", Fails(InputTypeError, ["float32", "float16", "inputs.half()"],
                                            call(lambda: gc(copy.deepcopy(TINY).half())))),
    ("uint8 inputs", Fails(InputTypeError, ["floating-point", "uint8", "inputs.float()"],
                           call(lambda: gc(), (RAW).to(torch.uint8)))),
    ("int64 inputs", Fails(InputTypeError, ["floating-point", "inputs.float()"], call(lambda: ig(), X.long()))),
    ("inputs on another device (meta stands in for cuda)", Fails(InputError, ["are on meta", "model on cpu", "inputs.to('cpu')"],
                                                                 call(lambda: gc(), torch.empty(2, 3, 16, 16, device="meta")))),
    # -- inputs: shape ---------------------------------------------------------------------
    ("grayscale inputs, RGB model", Fails(InputError, ["1 channels", "takes 3", "features.0", "expand"],
                                          call(lambda: gc(), X[:, :1]))),
    ("RGBA inputs", Fails(InputError, ["4 channels", "takes 3", "inputs[:, :3]"],
                          call(lambda: occ(), torch.cat([X, X[:, :1]], 1)))),
    ("channels-last HWC array as a tensor", Fails(InputError, ["16 channels", "permute(0, 3, 1, 2)"],
                                                  call(lambda: ig(), X.permute(0, 2, 3, 1)))),
    ("height 0", Fails(InputError, ["empty dimension", "(2, 3, 0, 16)", "height"], call(lambda: gc(), X[:, :, :0]))),
    ("width 0", Fails(InputError, ["empty dimension", "width"], call(lambda: occ(), X[:, :, :, :0]))),
    ("batch of 0", Fails(InputError, ["empty batch"], call(lambda: sc(), X[:0]))),
    ("3-D input", Fails(InputError, ["(B, C, H, W)", "inputs[None]"], call(lambda: gc(), X[0]))),
    ("5-D input", Fails(InputError, ["(B, C, H, W)", "(1, 2, 3, 16, 16)"], call(lambda: ig(), X[None]))),
    ("NaN pixel", Fails(InputError, ["1 NaN", "clean or clamp"],
                        call(lambda: gc(), X.clone().index_put_((torch.tensor([0]),) * 4, torch.tensor(float("nan")))))),
    ("infinite pixels", Fails(InputError, ["NaN or infinite"], call(lambda: occ(), X * float("inf")))),
    ("numpy array input", Fails(InputTypeError, ["torch.Tensor", "ndarray", "to_tensor"],
                                call(lambda: gc(), X.numpy()))),
    ("list input", Fails(InputTypeError, ["torch.Tensor", "list"], call(lambda: ig(), [X]))),
    # -- inputs: value range (warned once per explainer) -----------------------------------
    ("raw [0, 255] pixels", Warns(InputRangeWarning, ["raw pixels in [0, 255]", "weights.transforms()"],
                                  call(lambda: gc(), RAW))),
    ("raw pixels, occlusion", Warns(InputRangeWarning, ["unnormalized", "mean and std"], call(lambda: occ(), RAW))),
    ("[0, 1] pixels", Warns(InputRangeWarning, ["[0, 1] pixels", "not normalized"], call(lambda: ig(), UNIT))),
    ("[0, 1] pixels, scorecam", Warns(InputRangeWarning, ["[0, 1] pixels"], call(lambda: sc(), UNIT))),
    ("normalized inputs", Quiet(InputRangeWarning, call(lambda: gc()))),
    ("[0, 1] pixels, model normalising inside", Quiet(InputRangeWarning, call(lambda: ig(NormalizesInside()), UNIT))),
    ("raw pixels, model normalising inside", Warns(InputRangeWarning, ["raw pixels"], call(lambda: ig(NormalizesInside()), RAW))),
    ("a blank image", Quiet(InputRangeWarning, call(lambda: ig(), torch.zeros(1, 3, 16, 16)))),
    ("only the first call is checked", Quiet(InputRangeWarning, lambda: _second_call(RAW))),
    # -- targets ---------------------------------------------------------------------------
    ("numpy int target", Same(lambda: gc()(X, np.int64(3)).maps, lambda: gc()(X, 3).maps)),
    ("numpy int array targets", Same(lambda: gc()(X, np.array([1, 4])).maps, lambda: gc()(X, [1, 4]).maps)),
    ("numpy int32 array, occlusion", Same(lambda: occ()(X, np.array([0, 2], dtype=np.int32)).maps,
                                          lambda: occ()(X, [0, 2]).maps)),
    ("list of numpy ints", Same(lambda: ig()(X, [np.int64(1), np.int32(4)]).maps, lambda: ig()(X, [1, 4]).maps)),
    ("0-d tensor for a batch", Same(lambda: gc()(X, torch.tensor(2)).maps, lambda: gc()(X, 2).maps)),
    ("model(x).argmax() for one image", Same(lambda: gc()(X[:1], TINY(X[:1]).argmax()).maps,
                                             lambda: gc()(X[:1], int(TINY(X[:1]).argmax())).maps)),
    ("0-d numpy target", Same(lambda: sc()(X, np.array(1)).maps, lambda: sc()(X, 1).maps)),
    ("int32 tensor targets", Same(lambda: ig()(X, torch.tensor([3, 0], dtype=torch.int32)).maps,
                                  lambda: ig()(X, [3, 0]).maps)),
    ("bool tensor targets", Fails(TargetError, ["bool tensor", "not classes 0 / 1"],
                                  call(lambda: gc(), X, torch.tensor([True, False])))),
    ("numpy bool array", Fails(TargetError, ["bool", "not classes 0 / 1"],
                               call(lambda: occ(), X, np.array([True, False])))),
    ("numpy bool scalar", Fails(TargetError, ["not a bool", "pass an int"], call(lambda: ig(), X, np.bool_(True)))),
    ("Python bool", Fails(TargetError, ["not a bool"], call(lambda: sc(), X, True))),
    ("list holding a bool", Fails(TargetError, ["sequence must hold ints"], call(lambda: gc(), X, [1, True]))),
    ("float tensor targets", Fails(TargetError, ["integer tensor", "float32", "targets.long()"],
                                   call(lambda: gc(), X, torch.tensor([1.0, 2.0])))),
    ("2-D targets (B, 1)", Fails(TargetError, ["1-D", "argmax(dim=1)"], call(lambda: ig(), X, torch.tensor([[1], [2]])))),
    ("flat argmax over a batch", Fails(TargetError, ["class 7 is out of range", "argmax(dim=1)"],
                                       call(lambda: gc(), X, torch.tensor(7)))),
    ("numpy float target", Fails(TargetError, ["integer", "float64", "targets.long()"], call(lambda: occ(), X, np.float64(2.0)))),
    ("string target", Fails(TargetError, ["targets must be None", "str"], call(lambda: gc(), X, "cat"))),
    ("negative class", Fails(TargetError, ["class -1 is out of range", "0..4"], call(lambda: sc(), X, -1))),
    ("too few targets", Fails(TargetError, ["1 entries for a batch of 2"], call(lambda: ig(), X, [1]))),
    ("callable of the wrong shape", Fails(TargetError, ["one score per image", "returned (10, 5)"],
                                          call(lambda: occ(), X, lambda o: o))),  # 2 clean + 8 occluded
    ("class_scores: numpy array", Same(lambda: class_scores(np.array([2, 0]), OUT, 2)[1],
                                       lambda: class_scores([2, 0], OUT, 2)[1])),
    ("class_scores: NaN output", Fails(NonFiniteError, ["NaN or infinite", "weights"],
                                       lambda: class_scores(None, OUT_NAN, 2))),
    # -- model outputs ---------------------------------------------------------------------
    ("dict output, Grad-CAM", Same(lambda: gc(Wrap("dict"), layer="net.features")(X, 1).maps, lambda: gc()(X, 1).maps)),
    ("tuple output, occlusion", Same(lambda: occ(Wrap("tuple"))(X, [1, 2]).maps, lambda: occ()(X, [1, 2]).maps)),
    ("tuple output, callable target, occlusion", Same(
        lambda: occ(Wrap("tuple"))(X, lambda o: o[0][:, 3]).maps, lambda: occ()(X, 3).maps)),
    ("dict output, incremental occlusion", Same(lambda: Occlusion(Wrap("dict"), 8, 8, incremental=True)(X, [1, 2]).maps,
                                                lambda: Occlusion(TINY, 8, 8, incremental=True)(X, [1, 2]).maps)),
    ("tuple output, incremental occlusion, output=", Same(
        lambda: Occlusion(Wrap("tuple"), 8, 8, incremental=True, output=lambda o: o[0])(X, 3).maps,
        lambda: Occlusion(TINY, 8, 8, incremental=True)(X, 3).maps)),
    ("HF-like output, Score-CAM", Same(lambda: ScoreCAM(Wrap("hf"), "net.features", channels_last=False)(X, 2).maps,
                                       lambda: sc()(X, 2).maps)),
    ("dict output, callable target, Score-CAM", Same(
        lambda: ScoreCAM(Wrap("dict"), "net.features", channels_last=False)(X, lambda o: o["logits"][:, 2]).maps,
        lambda: sc()(X, lambda o: o[:, 2]).maps)),
    ("dict output, CAM", Same(lambda: CAM(Wrap("dict"))(X, 1).maps, lambda: CAM(TINY)(X, 1).maps)),
    ("unknown dict key", Fails(OutputError, ["dict with keys ['scores']", "output=lambda out"],
                               call(lambda: ig(Wrap("scores"))))),
    ("output= reads it", Same(lambda: ig(Wrap("scores"), output=lambda o: o["scores"])(X, 1).maps,
                              lambda: ig()(X, 1).maps)),
    ("output= not callable", Fails(InputTypeError, ["output must be a callable", "str"],
                                   lambda: GradCAM(TINY, "features", output="logits"))),
    ("output= returns a list", Fails(OutputError, ["returned list, not a tensor"],
                                     call(lambda: gc(output=lambda o: [o])))),
    ("4-D output, class target", Fails(TargetError, ["(B, classes)", "(2, 5, 1, 1)", "targets=lambda out"],
                                       call(lambda: ig(Wrap("map")), X, 1))),
    ("NaN weights", Fails(NonFiniteError, ["NaN or infinite", "weights"], call(lambda: gc(_variant(_nan_weight))))),
    ("NaN weights, occlusion", Fails(NonFiniteError, ["NaN"], call(lambda: occ(_variant(_nan_weight))))),
    ("infinite outputs", Fails(NonFiniteError, ["NaN or infinite"], call(lambda: ig(Wrap("inf"))))),
    # -- dead ends -------------------------------------------------------------------------
    ("layer that does not feed the score", Fails(DisconnectedError, ["'side'", "does not depend", "choose a layer"],
                                                 call(lambda: gc(SideBranch(), layer="side")))),
    ("Grad-CAM++ on it", Fails(DisconnectedError, ["'side'"],
                               call(lambda: GradCAMPlusPlus(SideBranch(), layer="side")))),
    ("linear probe, Grad-CAM", Fails(GradientModeError, ["'backbone'", "torch.no_grad()", "linear probe",
                                                         "requires_grad_(False)"],
                                     call(lambda: gc(LinearProbe(), layer="backbone")))),
    ("linear probe, input gradient", Fails(GradientModeError, ["'backbone.0'", "no_grad", "linear probe"],
                                           call(lambda: ig(LinearProbe())))),
    ("linear probe, SmoothGrad", Fails(GradientModeError, ["linear probe"],
                                       call(lambda: SmoothGrad(LinearProbe(), n_samples=2, seed=0)))),
    ("linear probe, captum saliency", Fails(GradientModeError, ["linear probe"],
                                            call(lambda: xcam.create("saliency", LinearProbe())))),
    ("detached features, input gradient", Fails(DisconnectedError, ["does not depend on the input", ".detach()"],
                                                 call(lambda: ig(Detached())))),
    ("1 x 1 layer", Warns(DeadEndWarning, ["'pool'", "1 x 1", "earlier layer"], call(lambda: gc(layer="pool")))),
    ("constant map", Warns(DeadEndWarning, ["constant map", "samples [0, 1]"], call(lambda: ig(_variant(_zero_head))))),
    ("stride larger than the window", Warns(DeadEndWarning, ["stride=(8, 8)", "window=(4, 4)", "never occluded"],
                                            lambda: Occlusion(TINY, 4, 8))),
    ("window larger than the input", Warns(UserWarning, ["larger than the 16x16 input"],
                                           call(lambda: Occlusion(TINY, 32, 16, channels_last=False)))),
    ("a varying map", Quiet(DeadEndWarning, call(lambda: gc(), X, [0, 0]))),
    ("inference mode", Fails(GradientModeError, ["inference_mode", "outside"], lambda: _in_inference(gc()))),
    ("CAM without a GAP head", Fails(HeadNotFoundError, ["GradCAM"], call(lambda: CAM(LinearProbe().backbone)))),
    # -- capture ---------------------------------------------------------------------------
    ("capture: unused layer", Fails(DisconnectedError, ["'side'", "does not depend"],
                                    lambda: _capture_grads(SideBranch(), "side"))),
    ("capture: unused layer allowed", Same(lambda: _capture_grads(SideBranch(), "side", allow_unused=True),
                                           lambda: torch.zeros(2, 4, 16, 16))),
    ("capture: linear probe", Fails(GradientModeError, ["'backbone.2'", "torch.no_grad()"],
                                    lambda: _capture_grads(LinearProbe(), "backbone.2"))),
    ("capture: layer returning a tuple", Fails(InputError, ["'pair'", "returns tuple", "list_layers"],
                                               lambda: _capture_grads(HasTupleLayer(), "pair"))),
    ("capture: not a module", Fails(InputError, ["torch.nn.Module", "function"], lambda: xcam.capture(len, "x"))),
    ("capture: misspelt layer", Fails(LayerNotFoundError, ["did you mean 'features'"],
                                      lambda: xcam.capture(TINY, "featurs"))),
    ("capture: gradients of an input tap", Same(lambda: _capture_grads(TINY, "pool:input").abs().sum() > 0,
                                                lambda: torch.tensor(True))),
    # -- channels-last ---------------------------------------------------------------------
    ("view() model, default layout", Same(lambda: InputGradient(_Viewer())(X, 1).maps,
                                          lambda: InputGradient(_Viewer(), channels_last=False)(X, 1).maps)),
    ("view() model, channels_last=True", Fails(InputError, ["channels_last=True", ".reshape()"],
                                               call(lambda: InputGradient(_Viewer(), channels_last=True)))),
    # -- training mode -----------------------------------------------------------------------
    ("train-mode model gives the eval map", Same(lambda: gc(_variant(lambda m: m.train()))(X, 1).maps,
                                                 lambda: gc()(X, 1).maps)),
]


class _Viewer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(2 * 14 * 14, 3)

    def forward(self, x):
        f = self.conv(x)
        return self.fc(f.view(f.shape[0], -1))


def _second_call(x):
    explainer = gc()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer(x)
    return explainer(x)


def _in_inference(explainer):
    with torch.inference_mode():
        return explainer(X)


def _capture_grads(model, layer, allow_unused=False):
    with xcam.capture(model, layer) as cap:
        out = model(X)
        return cap.gradients(out[:, 0], allow_unused=allow_unused)[layer]


def test_the_table_has_enough_rows():
    assert len(ROWS) >= 50
    assert len({name for name, _ in ROWS}) == len(ROWS)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("outcome", [pytest.param(o, id=name) for name, o in ROWS])
def test_row(outcome):
    if isinstance(outcome, Same):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got, ref = outcome.got(), outcome.reference()
        assert got.shape == ref.shape and got.dtype == ref.dtype
        assert torch.equal(got, ref), float((got.float() - ref.float()).abs().max())
    elif isinstance(outcome, Fails):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(XcamError) as info:
                outcome.run()
        assert isinstance(info.value, outcome.error), repr(info.value)
        for word in outcome.words:
            assert word in str(info.value), (word, str(info.value))
    elif isinstance(outcome, Warns):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outcome.run()
        messages = [str(w.message) for w in caught if issubclass(w.category, outcome.category)]
        assert any(all(word in m for word in outcome.words) for m in messages), messages
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outcome.run()
        assert not [w for w in caught if issubclass(w.category, outcome.category)]
