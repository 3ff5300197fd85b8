"""Two explainers on one model in two threads (issue 12, item 8).

Hooks live on the model, so two captures running at once would record each other's tensors, and
two save / restore of the training flags interleaved would leave modules in eval mode. The
per-model lock (``xcam._checks.model_lock``), held by ``capture`` from ``__enter__`` to exit and by
``eval_mode``, makes the passes run one after the other. Expected: maps bit-identical to the
single-threaded ones, and every flag and buffer as before.
"""

from __future__ import annotations

import threading

import pytest
import torch

from tests.nets import TinyNet, randomize_bn
from xcam.methods import GradCAM, GradCAMPlusPlus, InputGradient, Occlusion

ROUNDS = 12
# warnings.catch_warnings is not thread-safe: filter through pytest for the whole module
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = TinyNet()
    randomize_bn(model, torch.Generator().manual_seed(1))
    model.train()  # the flags must come back in train mode
    return model


def _jobs(model):
    gen = torch.Generator().manual_seed(5)
    xs = [torch.randn(2, 3, 16, 16, generator=gen) for _ in range(ROUNDS)]
    return {
        "gradcam": (GradCAM(model, layer="features"), xs, [1, 3]),
        "gradcampp": (GradCAMPlusPlus(model, layer="features.2"), xs[::-1], [0, 4]),
        "gradient": (InputGradient(model, channels_last=False), xs, [2, 2]),
        "occlusion": (Occlusion(model, 8, 8, channels_last=False), xs[::-1], [4, 1]),
    }


def _run(explainer, xs, targets):
    return [explainer(x, targets).maps for x in xs]


def test_two_threads_give_the_single_threaded_maps_and_restore_the_model():
    model = _model()
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    jobs = _jobs(model)
    reference = {name: _run(*job) for name, job in jobs.items()}  # one thread, one at a time
    assert all(float(m.abs().sum()) > 0 for maps in reference.values() for m in maps[:4])
    assert [m.training for m in model.modules()] == flags

    results: dict[str, list[torch.Tensor]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def work(name: str) -> None:
        try:
            start.wait()
            results[name] = _run(*jobs[name])
        except BaseException as err:  # reported below, not swallowed
            errors.append(err)

    threads = [threading.Thread(target=work, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    wrong = [(name, i) for name in jobs for i, (a, b) in enumerate(zip(results[name], reference[name]))
             if not torch.equal(a, b)]
    assert wrong == []
    assert [m.training for m in model.modules()] == flags  # no module left in eval mode
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # BN buffers too
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0
