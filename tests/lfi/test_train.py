"""fit(): the three modes, seeds, checkpoints and resuming, the schedule, ImageFolder training."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from tests.nets import small_resnet, tiny_efficientnet
from xcam.errors import InputError, InputTypeError
from xcam.lfi import (
    History,
    LFICAMNet,
    ShapesDataset,
    build_backbone,
    evaluate,
    fit,
    load_checkpoint,
    train_imagefolder,
    write_image_folder,
)
from xcam.lfi.train import lr_factor

DATA = ShapesDataset(48, size=32, seed=0)


def make_net(seed: int = 0) -> LFICAMNet:
    """Tiny EfficientNet (dropout and stochastic depth use the global RNG) with a 2-block FIN."""
    return LFICAMNet(tiny_efficientnet(seed=seed), depth=2, width=8, seed=seed)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_posthoc_trains_the_fin_alone_and_leaves_the_backbone_bit_identical() -> None:
    net = make_net()
    backbone_before, fin_before = snapshot(net.backbone), snapshot(net.fin)
    net.train()
    history = fit(net, DATA, "posthoc", epochs=1, batch_size=16, lr=0.05, progress=False)
    after = net.backbone.state_dict()
    # Every parameter and buffer: weights, BN running mean / var and num_batches_tracked.
    assert set(after) == set(backbone_before)
    assert all(torch.equal(backbone_before[k], after[k]) for k in after)
    assert all(p.grad is None for p in net.backbone.parameters())
    fin_after = net.fin.state_dict()
    assert not torch.equal(fin_before["blocks.0.weight"], fin_after["blocks.0.weight"])
    assert not torch.equal(fin_before["blocks.1.running_mean"], fin_after["blocks.1.running_mean"])
    # The caller's flags come back: everything trainable and in train mode again.
    assert all(p.requires_grad for p in net.parameters())
    assert all(m.training for m in net.modules())
    assert len(history) == 1 and history.val_loss == []


def test_finetune_trains_the_backbone_at_a_scaled_rate() -> None:
    net = make_net()
    conv_before = net.backbone.features[0][0].weight.clone()
    bn_before = net.backbone.features[0][1].running_mean.clone()
    fin_before = net.fin.blocks[0].weight.clone()
    fit(net, DATA, "finetune", epochs=1, batch_size=16, backbone_lr_scale=0.0, progress=False)
    # lr 0 for the backbone group: weights unchanged, while BN statistics (train mode) and the
    # FIN (its own group) move.
    assert torch.equal(net.backbone.features[0][0].weight, conv_before)
    assert not torch.equal(net.backbone.features[0][1].running_mean, bn_before)
    assert not torch.equal(net.fin.blocks[0].weight, fin_before)
    fit(net, DATA, "scratch", epochs=1, batch_size=16, lr=0.01, progress=False)
    assert not torch.equal(net.backbone.features[0][0].weight, conv_before)


class Stop(Exception):
    pass


def test_seeded_runs_are_bit_identical_also_across_an_interruption(tmp_path) -> None:
    rng_before = torch.get_rng_state()
    full = make_net()
    h_full = fit(full, DATA, "scratch", epochs=4, batch_size=16, lr=0.05, seed=7,
                 checkpoint=tmp_path / "full.pt", progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone

    def stop_after_two(epoch: int, history: History) -> None:
        if epoch == 2:
            raise Stop

    interrupted = make_net()
    with pytest.raises(Stop):
        fit(interrupted, DATA, "scratch", epochs=4, batch_size=16, lr=0.05, seed=7,
            checkpoint=tmp_path / "cut.pt", progress=False, callback=stop_after_two)
    resumed = make_net(seed=5)  # another initialisation: the checkpoint must overwrite it
    h_resumed = fit(resumed, DATA, "scratch", epochs=4, batch_size=16, lr=0.05, seed=7,
                    checkpoint=tmp_path / "cut.pt", resume=True, progress=False)
    final = full.state_dict()
    assert all(torch.equal(final[k], v) for k, v in resumed.state_dict().items())
    assert h_resumed.train_loss == h_full.train_loss and h_resumed.epoch == [1, 2, 3, 4]
    # Step schedule: x0.1 at 50 % and 75 % of the run.
    assert h_full.lr == pytest.approx([0.05, 0.05, 0.005, 0.0005])
    # Another seed, another run (data order, dropout and stochastic depth).
    other = make_net()
    fit(other, DATA, "scratch", epochs=1, batch_size=16, lr=0.05, seed=8, progress=False)
    first = make_net()
    fit(first, DATA, "scratch", epochs=1, batch_size=16, lr=0.05, seed=7, progress=False)
    assert not torch.equal(other.fin.blocks[0].weight, first.fin.blocks[0].weight)


def test_checkpoints_are_safe_to_load_and_never_silently_overwritten(tmp_path) -> None:
    path = tmp_path / "run.pt"
    net = make_net()
    fit(net, DATA, "finetune", epochs=1, batch_size=16, lr=0.02, checkpoint=path, progress=False)
    state = torch.load(path, weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert [g["name"] for g in groups] == ["fin", "backbone"]
    assert groups[0]["lr"] == pytest.approx(0.02) and groups[1]["lr"] == pytest.approx(0.002)
    with pytest.raises(InputError, match="already exists"):
        fit(net, DATA, "finetune", epochs=1, batch_size=16, lr=0.02, checkpoint=path, progress=False)
    with pytest.raises(InputError, match="lr: checkpoint 0.02, now 0.1"):
        fit(net, DATA, "finetune", epochs=1, batch_size=16, lr=0.1, checkpoint=path, resume=True,
            progress=False)
    # A finished run resumes to itself without training.
    before = snapshot(net)
    history = fit(net, DATA, "finetune", epochs=1, batch_size=16, lr=0.02, checkpoint=path,
                  resume=True, progress=False)
    assert len(history) == 1 and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    loaded = load_checkpoint(path, backbone=tiny_efficientnet(seed=9))
    net.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def test_argument_errors() -> None:
    net = make_net()
    with pytest.raises(InputTypeError, match="LFICAMNet"):
        fit(small_resnet(), DATA)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="did you mean 'posthoc'"):
        fit(net, DATA, "post-hoc")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="resume=True needs checkpoint"):
        fit(net, DATA, resume=True)
    with pytest.raises(InputError, match="milestones"):
        fit(net, DATA, milestones=(150, 225))
    # issue 12: a list of pairs is a map-style dataset (test below); these are not
    with pytest.raises(InputTypeError, match="TensorDataset"):
        fit(net, torch.zeros(4, 3, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="map-style dataset"):
        fit(net, 5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"train_data is empty"):
        fit(net, [])
    with pytest.raises(InputError, match=r"train_data\[0\] must be an \(image, label\) pair"):
        fit(net, [torch.zeros(3, 8, 8)])  # type: ignore[list-item]
    with pytest.raises(InputError, match=r"\(C, H, W\) tensor.*to_tensor"):
        fit(net, [(torch.zeros(8, 8).numpy(), 0)])  # type: ignore[list-item]


def test_fit_takes_a_list_of_pairs_like_the_dataset() -> None:
    pairs = [(DATA[i][0], DATA[i][1]) for i in range(len(DATA))]
    a, b = make_net(), make_net()
    ha = fit(a, DATA, "posthoc", epochs=1, batch_size=16, progress=False)
    hb = fit(b, pairs, "posthoc", epochs=1, batch_size=16, progress=False, val_data=pairs[:8])
    # the same images in the same seeded order: bit-identical training
    assert ha.train_loss == hb.train_loss and ha.train_accuracy == hb.train_accuracy
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert hb.val_accuracy == [evaluate(b, pairs[:8])[1]]


def test_schedules() -> None:
    step = [lr_factor("step", e, 300, (0.5, 0.75), 0.1) for e in (0, 149, 150, 224, 225, 299)]
    assert step == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])  # the authors' 150 / 225 of 300
    assert lr_factor("cosine", 0, 10, (), 0.1) == 1.0
    assert lr_factor("cosine", 5, 10, (), 0.1) == pytest.approx(0.5)
    assert lr_factor("constant", 9, 10, (0.5,), 0.1) == 1.0


def test_a_short_run_lowers_the_loss_and_beats_chance() -> None:
    # Upright shapes (rotate=False) on the default clutter learn in a hundred steps; four classes,
    # chance is 0.25. Held-out images come from another seed.
    # Rendered once: TensorDatasets of (image, label, mask).
    train = TensorDataset(*ShapesDataset(512, size=32, seed=0, rotate=False).tensors())
    test = TensorDataset(*ShapesDataset(128, size=32, seed=1, rotate=False).tensors())
    net = LFICAMNet(tiny_efficientnet(seed=0, dropout=0.0, stochastic_depth_prob=0.0), depth=1, seed=0)
    loss_before, _ = evaluate(net, test)
    history = fit(net, train, "scratch", epochs=6, batch_size=32, lr=0.1, schedule="cosine",
                  seed=0, val_data=test, progress=False)
    loss_after, acc_after = evaluate(net, test)
    assert history.train_loss[-1] < 0.7 * history.train_loss[0]
    assert loss_after < loss_before
    assert acc_after == history.val_accuracy[-1]
    assert acc_after >= 0.5, history


def test_train_imagefolder_and_rebuild_from_the_checkpoint(tmp_path) -> None:
    write_image_folder(ShapesDataset(12, size=32, seed=0), tmp_path / "images")
    net, history = train_imagefolder(
        tmp_path / "images", arch="mobilenet_v3_small", image_size=64, augment=False, depth=1,
        epochs=1, batch_size=6, lr=0.01, checkpoint=tmp_path / "lfi.pt", progress=False,
    )
    assert net.classes == ["circle", "cross", "square", "triangle"] and net.arch == "mobilenet_v3_small"
    assert len(history) == 1
    rebuilt = load_checkpoint(tmp_path / "lfi.pt")  # architecture and classes from the checkpoint
    assert rebuilt.classes == net.classes
    x = torch.rand(2, 3, 64, 64)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net(x), rtol=0, atol=0)
    with pytest.raises(InputError, match="weights='DEFAULT'"):
        train_imagefolder(tmp_path / "images", mode="finetune")
    with pytest.raises(InputError, match="did you mean 'resnet18'"):
        build_backbone("resnet19", 4)
    with pytest.raises(InputError, match="IMAGENET1K_V1"):
        build_backbone("resnet18", 4, weights="IMAGENET_V9")  # checked before any download
    # A state-dict file (here a fit() checkpoint, whose backbone part is used).
    backbone = build_backbone("mobilenet_v3_small", 4, weights=tmp_path / "lfi.pt")
    torch.testing.assert_close(backbone.state_dict()["classifier.3.weight"],
                               net.backbone.state_dict()["classifier.3.weight"], rtol=0, atol=0)
