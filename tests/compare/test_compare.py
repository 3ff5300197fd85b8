from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.nets import tiny
from xcam.compare import CompareError, ResumeError, compare, sanity_layers
from xcam.data import read_manifest
from xcam.methods import GradCAM
from xcam.metrics import (
    deletion,
    energy_pointing_game,
    max_box_acc,
    mean_ci,
    pointing_game,
    pointing_game_baseline,
    wilcoxon,
)
from xcam.models import Preprocess
from xcam.registry import METRICS as REGISTERED

from .conftest import BOXES, write_images, write_manifest
from .counting import Counting, counting_gradcam

ROOT = Path(__file__).parents[2]
PREP = Preprocess.named("unit", 32)
METRICS = ["pointing_game", "energy_pointing_game", "max_box_acc", "deletion", "insertion",
           "average_drop", "increase_in_confidence"]
KW = {"deletion": {"steps": 8}, "insertion": {"steps": 8}}
CENTER = REGISTERED.get("pointing_game").baseline_label  # the pointing game's center point


def run(model, data, out, methods=("gradcam",), metrics=METRICS, **kw):
    named = not isinstance(methods, dict) and "gradcam" in methods
    kw.setdefault("method_kwargs", {"gradcam": {"layer": "features"}} if named else {})
    return compare(model, data, list(methods) if not isinstance(methods, dict) else methods, metrics,
                   out=out, preprocess=PREP, metric_kwargs={k: v for k, v in KW.items() if k in metrics},
                   report=kw.pop("report", False), **kw)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """One finished run: gradcam + controls on the 6 images of the manifest."""
    folder = tmp_path_factory.mktemp("data")
    write_images(folder)
    from .conftest import LABELS

    rows = [f"{n},{LABELS[n]}," + (",".join(str(v) for v in b)) for n, bs in BOXES.items() for b in bs]
    rows.append("im5.png,1,,,,")
    write_manifest(folder / "boxes.csv", rows)
    out = tmp_path_factory.mktemp("out")
    return run(tiny(), folder / "boxes.csv", out, report=True), folder


def test_values_equal_the_metrics_computed_by_hand(done):
    result, folder = done
    data = read_manifest(folder / "boxes.csv")
    model = tiny()
    table = {(r["index"], r["method"], r["metric"]): r["value"] for r in result.table()}
    maps, boxes, pgs = [], [], []
    for i in range(6):
        loaded = data.load(i, 32)
        x = PREP(loaded.pixels[None])
        target = torch.tensor([data[i].label])
        m = GradCAM(model, layer="features")(x, target).maps
        if loaded.boxes:
            energy = float(energy_pointing_game(m, [loaded.boxes])[0])
            assert table[(i, "gradcam", "energy_pointing_game")] == pytest.approx(energy, abs=1e-6)
            pgs.append(float(pointing_game(m, [loaded.boxes])[0]))
            maps.append(m)
            boxes.append(loaded.boxes)
        else:  # no box: localization is undefined
            assert math.isnan(table[(i, "gradcam", "energy_pointing_game")])
        auc = float(deletion(model, x, m, target, steps=8).auc[0])
        assert table[(i, "gradcam", "deletion")] == pytest.approx(auc, abs=1e-6)
    summary = {(r["method"], r["metric"]): r for r in result.summary()}
    row = summary[("gradcam", "pointing_game")]
    assert row["n"] == 5 and row["mean"] == pytest.approx(sum(pgs) / 5)
    energies = [table[(i, "gradcam", "energy_pointing_game")] for i in range(5)]
    ci = mean_ci(torch.tensor(energies, dtype=torch.float64), seed=0)
    got = summary[("gradcam", "energy_pointing_game")]
    assert (got["mean"], got["ci_low"], got["ci_high"]) == pytest.approx((ci.mean, ci.low, ci.high))
    # MaxBoxAcc: per-image hits at the best threshold average to the data-set value
    expected = max_box_acc(torch.cat(maps), boxes).value
    assert summary[("gradcam", "max_box_acc")]["mean"] == pytest.approx(expected)
    # the center baseline is reported beside the pointing game, under the metric's baseline label
    center = [r for r in result.summary() if r["method"] == CENTER][0]
    hand = pointing_game_baseline(boxes, size=(32, 32)).mean()
    assert center["mean"] == pytest.approx(float(hand)) and center["n"] == 5


