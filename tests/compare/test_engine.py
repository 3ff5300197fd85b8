"""The batched engine: batch size, workers and seeds do not change the table; sharding; pictures; plan."""

from __future__ import annotations

import json
import math

import pytest
import torch

from xcam.compare import compare, plan
from xcam.evaluation.distributed import owner, shard
from xcam.evaluation.engine import Progress, format_seconds
from xcam.evaluation.spec import image_seed
from xcam.models import Preprocess
from xcam.registry import EXPLAINERS, METRICS

from .conftest import BOXES

PREP = Preprocess.named("unit", 32)
# deterministic and stochastic methods (smoothgrad, the random control) and metrics (faithfulness
# correlation draws its subsets): all must give the same scores in any batch
METHODS = ["gradcam", "gradcampp", "smoothgrad"]
METRICS_USED = ["pointing_game", "energy_pointing_game", "max_box_acc", "deletion", "average_drop",
                "faithfulness_correlation"]
SETTINGS = {
    "method_kwargs": {"gradcam": {"layer": "features"}, "gradcampp": {"layer": "features"},
                      "smoothgrad": {"n_samples": 3}},
    "metric_kwargs": {"deletion": {"steps": 4}, "faithfulness_correlation": {"n": 4, "subset": 16}},
}


def run(model, data, out=None, **kw):
    return compare(model, data, METHODS, METRICS_USED, out=out, preprocess=PREP, report=False,
                   progress=False, **SETTINGS, **kw)


def values(result) -> list[tuple[str, str, str, float]]:
    return [(r["image"], r["method"], r["metric"], r["value"]) for r in result.table()]


def same(a, b) -> bool:
    """The same rows; values equal up to float rounding (a batched convolution sums in another
    order), NaN where NaN. Seeds that depended on the batch would change values by far more."""
    return all(x[:3] == y[:3] and (math.isclose(x[3], y[3], rel_tol=1e-5, abs_tol=1e-6)
                                   or (math.isnan(x[3]) and math.isnan(y[3])))
               for x, y in zip(a, b, strict=True))


def test_batch_size_and_workers_do_not_change_the_table(dataset, model):
    csv = dataset / "boxes.csv"
    one = run(model, csv, batch_size=1)
    all_at_once = run(model, csv, batch_size=32, num_workers=2)
    odd = run(model, csv, batch_size=4)  # batches of 4 and 2: other batch compositions
    assert len(values(one)) == 6 * 7 * len(METRICS_USED)  # 3 methods + 4 controls
    assert same(values(one), values(all_at_once))
    assert same(values(one), values(odd))
    # the stochastic ones really are stochastic: two images' random maps differ, as their seeds
    assert not any(math.isnan(v[3]) for v in values(one) if v[2] == "deletion")


def test_seeds_are_per_image_and_stable():
    assert image_seed(0, "a.png") == image_seed(0, "a.png")
    assert len({image_seed(0, "a.png"), image_seed(0, "b.png"), image_seed(1, "a.png")}) == 3
    assert 0 <= image_seed(2**40, "x" * 500) < 2**62


@pytest.mark.parametrize("n, batch_size, world", [(5, 2, 2), (6, 2, 2), (7, 3, 2), (10, 4, 3), (1, 8, 4),
                                                  (0, 2, 2)])
def test_shards_hold_every_image_exactly_once(n, batch_size, world):
    shards = [shard(n, batch_size, r, world) for r in range(world)]
    flat = sorted(i for s in shards for b in s for i in b)
    assert flat == list(range(n))  # no padding duplicate, nothing left out
    for r, s in enumerate(shards):
        assert all(len(b) <= batch_size for b in s)
        assert all(owner(i, batch_size, world) == r for b in s for i in b)
    # the batches are those of a single process: the same images together
    assert sorted(b for s in shards for b in s) == shard(n, batch_size, 0, 1)


def test_pictures_are_png_files_and_records_hold_numbers(tmp_path, dataset, model):
    out = tmp_path / "run"
    compare(model, dataset / "boxes.csv", ["gradcam"], ["pointing_game"], out=out, preprocess=PREP,
            method_kwargs={"gradcam": {"layer": "features"}}, grid_images=2, controls=False,
            progress=False)
    records = [json.loads(line) for line in (out / "records.jsonl").open()]
    thumbs = [r["thumbnail"] for r in records if r["kind"] == "image" and "thumbnail" in r]
    overlays = [r["overlay"] for r in records if r["kind"] == "item" and "overlay" in r]
    assert sorted(thumbs) == ["thumbnails/000000.png", "thumbnails/000001.png"]
    assert sorted(overlays) == ["overlays/000000.gradcam.png", "overlays/000001.gradcam.png"]
    for rel in thumbs + overlays:
        assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    longest = max(len(v) for r in records for v in r.values() if isinstance(v, str))
    assert longest < 200  # no base64 picture in the records
    html = (out / "report.html").read_text()  # stands alone: the files embedded
    assert html.count("data:image/png;base64,iVBOR") >= 4 and "thumbnails/000000.png" not in html


