"""Incremental occlusion gives the outputs of plain occlusion, on the models the issue names."""

from __future__ import annotations

import pytest
import torch
import torchvision

from xcam.methods._incremental import IncrementalModel, IncrementalUnsupported, occluded_outputs


def plain(model, image, windows, baseline):
    occ = image.repeat(len(windows), 1, 1, 1)
    base = torch.broadcast_to(baseline, image.shape)[0]
    for i, (y0, y1, x0, x1) in enumerate(windows.tolist()):
        occ[i, :, max(y0, 0):y1, max(x0, 0):x1] = base[:, max(y0, 0):y1, max(x0, 0):x1]
    with torch.no_grad():
        return model(occ)


def grid(size, window, stride):
    starts = [i * stride for i in range(-(-(size - window) // stride) + 1)]
    return torch.tensor([[y, y + window, x, x + window] for y in starts for x in starts])


def build(name):
    torch.manual_seed(0)
    if name == "efficientnet_lite0":
        pytest.importorskip("efficientnet_lite_pytorch")
        from xcam.models import efficientnet_lite0

        return efficientnet_lite0()
    return torchvision.models.get_model(name, num_classes=10).eval()


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg16", "mobilenet_v2", "efficientnet_lite0"])
def test_exact_mode_equals_plain_occlusion(name):
    model = build(name)
    size = 96
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    # 24-px windows, stride 20: the last window reaches past the border (cropped)
    windows = grid(size, 24, 20)
    baseline = torch.tensor(0.5)
    engine = IncrementalModel(model, max_fraction=0.9)
    got = occluded_outputs(model, image, windows, baseline, batch_size=16, engine=engine)
    want = plain(model, image, windows, baseline)
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) <= 1e-4 * scale
    # occlusion changed the outputs: the comparison is not between two clean passes
    with torch.no_grad():
        clean = model(image)
    assert float((want - clean).abs().max()) > 1e-3 * scale
    # and some layers really were computed on a region only
    assert engine.cost(engine.clean(image)).speedup > 1.05


def test_cost_report_on_vgg16_at_224():
    model = build("vgg16")
    image = torch.zeros(1, 3, 224, 224)
    engine = IncrementalModel(model)
    env = engine.clean(image)
    engine.plan(env, grid(224, 32, 16), (224, 224))
    cost = engine.cost(env)
    # VGG-16: 15.3 G conv MACs per image; a 32-px window changes a small part of early layers
    assert 15.0e9 < cost.plain_macs < 15.6e9
    assert cost.speedup > 4


def test_untraceable_models_are_reported():
    class Dynamic(torch.nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return x
            return -x

    with pytest.raises(IncrementalUnsupported, match="torch.fx cannot trace"):
        IncrementalModel(Dynamic())


def test_occlusion_incremental_equals_plain_maps():
    import xcam

    model = build("resnet18")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    plain_exp = xcam.Occlusion(model, window=16, stride=12, baseline=0.3, channels_last=False)(x, [1, 4])
    inc = xcam.Occlusion(model, window=16, stride=12, baseline=0.3, incremental=True)
    inc_exp = inc(x, [1, 4])
    scale = float(plain_exp.maps.abs().max())
    assert scale > 0
    assert float((inc_exp.maps - plain_exp.maps).abs().max()) <= 1e-4 * scale
    assert torch.equal(inc_exp.targets, plain_exp.targets)
    assert inc.cost((64, 64)).plain_macs > 0
    # approximate mode: faster regions, a different (reported) map
    approx = xcam.Occlusion(model, window=16, stride=12, baseline=0.3, approximate=0.25)(x, [1, 4])
    assert approx.params["approximate"] == 0.25
    assert not torch.allclose(approx.maps, plain_exp.maps, atol=1e-4 * scale)


def test_occlusion_incremental_falls_back_with_a_warning():
    import xcam

    class Dynamic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x).mean((2, 3))
            return y if y.sum() > -1e9 else -y

    x = torch.randn(1, 3, 16, 16)
    with pytest.warns(UserWarning, match="running plain occlusion"):
        exp = xcam.Occlusion(Dynamic().eval(), window=8, stride=8, incremental=True)(x, 0)
    ref = xcam.Occlusion(Dynamic().eval(), window=8, stride=8)(x, 0)
    assert exp.maps.shape == ref.maps.shape


def test_batch_norms_fold_into_convolutions_from_the_current_statistics():
    # torchvision initialises batch norm to the identity (mean 0, var 1, weight 1, bias 0), under
    # which a wrong fold goes unseen: give every batch norm real statistics, build the engine,
    # then change them again; the engine must follow the model as it is when it runs.
    model = build("resnet18")
    gen = torch.Generator().manual_seed(3)

    def randomise():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.data.copy_(torch.randn(c, generator=gen) * 0.2)

    randomise()
    engine = IncrementalModel(model)
    assert len(engine._bn_after) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    image = torch.randn(1, 3, 64, 64, generator=gen)
    windows = grid(64, 16, 16)
    baseline = torch.tensor(0.0)
    for _ in range(2):
        got = occluded_outputs(model, image, windows, baseline, batch_size=8, engine=engine)
        want = plain(model, image, windows, baseline)
        assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())
        randomise()
