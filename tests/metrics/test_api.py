"""The metrics' public surface: names, registry, directions, costs, results, plots."""

from __future__ import annotations

import inspect

import pytest
import torch

import xcam
import xcam.metrics as M

SPEC_NAMES = [
    "pointing_game", "energy_pointing_game", "relevance_mass", "relevance_rank", "max_box_acc",
    "deletion", "insertion", "average_drop", "increase_in_confidence",
    "faithfulness_correlation",
]

DIRECTIONS = {
    "pointing_game": True, "energy_pointing_game": True, "relevance_mass": True,
    "relevance_rank": True, "max_box_acc": True, "deletion": False, "insertion": True,
    "average_drop": False, "increase_in_confidence": True, "faithfulness_correlation": True,
    "infidelity": False, "max_sensitivity": False, "model_parameter_randomization": False,
    "random_logit": False, "smooth_mprt": False, "efficient_mprt": True,
}


def test_spec_names_are_importable_and_registered():
    for name in SPEC_NAMES:
        assert name in M.__all__ and callable(getattr(M, name))
    assert set(DIRECTIONS) <= set(xcam.list_metrics())


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_every_metric_knows_its_direction_family_and_cost(name):
    metric = xcam.registry.METRICS.get(name)
    assert metric is getattr(M, name)
    assert metric.higher_is_better is DIRECTIONS[name]
    assert metric.family in {"localization", "faithfulness", "robustness", "sanity"}
    assert inspect.signature(metric) == inspect.signature(metric.fn)
    assert metric.__doc__ and metric.__name__ == name
    if metric.family == "localization":
        assert metric.forward_passes(5) == 0
    if "seed" in inspect.signature(metric).parameters:
        assert metric.stochastic


def test_metrics_pickle_by_name():
    import pickle

    assert pickle.loads(pickle.dumps(M.deletion)) is M.deletion


def test_spec_signatures_and_defaults():
    sig = inspect.signature(M.pointing_game)
    assert sig.parameters["tolerance"].default == 15
    sig = inspect.signature(M.deletion)
    assert list(sig.parameters)[:7] == ["model", "inputs", "maps", "targets", "steps", "baseline",
                                        "batch_size"]
    assert (sig.parameters["steps"].default, sig.parameters["baseline"].default,
            sig.parameters["batch_size"].default) == (100, 0.0, 64)
    sig = inspect.signature(M.faithfulness_correlation)
    assert (sig.parameters["n"].default, sig.parameters["subset"].default) == (100, 224)
    sig = inspect.signature(M.max_box_acc)
    assert sig.parameters["thresholds"].default is None and sig.parameters["v2"].default is False


def test_forward_passes_formulas_and_unknown_arguments():
    assert M.deletion.forward_passes(8) == 8 * 101
    assert M.insertion.forward_passes(8, steps=50) == 8 * 51
    assert M.average_drop.forward_passes(4) == 8
    assert M.faithfulness_correlation.forward_passes(2, n=10) == 22
    with pytest.raises(xcam.errors.InputError, match="unknown argument"):
        M.deletion.forward_passes(8, step=10)


def test_results_are_frozen_and_per_sample(net, images, rand_maps):
    r = M.deletion(net, images, rand_maps, None, steps=4)
    assert r.auc.shape == (3,) and r.curves.shape == (3, 5) and len(r) == 3
    assert r.auc.dtype == torch.float32 and r.curves.dtype == torch.float32
    with pytest.raises(AttributeError):
        r.auc = r.auc  # type: ignore[misc]
    b = M.max_box_acc(rand_maps, [[(0, 0, 5, 5)]] * 3, thresholds=[0.5, 0.9])
    assert isinstance(b.value, float) and b.iou.shape == (3, 2)


def test_definition_versions_mark_the_issue_12_changes():
    changed = {"pointing_game", "relevance_rank", "max_box_acc"}
    for name in xcam.list_metrics():
        assert xcam.registry.METRICS.get(name).version == (2 if name in changed else 1), name


