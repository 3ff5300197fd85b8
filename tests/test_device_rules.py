"""Device rules of issue 15: incremental occlusion only where it pays; autocast for metrics on CUDA.

No GPU is needed: the rules are functions of the device, patched here to take the accelerator's
branch on the CPU, and ``score_perturbed``'s autocast path runs under CPU autocast.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import xcam
from xcam.errors import InputError, InputTypeError
from xcam.methods import occlusion as occlusion_module
from xcam.metrics import average_drop, deletion, evaluate_maps
from xcam.metrics._forward import score_perturbed
from xcam.metrics.faithfulness import _deletion_plan

X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def model(tiny):
    """The shared seeded TinyNet (conftest's ``tiny``) under the name these tests use."""
    return tiny


def test_incremental_runs_on_the_cpu_only():
    assert occlusion_module.incremental_pays(torch.device("cpu"))
    assert not occlusion_module.incremental_pays(torch.device("cuda", 0))
    assert not occlusion_module.incremental_pays(torch.device("mps"))


def test_where_it_does_not_pay_incremental_is_plain_occlusion(model, monkeypatch):
    monkeypatch.setattr(occlusion_module, "incremental_pays", lambda device: False)
    plain = xcam.Occlusion(model, window=4, stride=4)(X, targets=[1, 2])
    explainer = xcam.Occlusion(model, window=4, stride=4, incremental=True)
    with pytest.warns(UserWarning, match="running plain occlusion, which is faster there"):
        first = explainer(X, targets=[1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = explainer(X, targets=[1, 2])  # announced once per explainer
    assert explainer._engine is None  # the incremental engine was never built
    assert torch.equal(first.maps, plain.maps) and torch.equal(second.maps, plain.maps)


def test_on_the_cpu_incremental_still_runs_the_engine(model):
    explainer = xcam.Occlusion(model, window=4, stride=4, incremental=True)
    maps = explainer(X, targets=[1, 2]).maps
    assert explainer._engine is not None
    plain = xcam.Occlusion(model, window=4, stride=4)(X, targets=[1, 2]).maps
    assert torch.allclose(maps, plain, atol=1e-5)


def test_autocast_is_for_cuda_only(model):
    maps = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1))
    for fn in (deletion, average_drop):
        with pytest.raises(InputError, match="autocast=torch.bfloat16 .* CUDA only"):
            fn(model, X, maps, None, autocast=torch.bfloat16)
        with pytest.raises(InputTypeError, match="torch.bfloat16 or torch.float16"):
            fn(model, X, maps, None, autocast=torch.float64)
    with pytest.raises(InputError, match="CUDA only"):
        evaluate_maps(model, X, {"a": maps}, metrics=["deletion"], autocast=torch.float16)
    with pytest.raises(InputError, match="autocast"):
        evaluate_maps(model, X, {"a": maps}, metrics={"deletion": {"autocast": torch.float16}})


def test_the_autocast_path_runs_the_passes_in_low_precision(model):
    # CPU autocast stands in for CUDA's: the same code path, bf16 convolutions
    maps = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1))
    plan = _deletion_plan(model, X, maps, None, steps=4)
    full = score_perturbed(model, [plan], 3, X.device)[0]
    low = score_perturbed(model, [plan], 3, X.device, autocast=torch.bfloat16)[0]
    assert low.dtype == torch.float32
    assert not torch.equal(full, low)
    assert torch.allclose(full, low, atol=0.05)
    assert torch.equal(full, deletion(model, X, maps, None, steps=4, batch_size=3).curves[:, 1:].flatten())