def test_ranks_best_and_paired_test(done):
    result, _ = done
    rows = result.summary()
    table = result.table()
    for metric in METRICS:
        cells = [r for r in rows if r["metric"] == metric and r["method"] != CENTER]
        higher = cells[0]["higher_is_better"]
        ranked = [r for r in cells if not r["control"]]  # controls are shown, never ranked
        assert [r["method"] for r in ranked] == ["gradcam"]
        assert all(r["rank"] is None and not r["best"] for r in cells if r["control"])
        ordered = sorted(ranked, key=lambda r: -r["mean"] if higher else r["mean"])
        assert ordered[0]["rank"] == 1 and [r for r in cells if r["best"]][0]["mean"] == ordered[0]["mean"]
        assert all(a["rank"] <= b["rank"] for a, b in zip(ordered, ordered[1:]))
        best = [r for r in cells if r["best"]][0]["method"]
        for r in cells:
            if r["method"] == best:
                assert math.isnan(r["p_vs_best"])
                continue
            col = [t for t in table if t["metric"] == metric]
            a = torch.tensor([t["value"] for t in col if t["method"] == best])
            b = torch.tensor([t["value"] for t in col if t["method"] == r["method"]])
            try:
                expected = wilcoxon(a, b).p_value
            except ValueError:
                expected = float("nan")
            assert r["p_vs_best"] == pytest.approx(expected, nan_ok=True)


def test_controls_run_time_and_forward_passes(done):
    result, _ = done
    assert result.methods == ["gradcam", "blank", "random", "center", "edges"]
    timing = {t["method"]: t for t in result.timing()}
    for m in result.methods:
        assert timing[m]["images"] == 6 and timing[m]["failed"] == 0
        assert timing[m]["seconds_per_image"] > 0
        # deletion 8 + insertion 8 + average drop 1 + increase 1 (the clean pass is shared)
        assert timing[m]["metric_forward_passes_per_image"] == 18
    # Grad-CAM and the deterministic controls share one pass per batch (xcam.explain), its cost split
    # evenly between the four; the random control draws per image and runs its own pass
    for m in ("gradcam", "blank", "center", "edges"):
        assert timing[m]["forward_passes_per_image"] == 1 / 4
    assert timing["random"]["forward_passes_per_image"] == 1
    assert timing["gradcam"]["layer"] == "features"
    curves = result.mean_curves("deletion")
    assert set(curves) == set(result.methods) and len(curves["gradcam"]) == 9


