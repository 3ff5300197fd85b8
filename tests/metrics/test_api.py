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
    "random_logit": False,
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
