"""The LFICAM explainer: reads the network's attention, class-agnostic, leaves the model as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import xcam
from tests.nets import randomize_bn, small_resnet
from xcam.errors import InputTypeError, TargetError
from xcam.lfi import LFICAMNet
from xcam.methods import LFICAM


@pytest.fixture(scope="module")
def net() -> LFICAMNet:
    model = LFICAMNet(small_resnet(num_classes=5), depth=1, seed=0)
    randomize_bn(model.fin, 3)
    return model.eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(3, 3, 64, 48, generator=torch.Generator().manual_seed(2))


def test_registered_and_created_by_name(net: LFICAMNet) -> None:
    assert "lficam" in xcam.list_explainers()
    explainer = xcam.create("lficam", net)
    assert isinstance(explainer, LFICAM) and not LFICAM.needs_gradients


def test_maps_are_the_upsampled_attention(net: LFICAMNet, x: torch.Tensor) -> None:
    exp = LFICAM(net)(x)
    with torch.no_grad():
        logits, attention = net(x, return_attention=True)
    assert exp.low_res is not None and exp.low_res.shape == (3, 4, 3)
    torch.testing.assert_close(exp.low_res, attention[:, 0], rtol=0, atol=0)
    expected = F.interpolate(attention, size=(64, 48), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(exp.maps, expected, rtol=0, atol=0)
    assert exp.maps.shape == (3, 64, 48) and exp.maps.dtype == torch.float32
    assert float(exp.maps.min()) >= 0 and float(exp.maps.max()) <= 1
    assert torch.equal(exp.targets, logits.argmax(1))
    torch.testing.assert_close(exp.scores, logits.gather(1, logits.argmax(1, keepdim=True))[:, 0])
    assert exp.method == "lficam" and exp.layer == "backbone.layer4"


def test_targets_do_not_change_the_map(net: LFICAMNet, x: torch.Tensor) -> None:
    explainer = LFICAM(net)
    a = explainer(x, targets=[0, 1, 2])
    b = explainer(x, targets=4)
    assert torch.equal(a.maps, b.maps)
    assert a.targets.tolist() == [0, 1, 2] and b.targets.tolist() == [4, 4, 4]
    assert not torch.equal(a.scores, b.scores)
    c = explainer(x, targets=lambda out: out.logsumexp(1))
    assert c.targets is None and torch.equal(c.maps, a.maps)
    with pytest.raises(TargetError, match="class-agnostic"):
        explainer(x, targets=xcam.targets.channel("backbone.layer4", 0))


def test_runs_in_eval_mode_and_leaves_the_model_as_it_was(x: torch.Tensor) -> None:
    model = LFICAMNet(small_resnet(num_classes=5), depth=1, seed=0)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    exp = LFICAM(model)(x)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # BN stats too
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        _, attention = model(x, return_attention=True)
    torch.testing.assert_close(exp.low_res, attention[:, 0], rtol=0, atol=0)


def test_refuses_a_model_that_is_not_an_lficamnet() -> None:
    with pytest.raises(InputTypeError, match="LFICAMNet.*posthoc"):
        LFICAM(small_resnet())


@pytest.mark.slow
def test_after_training_the_map_points_at_the_object() -> None:
    """Trained on shapes over clutter, the attention puts its mass on the object (about 0.6 of it
    on 12 % of the image after 8 epochs; 0.12 would be a map that ignores the object)."""
    from torch.utils.data import TensorDataset

    from tests.nets import tiny_efficientnet
    from xcam.lfi import ShapesDataset, fit

    train = TensorDataset(*ShapesDataset(1024, size=64, seed=0, rotate=False).tensors())
    images, labels, masks = ShapesDataset(256, size=64, seed=1, rotate=False).tensors()
    model = LFICAMNet(tiny_efficientnet(seed=0, dropout=0.0, stochastic_depth_prob=0.0), depth=2, seed=0)
    fit(model, train, "scratch", epochs=8, batch_size=32, lr=0.1, schedule="cosine", seed=0,
        progress=False)
    exp = LFICAM(model)(images)
    assert float((exp.targets == labels).float().mean()) > 0.8
    energy = (exp.maps * masks).flatten(1).sum(1) / exp.maps.flatten(1).sum(1)
    area = masks.flatten(1).float().mean(1)
    assert float(energy.mean()) > 3 * float(area.mean())