def test_plan_lists_the_cost_of_every_method_and_metric_and_writes_nothing(tmp_path, dataset, model):
    p = plan(model, dataset / "boxes.csv", ["gradcam", "scorecam"], ["pointing_game", "deletion"],
             preprocess=PREP, method_kwargs={"gradcam": {"layer": "features"},
                                             "scorecam": {"layer": "features"}},
             metric_kwargs={"deletion": {"steps": 5}}, batch_size=2, out=tmp_path / "never")
    rows = {(r["kind"], r["name"]): r["forward_passes"] for r in p.rows}
    scorecam = EXPLAINERS.get("scorecam")(model, layer="features")
    assert rows[("method", "gradcam")] == 1
    assert rows[("method", "scorecam")] == scorecam.forward_passes(1) > 1
    assert rows[("method", "random")] == EXPLAINERS.get("random")(model).forward_passes(1)
    assert rows[("metric", "pointing_game")] == 0
    assert rows[("metric", "deletion")] == METRICS.get("deletion").forward_passes(1, steps=5) > 1
    assert p.n_images == len(BOXES) and p.timed_images == 2
    assert p.seconds_per_image > 0 and p.estimated_seconds == pytest.approx(6 * p.seconds_per_image)
    assert "estimated" in str(p) and "deletion" in str(p)
    assert not (tmp_path / "never").exists()


def test_plan_counts_the_layers_of_the_model_for_the_sanity_metrics(tmp_path, dataset, model):
    """Metrics whose cost depends on the model's layers (randomization, MPRT) get the model."""
    p = plan(model, dataset / "boxes.csv", ["gradcam"],
             ["pointing_game", "model_parameter_randomization"],
             preprocess=PREP, method_kwargs={"gradcam": {"layer": "features"}}, batch_size=2,
             controls=False, sanity_images=2, out=tmp_path / "never")
    rows = {(r["kind"], r["name"]): r["forward_passes"] for r in p.rows}
    want = METRICS.get("model_parameter_randomization").forward_passes(2, model=model)
    assert rows[("metric", "model_parameter_randomization")] == want > 2


def test_plan_of_a_long_run_counts_passes_instead_of_timing_every_method(tmp_path, dataset, model,
                                                                         monkeypatch):
    """Where a batch of every method would take long (here: any batch), only the clean pass is
    timed and the estimate is the forward passes per image times it, said to be a lower bound."""
    from xcam.evaluation import engine

    monkeypatch.setattr(engine, "TIMED_BATCH_SECONDS", 0.0)
    ran: list[str] = []
    monkeypatch.setattr(engine.BatchRunner, "explain_shared",
                        lambda self, images, labels: ran.append("explained"))
    p = plan(model, dataset / "boxes.csv", ["gradcam", "scorecam"], ["pointing_game", "deletion"],
             preprocess=PREP, method_kwargs={"gradcam": {"layer": "features"},
                                             "scorecam": {"layer": "features"}},
             metric_kwargs={"deletion": {"steps": 5}}, batch_size=2, controls=False,
             out=tmp_path / "never")
    assert not ran and not p.timed and p.timed_images == 2 and p.forward_seconds > 0
    scorecam = EXPLAINERS.get("scorecam")(model, layer="features")
    deletion = METRICS.get("deletion").forward_passes(1, steps=5)
    passes = 1 + scorecam.forward_passes(1) + 2 * deletion  # two methods, each scored by deletion
    assert engine.passes_per_image(p.rows, p.n_images) == passes
    assert p.seconds_per_image == pytest.approx(passes * p.forward_seconds)
    assert p.estimated_seconds == pytest.approx(len(BOXES) * p.seconds_per_image)
    assert "lower bound" in str(p) and f"{passes:,} forward passes per image" in str(p)


def test_cli_dry_run_prints_the_plan(tmp_path, dataset, capsys):
    from xcam.cli import EXIT_OK, main

    args = ["compare", str(dataset / "boxes.csv"), "--model", "tests.nets:tiny", "--image-size", "32",
            "--preprocess", "unit", "--methods", "gradcam", "--method-arg", "gradcam.layer=features",
            "--metrics", "pointing_game,deletion", "--out", str(tmp_path / "out"), "--dry-run",
            "--batch-size", "3"]
    assert main(args) == EXIT_OK
    text = capsys.readouterr().out
    assert "gradcam" in text and "deletion" in text and "estimated" in text
    assert not (tmp_path / "out").exists()


def test_progress_writes_log_lines_with_an_eta_when_stderr_is_not_a_terminal(capsys):
    progress = Progress(10, None, interval=0.0)  # under pytest stderr is not a terminal
    progress.update(4)
    progress.update(6)
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("xcam compare: 4/10 maps (40 %)") and "ETA" in lines[0]
    assert lines[-1].startswith("xcam compare: 10/10 maps (100 %)")
    silent = Progress(10, False, interval=0.0)
    silent.update(10)
    assert capsys.readouterr().err == ""
    assert format_seconds(93.5) == "1m34s" and format_seconds(7300) == "2h01m"
    assert format_seconds(float("inf")) == "?"


