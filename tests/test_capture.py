from __future__ import annotations

import warnings

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
        assert _n_hooks(tiny) == before + 3  # one per tap, one on the model (new forward pass)
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


def _shared_relu_model() -> nn.Sequential:
    torch.manual_seed(0)
    shared = nn.ReLU()
    model = nn.Sequential()
    model.add_module("a", nn.Conv2d(3, 3, 1))
    model.add_module("act", shared)
    model.add_module("b", nn.Conv2d(3, 3, 1))
    model.add_module("act2", shared)
    return model


def test_module_called_twice_warns_and_keeps_last():
    model = _shared_relu_model()
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad(), xcam.capture(model, "act") as cap:
        out = model(x)
    with pytest.warns(UserWarning, match="ran 2 times"):
        last = cap["act"]
    assert torch.equal(last, out)


def test_module_called_twice_counts_per_forward_pass():
    model = _shared_relu_model()
    x1, x2 = torch.randn(2, 1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), xcam.capture(model, "act") as cap:
        model(x1)
        out = model(x2)
        # the shared ReLU runs twice per pass: the count is 2, not 4 after two passes
        with pytest.warns(UserWarning, match="ran 2 times in one forward pass"):
            last = cap["act"]
    assert torch.equal(last, out)


def test_two_forward_passes_in_one_block_do_not_warn(tiny, images):
    with torch.no_grad():
        expected = tiny.features(images[1:])
    with torch.no_grad(), xcam.capture(tiny, ["features", "pool:input"]) as cap:
        tiny(images[:1])
        tiny(images[1:])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "ran 2 times" warning: each pass ran it once
            feats = cap["features"]
    assert torch.equal(feats, expected)  # the second pass's tensor


def test_layer_missing_from_the_last_forward_pass_is_not_stale():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 3, 1)
            self.b = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor, use_b: bool = True) -> torch.Tensor:
            x = self.a(x)
            return self.b(x) if use_b else x

    model = Branchy()
    x1, x2 = torch.randn(2, 1, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model.a(x2)
    with torch.no_grad(), xcam.capture(model, ["a", "b"]) as cap:
        model(x1)
        model(x2, use_b=False)
        assert torch.equal(cap["a"], expected)
        # "b" ran only in the first pass: no stale tensor from it
        with pytest.raises(InputError, match="did not run"):
            cap["b"]