def test_interrupted_run_resumes_without_recomputing(tmp_path, dataset, model):
    csv = dataset / "boxes.csv"
    methods = {"gradcam": counting_gradcam}
    Counting.reset()
    Counting.interrupt_after = 3
    with pytest.raises(KeyboardInterrupt):  # batches of one image: interrupted after 3 images
        run(model, csv, tmp_path / "a", methods=methods, metrics=["pointing_game"], batch_size=1)
    written = [json.loads(line) for line in (tmp_path / "a" / "records.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "item" and r["method"] == "gradcam" for r in written) == 3
    Counting.reset()
    resumed = run(model, csv, tmp_path / "a", methods=methods, metrics=["pointing_game"], batch_size=4)
    assert Counting.calls == 3  # only the 3 images left (counted in images, whatever the batches)
    Counting.reset()
    fresh = run(model, csv, tmp_path / "b", methods=methods, metrics=["pointing_game"])
    assert Counting.calls == 6
    assert json.dumps(resumed.table()) == json.dumps(fresh.table())  # NaN == NaN as text
    Counting.reset()
    run(model, csv, tmp_path / "a", methods=methods, metrics=["pointing_game"])
    assert Counting.calls == 0  # everything was done


def test_killed_run_resumes_where_it_stopped(tmp_path, dataset, model):
    """SIGKILL a `compare` process halfway, add a torn last line, and finish the run."""
    out = tmp_path / "out"
    script = (
        "import sys; sys.path.insert(0, {root!r})\n"
        "import torch; torch.set_num_threads(1)\n"
        "from tests.compare.test_compare import run\n"
        "from tests.nets import tiny\nfrom tests.compare.counting import counting_gradcam\n"
        "run(tiny(), {csv!r}, {out!r}, methods={{'gradcam': counting_gradcam}}, "
        "metrics=['pointing_game'], controls=False, batch_size=1)\n"
    ).format(root=str(ROOT), csv=str(dataset / "boxes.csv"), out=str(out))
    env = {**os.environ, "XCAM_TEST_SLEEP": "0.4", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = out / "records.jsonl"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if records.exists() and records.read_text().count('"kind": "item"') >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done_before = records.read_text().count('"kind": "item"')
    assert 2 <= done_before < 6
    with open(records, "a") as handle:  # a record cut in the middle of its write
        handle.write('{"kind": "item", "image": "im5.png", "ind')
    Counting.reset()
    result = run(model, dataset / "boxes.csv", out, methods={"gradcam": counting_gradcam},
                 metrics=["pointing_game"], controls=False)
    assert Counting.calls == 6 - done_before
    assert [t["images"] for t in result.timing()] == [6]
    lines = records.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # the torn line is gone
    assert sum('"kind": "item"' in line for line in lines) == 6


def test_bad_image_is_recorded_and_skipped(tmp_path, dataset, model):
    (dataset / "broken.png").write_bytes(b"\x89PNG but not really")
    text = (dataset / "boxes.csv").read_text() + "broken.png,1,1,1,5,5\nmissing.png,2,,,,\n"
    (dataset / "boxes.csv").write_text(text)
    Counting.reset()
    with pytest.warns(UserWarning, match="2 image.*failed and were skipped"):
        result = run(model, dataset / "boxes.csv", tmp_path, methods={"gradcam": counting_gradcam},
                     metrics=["pointing_game"], controls=False)
    errors = result.errors()
    assert [(e["image"], e["method"]) for e in errors] == [("broken.png", None), ("missing.png", None)]
    assert "cannot be decoded" in errors[0]["error"] and "does not exist" in errors[1]["error"]
    assert Counting.calls == 6
    assert {r["image"] for r in result.table()} == set(BOXES)
    Counting.reset()
    with pytest.warns(UserWarning, match="failed and were skipped"):
        run(model, dataset / "boxes.csv", tmp_path, methods={"gradcam": counting_gradcam},
            metrics=["pointing_game"], controls=False)
    assert Counting.calls == 0  # the bad images are not retried


def test_a_method_failing_on_one_image_is_recorded_but_on_every_image_stops(tmp_path, dataset, model):
    Counting.reset()
    Counting.fail_on = {2}
    with pytest.warns(UserWarning, match="1 image.*failed and were skipped"):
        result = run(model, dataset / "boxes.csv", tmp_path / "a", methods={"gradcam": counting_gradcam},
                     metrics=["pointing_game"], controls=False, batch_size=1)
    errors = result.errors()
    assert len(errors) == 1 and errors[0]["index"] == 1 and "planned failure" in errors[0]["error"]
    values = [r["value"] for r in result.table()]
    assert math.isnan(values[1]) and not math.isnan(values[0])
    Counting.reset()
    Counting.fail_on = set(range(1, 100))
    with pytest.raises(CompareError, match="failed on its first 3 images.*planned failure"):
        run(model, dataset / "boxes.csv", tmp_path / "b", methods={"gradcam": counting_gradcam},
            metrics=["pointing_game"], controls=False, max_failures=3, batch_size=1)
    Counting.reset()


def test_resume_refuses_other_settings_and_overwrite_starts_again(tmp_path, dataset, model):
    csv = dataset / "boxes.csv"
    run(model, csv, tmp_path, metrics=["pointing_game"], controls=False)
    with pytest.raises(ResumeError, match="another metrics"):
        run(model, csv, tmp_path, metrics=["energy_pointing_game"], controls=False)
    with pytest.raises(ResumeError, match="method 'gradcam'.*other settings"):
        run(model, csv, tmp_path, metrics=["pointing_game"], controls=False,
            method_kwargs={"gradcam": {"layer": "features.4"}})
    other = tiny(num_classes=5)
    with torch.no_grad():
        other.fc.bias.add_(1.0)
    with pytest.raises(ResumeError, match="another weights"):
        run(other, csv, tmp_path, metrics=["pointing_game"], controls=False)
    result = run(model, csv, tmp_path, metrics=["energy_pointing_game"], controls=False, overwrite=True)
    assert result.metrics == ["energy_pointing_game"]


def test_resume_refuses_scores_of_an_older_metric_definition(tmp_path, dataset, model):
    """A run folder written before a definition changed (pointing game v1: ties in raster order)
    is not resumed with the new definition: the two would mix in one table."""
    csv = dataset / "boxes.csv"
    run(model, csv, tmp_path, metrics=["pointing_game"], controls=False)
    settings = json.loads((tmp_path / "run.json").read_text())
    assert settings["metric_versions"] == {"pointing_game": 2}
    settings["metric_versions"] = {"pointing_game": 1}
    (tmp_path / "run.json").write_text(json.dumps(settings))
    with pytest.raises(ResumeError, match="another metric_versions"):
        run(model, csv, tmp_path, metrics=["pointing_game"], controls=False)
    del settings["metric_versions"]  # a folder from before versions were recorded
    (tmp_path / "run.json").write_text(json.dumps(settings))
    with pytest.raises(ResumeError, match="another metric_versions"):
        run(model, csv, tmp_path, metrics=["pointing_game"], controls=False)


def test_argument_errors_name_the_fix(tmp_path, dataset, model):
    csv = dataset / "boxes.csv"
    with pytest.raises(ValueError, match="did you mean 'gradcam'"):
        run(model, csv, tmp_path, methods=["gradcma"])
    with pytest.raises(ValueError, match="did you mean 'deletion'"):
        run(model, csv, tmp_path, metrics=["deltion"])
    with pytest.raises(ValueError, match=r"metric_kwargs\['deletion'\].*stepz"):
        compare(model, csv, ["gradcam"], ["deletion"], metric_kwargs={"deletion": {"stepz": 3}})
    with pytest.raises(ValueError, match="targets must be one of"):
        compare(model, csv, ["gradcam"], targets="best")
    write_manifest(dataset / "big.csv", ["im0.png,7,1,1,4,4", "im1.png,1,1,1,4,4"])
    with pytest.warns(UserWarning, match="1 image"):
        result = compare(model, dataset / "big.csv", ["gradcam"], ["pointing_game"], targets="label",
                         preprocess=PREP, controls=False, method_kwargs={"gradcam": {"layer": "features"}})
    assert "class 7 of image 'im0.png' is outside the model's 5 outputs" in result.errors()[0]["error"]
    assert [r["image"] for r in result.table()] == ["im1.png"]


def test_sanity_check_records_curves_per_method(tmp_path, dataset, model):
    result = run(model, dataset / "boxes.csv", tmp_path, metrics=["model_parameter_randomization"],
                 sanity_images=2, controls=True)
    assert sanity_layers(model) == ["fc", "features.4", "features.1", "features.0"]
    by_method = {r["method"]: r for r in result.sanity}
    assert by_method["gradcam"]["layers"] == ["fc", "features.4", "features.1", "features.0"]
    assert by_method["gradcam"]["images"] == [0, 1]
    assert by_method["center"]["ssim"] == pytest.approx([1.0] * 4)  # a control ignores the model
    assert by_method["gradcam"]["ssim"][-1] < 0.9
    rows = [r for r in result.table() if r["method"] == "gradcam"]
    assert [math.isnan(r["value"]) for r in rows] == [False, False, True, True, True, True]


def test_folder_without_boxes_and_predicted_targets(tmp_path, model):
    write_images(tmp_path / "imgs", ["a.png", "b.png"])
    result = compare(model, tmp_path / "imgs", ["gradcam"], ["pointing_game", "deletion"],
                     preprocess=PREP, metric_kwargs={"deletion": {"steps": 8}},
                     method_kwargs={"gradcam": {"layer": "features"}}, controls=False)
    with torch.no_grad():
        predicted = model(PREP(_pixels(tmp_path / "imgs"))).argmax(1).tolist()
    assert [img["target"] for img in result.images] == predicted
    values = {r["metric"]: r["value"] for r in result.table() if r["index"] == 0}
    assert math.isnan(values["pointing_game"]) and not math.isnan(values["deletion"])


def _pixels(folder: Path) -> torch.Tensor:
    from xcam.data import load_data

    data = load_data(folder)
    return torch.stack([data.load(i, 32).pixels for i in range(len(data))])



def test_a_run_where_every_image_fails_stops(tmp_path, model):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"not an image")
    with pytest.raises(CompareError, match="first 3 images all failed.*cannot be decoded"):
        compare(model, [tmp_path / n for n in ("a.png", "b.png", "c.png")], ["gradcam"],
                ["pointing_game"], preprocess=PREP, max_failures=3)