def test_a_batch_with_a_failing_image_records_only_that_image(tmp_path, dataset, model):
    """A method that raises on one image of a batch: the batch is retried image by image."""
    from tests.compare.counting import Counting

    class FailsOnIm2(Counting):
        def __call__(self, inputs, targets=None):
            if inputs.shape[0] == 1 and float(inputs.sum()) == float(bad.sum()):
                raise ValueError("planned failure on im2")
            if inputs.shape[0] > 1 and any(torch.equal(row, bad[0]) for row in inputs):
                raise ValueError("planned failure in a batch with im2")
            return self.inner(inputs, targets)

    from xcam.data import load_data

    data = load_data(dataset / "boxes.csv")
    bad = PREP(data.load(2, (32, 32), preprocess=PREP).pixels[None])
    result = compare(model, dataset / "boxes.csv", {"g": FailsOnIm2}, ["pointing_game"],
                     preprocess=PREP, controls=False, batch_size=6, progress=False)
    errors = result.errors()
    assert [(e["image"], e["method"]) for e in errors] == [("im2.png", "g")]
    assert "planned failure on im2" in errors[0]["error"]
    # im2 failed and im5 has no box: the pointing game is defined on the 4 others
    assert sum(not math.isnan(r["value"]) for r in result.table()) == 4


def test_the_cam_family_runs_one_forward_and_one_backward_per_batch_between_them(dataset, model):
    """Seven CAM-family methods and two deterministic controls on 6 images in batches of 3: per batch
    the clean forward (no gradients), ONE shared forward with gradients and ONE backward pass through
    the layer (counted with hooks), not one per method; the maps equal each method run alone."""
    family = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigencam"]
    methods = family + ["blank", "center"]
    layer = model.features
    forwards = {"grad": 0, "no_grad": 0}
    backwards = []

    def count_forward(module, args):
        if args[0].shape[0] == 3:  # not CAM's one-image probe of the head, done once per explainer
            forwards["grad" if torch.is_grad_enabled() else "no_grad"] += 1

    def count_backward(module, args, output):
        if output.requires_grad:
            output.register_hook(lambda grad: backwards.append(grad.shape[0]))

    handles = [model.register_forward_pre_hook(count_forward), layer.register_forward_hook(count_backward)]
    try:
        result = compare(model, dataset / "boxes.csv", methods, ["energy_pointing_game"], preprocess=PREP,
                         method_kwargs={m: {"layer": "features"} for m in family if m != "cam"},
                         controls=False, batch_size=3, progress=False)
    finally:
        for h in handles:
            h.remove()
    assert forwards == {"no_grad": 2, "grad": 2}  # 2 batches: the clean pass + one shared pass each
    assert backwards == [3, 3]  # one backward pass per batch of 3, for the 5 methods with gradients
    assert all(it["status"] == "ok" for it in result.items) and len(result.items) == 6 * 9
    # the shared pass gives each method its own map: compare's scores = the method run alone
    from xcam.compare import compare as run_alone

    for m in ("gradcampp", "eigencam"):
        alone = run_alone(model, dataset / "boxes.csv", [m], ["energy_pointing_game"], preprocess=PREP,
                          method_kwargs={m: {"layer": "features"}}, controls=False, batch_size=3,
                          progress=False)
        assert json.dumps([r["value"] for r in alone.table()]) == json.dumps(
            [r["value"] for r in result.table() if r["method"] == m])  # bit for bit (NaN as text)


def test_perturbation_metrics_of_several_methods_share_their_forward_passes(dataset, model):
    """Deletion and average drop of three methods on a batch of 6: the perturbed copies of every
    (metric, method) pair fill common forward passes of at most 64 images (3 x 6 x (4 + 1) = 90
    images: 2 passes, not 2 per method), and the scores equal each method run alone."""
    methods = ["gradcam", "gradcampp", "layercam"]
    kw = {"method_kwargs": {m: {"layer": "features"} for m in methods},
          "metric_kwargs": {"deletion": {"steps": 4}}, "preprocess": PREP, "controls": False,
          "batch_size": 6, "progress": False}
    calls = []
    handle = model.register_forward_pre_hook(
        lambda m, a: None if torch.is_grad_enabled() else calls.append(a[0].shape[0]))
    try:
        together = compare(model, dataset / "boxes.csv", methods, ["deletion", "average_drop"], **kw)
    finally:
        handle.remove()
    assert calls == [6, 64, 26]  # the clean pass, then every perturbed copy in two passes
    for m in methods:
        alone = compare(model, dataset / "boxes.csv", [m], ["deletion", "average_drop"],
                        **{**kw, "method_kwargs": {m: {"layer": "features"}}})
        assert same(values(alone), [v for v in values(together) if v[1] == m])
