"""``evaluate_maps``: the perturbed batches of several maps and metrics share forward passes.

The metrics that share are read from the metadata (``Metric.perturbed``); each result must equal
the per-map call of the metric, and the number of forward passes must drop to what the shared
row count needs.
"""

from __future__ import annotations

import math

import pytest
import torch

import xcam
from xcam.errors import InputError, InputTypeError
from xcam.metrics import CurveResult
from xcam.metrics.batched import evaluate_maps, shared_metrics
from xcam.registry import METRICS

X = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
GEN = torch.Generator().manual_seed(2)
MAPS = {k: torch.rand(3, 16, 16, generator=GEN) for k in ("a", "b", "c")}
SETTINGS = {"deletion": {"steps": 7}, "insertion": {"steps": 5, "blur_sigma": 2.0},
            "average_drop": {"baseline": 0.5}, "increase_in_confidence": {}}


@pytest.fixture
def model(tiny):
    """The shared seeded TinyNet (conftest's ``tiny``) under the name these tests use."""
    return tiny


def test_the_metrics_that_share_are_declared():
    assert {"deletion", "insertion", "average_drop", "increase_in_confidence"} <= set(shared_metrics())
    for name in shared_metrics():
        assert METRICS.get(name).needs == {"model", "inputs", "maps", "targets"}


def _same(a, b):
    if isinstance(a, CurveResult):
        return (torch.equal(a.curves, b.curves) and torch.equal(a.auc, b.auc)
                and torch.equal(a.fractions, b.fractions) and a.kind == b.kind)
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(a[~nan], b[~nan])


@pytest.mark.parametrize("batch_size", [1, 16, 1000])
def test_results_equal_the_per_map_calls_with_fewer_passes(model, batch_size):
    metrics = {n: SETTINGS.get(n, {}) for n in shared_metrics()}
    count = [0]
    handle = model.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    try:
        together = evaluate_maps(model, X, MAPS, [0, 1, 2], metrics, batch_size=batch_size)
        shared_passes, count[0] = count[0], 0
        alone = {n: {k: METRICS.get(n)(model, X, m, [0, 1, 2], batch_size=batch_size, **metrics[n])
                     for k, m in MAPS.items()} for n in metrics}
        separate_passes = count[0]
    finally:
        handle.remove()
    for n in metrics:
        assert list(together[n]) == list(MAPS)
        for k in MAPS:
            assert _same(together[n][k], alone[n][k]), (n, k)
    rows = sum(METRICS.get(n).forward_passes(3, clean_output=0, **metrics[n]) for n in metrics) * len(MAPS)
    assert shared_passes == 1 + math.ceil(rows / batch_size)  # one clean pass for all
    assert separate_passes == sum(
        1 + math.ceil(METRICS.get(n).forward_passes(3, clean_output=0, **metrics[n]) / batch_size)
        for n in metrics) * len(MAPS)


def test_explanations_give_their_targets(model):
    out = xcam.explain(model, X, ["gradcam", "layercam"], targets=[4, 0, 2], layer="features.4")
    shared = evaluate_maps(model, X, out, metrics=["deletion"], clean_output=model(X))
    for k, e in out.items():
        alone = xcam.metrics.deletion(model, X, e, None)  # the Metric wrapper reads e.targets
        assert torch.equal(shared["deletion"][k].auc, alone.auc)


def test_errors(model):
    with pytest.raises(InputError, match="does not share"):
        evaluate_maps(model, X, MAPS, metrics=["pointing_game"])
    with pytest.raises(InputError, match="batch_size"):
        evaluate_maps(model, X, MAPS, metrics={"deletion": {"batch_size": 3}})
    with pytest.raises(InputTypeError, match="non-empty"):
        evaluate_maps(model, X, {}, metrics=["deletion"])
    with pytest.raises(InputTypeError, match="list of names"):
        evaluate_maps(model, X, MAPS, metrics="deletion")
    with pytest.raises(InputError, match="steps"):
        evaluate_maps(model, X, MAPS, metrics={"deletion": {"steps": 0}})
    with pytest.raises(InputError, match="resolution"):
        evaluate_maps(model, X, {"a": torch.rand(3, 8, 8)}, metrics=["deletion"])
