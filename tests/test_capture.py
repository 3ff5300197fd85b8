from __future__ import annotations

import pytest
import torch
from torch import nn

import xcam
from xcam.errors import GradientModeError, InputError, LayerNotFoundError


def _n_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_records_output_and_gradient_equal_to_autograd(tiny, images):
    with xcam.capture(tiny, "features") as cap:
        out = tiny(images)
        grads = cap.gradients(out[:, 2])
    feats = cap["features"]
    # Reference: rebuild the head by hand from the recorded features.
    f = feats.detach().clone().requires_grad_(True)
    logits = tiny.fc(torch.relu(f).mean((2, 3)))
    (ref,) = torch.autograd.grad(logits[:, 2].sum(), f)
    assert torch.allclose(grads["features"], ref, atol=1e-6)
    assert torch.allclose(logits, out, atol=1e-5)


def test_input_tap_records_what_the_pool_receives(tiny, images):
    with torch.no_grad(), xcam.capture(tiny, ["features", "pool:input"]) as cap:
        tiny(images)
    # pool:input is after the in-place ReLU; features is before it
    assert torch.equal(cap["pool:input"], torch.relu(cap["features"]))
    assert (cap["features"] < 0).any()


def test_stored_output_survives_inplace_relu(tiny, images):
    with torch.no_grad():
        expected = tiny.features(images)
    with torch.no_grad(), xcam.capture(tiny, "features") as cap:
        tiny(images)
    # the in-place ReLU that follows must not have clipped the stored tensor
    assert torch.equal(cap["features"], expected)


def test_hooks_removed_after_success_and_exception(tiny, images):
    before = _n_hooks(tiny)
    with xcam.capture(tiny, ["features", "pool:input"]):
        assert _n_hooks(tiny) == before + 2
        tiny(images)
    assert _n_hooks(tiny) == before
    with pytest.raises(RuntimeError, match="boom"):
        with xcam.capture(tiny, ["features", "pool:input"]):
            raise RuntimeError("boom")
    assert _n_hooks(tiny) == before


def test_training_flags_restored_and_eval_inside(tiny, images):
    tiny.train()
    tiny.features[1].eval()  # a mixed state must come back as it was
    flags = {n: m.training for n, m in tiny.named_modules()}
    running = tiny.features[1].running_mean.clone()
    with xcam.capture(tiny, "features"):
        assert not any(m.training for m in tiny.modules())
        tiny(images)
    assert {n: m.training for n, m in tiny.named_modules()} == flags
    assert torch.equal(tiny.features[1].running_mean, running)


def test_param_grad_and_requires_grad_untouched(tiny, images):
    tiny.fc.weight.grad = torch.full_like(tiny.fc.weight, 7.0)
    tiny.features[0].weight.requires_grad_(False)
    with xcam.capture(tiny, "features") as cap:
        out = tiny(images)
        cap.gradients(out[:, 0])
    assert torch.equal(tiny.fc.weight.grad, torch.full_like(tiny.fc.weight, 7.0))
    assert tiny.features[4].weight.grad is None
    assert not tiny.features[0].weight.requires_grad
    assert tiny.features[4].weight.requires_grad


def test_gradients_exist_with_frozen_model(tiny, images):
    for p in tiny.parameters():
        p.requires_grad_(False)
    with xcam.capture(tiny, "features") as cap:
        out = tiny(images)
        g = cap.gradients(out[:, 1])["features"]
    assert g.abs().sum() > 0
    assert not any(p.requires_grad for p in tiny.parameters())


def test_errors(tiny, images):
    with pytest.raises(LayerNotFoundError, match="did you mean 'features'"):
        xcam.capture(tiny, "featurs")
    with pytest.raises(InputError, match="after ':'"):
        xcam.capture(tiny, "pool:inptu")
    with pytest.raises(LayerNotFoundError):
        xcam.capture(tiny, nn.Conv2d(1, 1, 1))
    with torch.inference_mode(), xcam.capture(tiny, "features") as cap:
        out = tiny(images)
        with pytest.raises(GradientModeError, match="inference_mode"):
            cap.gradients(out[:, 0])


def test_module_called_twice_warns_and_keeps_last():
    shared = nn.ReLU()
    model = nn.Sequential()
    model.add_module("a", nn.Conv2d(3, 3, 1))
    model.add_module("act", shared)
    model.add_module("b", nn.Conv2d(3, 3, 1))
    model.add_module("act2", shared)
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad(), xcam.capture(model, "act") as cap:
        out = model(x)
    with pytest.warns(UserWarning, match="ran 2 times"):
        last = cap["act"]
    assert torch.equal(last, out)
