"""Nothing changes the user's model (issue 12), driven by the registries.

Every registered explainer and every registered metric that runs a model is called on a model with
batch norm and dropout, handed over (a) entirely in training mode and (b) in a mixed state (some
modules training, some not). Afterwards every parameter and buffer is bit-identical
(``torch.equal``: batch-norm running statistics and ``num_batches_tracked`` included), every
module's ``training`` flag is what it was, ``param.grad`` and ``requires_grad`` are untouched; and
during the call, batch norm and dropout ran in eval mode. A new explainer or metric is picked up
without editing this file; a metric whose arguments the recipe below cannot fill fails loudly.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

import xcam
from xcam.explanation import AttentionModel, Detector
from xcam.methods import ViTModel
from xcam.registry import EXPLAINERS, METRICS

N_CLASSES = 5
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
TARGETS = torch.tensor([1, 3])
MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one intra-op thread


class StateNet(nn.Module):
    """Conv-BN-ReLU-Dropout twice, then a GAP -> Linear head (so CAM runs on it)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.3),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(), nn.Dropout2d(0.3),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.num_batches_tracked.fill_(7)
    return model


def _state_net() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(StateNet(), 1)


def _lfi_net() -> nn.Module:
    from tests.nets import tiny_efficientnet
    from xcam.lfi import LFICAMNet

    return randomize_bn(LFICAMNet(tiny_efficientnet(num_classes=N_CLASSES, seed=0), depth=2,
                                   width=8, seed=0), 1)


def _detector() -> nn.Module:
    from tests.nets import tiny_detector

    return tiny_detector()


def _vit_net() -> nn.Module:
    from tests.nets import tiny_vit

    return tiny_vit(num_classes=N_CLASSES, dropout=0.3)  # dropout in every block


# The model each explainer's ``model_type`` flag asks for (None: a classifier).
SPECIAL_MODELS: dict[type, Callable[[], nn.Module]] = {AttentionModel: _lfi_net, Detector: _detector,
                                                       ViTModel: _vit_net}


def _set_state(model: nn.Module, state: str) -> None:
    """``train``: every module training. ``mixed``: training, but every other batch-norm and
    dropout module (and the head) in eval mode."""
    model.train()
    if state == "mixed":
        mode_dependent = [m for m in model.modules() if isinstance(m, MODE_DEPENDENT)]
        for m in mode_dependent[1::2]:
            m.eval()
        children = list(model.children())
        children[-1].eval()
        assert any(m.training for m in mode_dependent) and not all(m.training for m in mode_dependent)


class Snapshot:
    """Everything a call could change, and a record of the modes batch norm / dropout ran in."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.state = {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()}
        self.flags = [m.training for m in model.modules()]
        self.requires = [p.requires_grad for p in model.parameters()]
        gen = torch.Generator().manual_seed(5)
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen)
        self.grads = [p.grad.clone() for p in model.parameters()]
        self.ran_in_train_mode: list[str] = []
        self.handles = [
            m.register_forward_pre_hook(self._record(name))
            for name, m in model.named_modules() if isinstance(m, MODE_DEPENDENT)
        ]

    def _record(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, _args: object) -> None:
            if module.training:
                self.ran_in_train_mode.append(name)
        return hook

    def check(self) -> None:
        for h in self.handles:
            h.remove()
        after = self.model.state_dict()
        assert set(after) == set(self.state)
        changed = [k for k, v in self.state.items() if not torch.equal(v, after[k])]
        assert not changed, f"parameters or buffers changed: {changed}"
        assert [m.training for m in self.model.modules()] == self.flags, "training flags changed"
        assert [p.requires_grad for p in self.model.parameters()] == self.requires
        assert all(torch.equal(p.grad, g) for p, g in zip(self.model.parameters(), self.grads)), \
            "param.grad changed"
        assert not self.ran_in_train_mode, (
            f"ran in training mode: {sorted(set(self.ran_in_train_mode))}")


def _explainer(name: str, model: nn.Module) -> object:
    params = inspect.signature(EXPLAINERS.get(name)).parameters
    kwargs: dict[str, object] = {"seed": 0} if "seed" in params else {}
    if EXPLAINERS.get(name).model_type is Detector and "n_masks" in params:
        kwargs["n_masks"] = 2  # a detector pass is costly
    return xcam.create(name, model, **kwargs)


@pytest.mark.parametrize("state", ["train", "mixed"])
@pytest.mark.parametrize("name", xcam.list_explainers())
def test_explainer_leaves_the_model_as_it_was(name: str, state: str) -> None:
    model = SPECIAL_MODELS.get(EXPLAINERS.get(name).model_type, _state_net)()  # type: ignore[arg-type]
    explainer = _explainer(name, model)
    _set_state(model, state)
    snap = Snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # automatic layer choices
        explanation = explainer(X, TARGETS)
    snap.check()
    assert torch.isfinite(explanation.maps).all()


# What each metric argument is, by name; costly settings made small. A metric with a required
# argument missing here fails in _metric_call, so a new metric is never silently skipped.
def _arguments(model: nn.Module) -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = xcam.create("gradcam", model, layer="features.5")
    return {
        "model": model, "inputs": X, "targets": TARGETS, "explainer": explainer,
        "maps": torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(2)),
        "n_classes": N_CLASSES, "steps": 3, "n": 3, "subset": 16, "n_perturb_samples": 2,
        "seed": 0, "batch_size": 4, "n_samples": 2,
    }


def _runs_a_model(name: str) -> bool:
    params = inspect.signature(METRICS.get(name)).parameters
    return "model" in params or "explainer" in params


MODEL_METRICS = [n for n in xcam.list_metrics() if _runs_a_model(n)]


def _metric_call(name: str, model: nn.Module) -> Callable[[], object]:
    metric = METRICS.get(name)
    available = _arguments(model)
    kwargs = {}
    for pname, p in inspect.signature(metric).parameters.items():
        if pname == "maps" and p.default is None:
            continue  # random_logit's optional precomputed maps
        if pname in available:
            kwargs[pname] = available[pname]
        elif p.default is inspect.Parameter.empty:
            raise AssertionError(f"{name}: add its required argument {pname!r} to _arguments")
    return lambda: metric(**kwargs)


def test_the_metric_list_is_not_empty() -> None:
    assert {"deletion", "insertion", "average_drop", "increase_in_confidence",
            "faithfulness_correlation", "infidelity", "model_parameter_randomization",
            "max_sensitivity", "random_logit"} <= set(MODEL_METRICS)


@pytest.mark.parametrize("state", ["train", "mixed"])
@pytest.mark.parametrize("name", MODEL_METRICS)
def test_metric_leaves_the_model_as_it_was(name: str, state: str) -> None:
    model = _state_net()
    call = _metric_call(name, model)
    _set_state(model, state)
    snap = Snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call()
    snap.check()


def test_metric_restores_the_model_after_an_exception() -> None:
    model = _state_net()
    _set_state(model, "mixed")
    snap = Snapshot(model)
    with pytest.raises(ValueError, match="out of range"):
        xcam.metrics.deletion(model, X, torch.rand(2, 32, 32), [0, 99], steps=2)
    snap.check()


def test_metric_scores_of_a_training_model_equal_those_in_eval_mode() -> None:
    model = _state_net()
    maps = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(2))
    reference = xcam.metrics.deletion(model.eval(), X, maps, TARGETS, steps=4).curves
    _set_state(model, "train")
    assert torch.equal(xcam.metrics.deletion(model, X, maps, TARGETS, steps=4).curves, reference)