def test_importing_the_metrics_does_not_import_the_explainers():
    import subprocess
    import sys

    code = ("import sys, xcam.metrics; "
            "print(sorted(m for m in sys.modules if m.startswith('xcam.methods')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# the contract every registered metric keeps, parametrised over the registry
# --------------------------------------------------------------------------------------------

from torch import Tensor, nn  # noqa: E402

from tests.metrics.conftest import RegionLogit  # noqa: E402
from xcam.metrics.base import DATA_PARAMETERS, NEEDS, SCOPES, UNITS, MetricInputs  # noqa: E402

ALL_METRICS = xcam.list_metrics()

#: small settings so that every metric runs in a blink (a new metric runs with its defaults)
FAST = {
    "deletion": {"steps": 4}, "insertion": {"steps": 4},
    "faithfulness_correlation": {"n": 8, "subset": 16, "seed": 0},
    "infidelity": {"n_perturb_samples": 4, "seed": 0},
    "max_sensitivity": {"n_perturb_samples": 3, "seed": 0},
    "random_logit": {"seed": 0}, "model_parameter_randomization": {"seed": 0},
    "smooth_mprt": {"n_samples": 3, "seed": 0}, "efficient_mprt": {"seed": 0},
    "max_box_acc": {"thresholds": [0.1, 0.3, 0.5, 0.7, 0.9]}, "pointing_game": {"tolerance": 1},
}
SIDE = 16
#: metrics whose direction needs a trained model: LinearNet's weights are random, so its gradient
#: maps are as complex before as after re-initialization (tested on a structured model instead)
UNTRAINED_BLIND = {"efficient_mprt": "tests/metrics/test_mprt.py::test_efficient_mprt_direction"}


class LinearNet(nn.Module):
    """Three classes, ``logits = W vec(x)``: its input gradient is a row of W, whatever x."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(123)  # not the randomization's seed, which would redraw the same weights
        self.fc = nn.Linear(3 * SIDE * SIDE, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1))


class GradientMaps:
    """An xcam-style explainer: the input gradient of the target logit, summed over channels.

    Class-sensitive, changes with the weights, and constant in x for :class:`LinearNet`."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def params(self) -> dict[str, object]:
        return {}

    def __call__(self, inputs: Tensor, targets: Tensor) -> Tensor:
        x = inputs.detach().requires_grad_(True)
        out = self.model(x)
        score = out.gather(1, torch.as_tensor(targets).reshape(-1, 1).expand(len(x), 1)).sum()
        (grad,) = torch.autograd.grad(score, x)
        return grad.sum(1)


class InputMaps(GradientMaps):
    """A poor explainer: the squared input, blind to the class and the weights (it still runs
    the model once, so that both explainers cost the same)."""

    def __call__(self, inputs: Tensor, targets: Tensor) -> Tensor:
        with torch.no_grad():
            self.model(inputs)
        return (inputs ** 2).sum(1)


def _counted(model: nn.Module) -> tuple[nn.Module, list[int]]:
    seen: list[int] = []
    model.register_forward_hook(lambda _m, args, _out: seen.append(int(args[0].shape[0])))
    return model, seen


def _weights() -> Tensor:
    """Signed pixel weights of a :class:`RegionLogit`: a positive and a negative square."""
    w = torch.zeros(1, 1, SIDE, SIDE)
    w[..., 2:7, 2:7] = 1.0
    w[..., 9:14, 9:14] = -1.0
    return w + 0.05 * torch.rand(1, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(1))


def _inputs(metric: object, good: bool) -> tuple[MetricInputs, list[int]]:
    """Data for ``metric``: with ``good`` a map / explainer that should score better."""
    needs = metric.needs  # type: ignore[attr-defined]
    x = 1.0 + torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    x[..., 2:7, 2:7] += 2.0  # bright squares where the weights are: a blur dims them (insertion)
    x[..., 9:14, 9:14] += 2.0
    targets = torch.tensor([0, 0])
    if "explainer" in needs:
        model, seen = _counted(LinearNet())
        explainer = (GradientMaps if good else InputMaps)(model)
        maps = explainer(x, targets).detach() if good else None
        seen.clear()
        return MetricInputs(model=model, inputs=x, targets=targets, explainer=explainer,
                            maps=maps, n_classes=3), seen
    w = _weights()
    model, seen = _counted(RegionLogit(w.expand(1, 3, SIDE, SIDE).clone(), scale=0.01))
    maps = (w if good else -w)[:, 0].expand(2, SIDE, SIDE).clone()
    if needs == {"maps"} and not good:
        # a maps-only metric of |map| (sparseness, complexity) scores w and -w alike: noise is poor
        maps = torch.rand(2, SIDE, SIDE, generator=torch.Generator().manual_seed(6))
    if getattr(metric, "multi_model", False):
        other = maps + 0.01 if good else torch.rand(2, SIDE, SIDE,
                                                    generator=torch.Generator().manual_seed(5))
        maps = torch.stack([maps, other])
    boxes = [[(2, 2, 7, 7)], [(2, 2, 7, 7)]]
    return MetricInputs(maps=maps, ground_truth=boxes, model=model, inputs=x, targets=targets,
                        image_size=(SIDE, SIDE)), seen


@pytest.mark.parametrize("name", ALL_METRICS)
def test_every_registered_metric_has_complete_metadata(name):
    m = xcam.registry.METRICS.get(name)
    assert isinstance(m, M.Metric) and m.name == name
    assert isinstance(m.label, str) and m.label and m.label != name
    assert m.unit in UNITS and m.scope in SCOPES
    assert m.needs and m.needs <= NEEDS
    assert isinstance(m.higher_is_better, bool) and isinstance(m.curves, bool)
    assert isinstance(m.family, str) and m.family
    assert isinstance(m.version, int) and m.version >= 1
    assert not set(m.settings) & DATA_PARAMETERS
    assert set(m.settings) | m.data_parameters == set(m.parameters)
    assert (m.baseline_label is not None) is m.has_baseline
    if m.curves:
        assert m.curve_xlabel and m.curve_ylabel
    if m.scope == "image":
        assert not m.sample_only
        with pytest.raises(xcam.errors.InputError, match="nothing to aggregate"):
            m.aggregate(torch.zeros(2, 3))
    assert m.default_kwargs(7) == ({"seed": 7} if m.stochastic else {})


@pytest.mark.parametrize("name", ALL_METRICS)
def test_every_metric_runs_per_sample_in_its_direction_at_its_stated_cost(name):
    """Run from MetricInputs: (B,) scores through per_image, a good map (or explainer) beats a
    poor one in the declared direction, and forward_passes equals the images the model saw."""
    m = xcam.registry.METRICS.get(name)
    settings = FAST.get(name, {})
    scores = {}
    for good in (True, False):
        data, seen = _inputs(m, good)
        result = m.run(data, **settings)
        per = m.per_image(result)
        assert isinstance(per.scores, Tensor) and per.scores.shape == (2,)
        if m.curves:
            assert per.curves is not None and per.curves.shape[0] == 2
        if m.scope == "dataset" and not m.sample_only:
            assert per.parts is not None and per.parts.shape[0] == 2
            per_image = m.aggregate(per.parts, **settings)
            assert per_image.shape == (2,)
            assert float(per_image.mean()) == pytest.approx(result.value)  # type: ignore[attr-defined]
            scores[good] = float(per_image.mean())
        else:
            scores[good] = float(per.scores.double().mean())
        given = {k: v for k, v in {"model": data.model, "explainer": data.explainer,
                                   "maps": data.maps, "targets": data.targets}.items()
                 if k in m.parameters}
        if "model" not in m.needs and "explainer" not in m.needs:
            assert m.forward_passes(2, **settings) == 0
        else:
            assert m.forward_passes(2, **given, **settings) == sum(seen), name
    if name in UNTRAINED_BLIND:
        return  # see UNTRAINED_BLIND
    better = scores[True] > scores[False] if m.higher_is_better else scores[True] < scores[False]
    assert better, (name, scores)


def test_baseline_scores_are_the_center_point_score():
    m = M.pointing_game
    data = MetricInputs(ground_truth=[[(6, 6, 10, 10)], [(0, 0, 2, 2)]], image_size=(16, 16))
    assert m.baseline_scores(data, tolerance=0).tolist() == [1.0, 0.0]
    assert m.baseline_scores(data, tolerance=15).tolist() == [1.0, 1.0]


def test_run_refuses_missing_needs_and_data_as_settings():
    with pytest.raises(xcam.errors.InputError, match="needs"):
        M.deletion.run(MetricInputs(maps=torch.rand(1, 4, 4)))
    with pytest.raises(xcam.errors.InputError, match="data"):
        M.pointing_game.run(MetricInputs(maps=torch.rand(1, 4, 4), ground_truth=[[]]), gt=[[]])


def test_importing_the_metrics_imports_neither_methods_nor_lfi():
    import subprocess
    import sys

    code = ("import sys, xcam.metrics; print(sorted(m for m in sys.modules "
            "if m.startswith(('xcam.methods', 'xcam.lfi', 'xcam.compare', 'xcam.viz'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
