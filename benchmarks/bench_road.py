"""Speed of ROAD on CPU: ``python -m benchmarks road [--quick]``.

xcam's ``road_morf`` (noisy linear imputation of all images and percentiles at once, by a
conjugate gradient preconditioned with a multigrid V-cycle, float32, in torch; perturbed passes
channels-last) against pytorch-grad-cam's ``ROADMostRelevantFirstAverage`` (one SciPy sparse
system per image and percentile, built in Python) at 224 px (ImageNet's input size, where the
target is judged) and at 128 px, on the same images, maps, targets and percentiles (10 ... 90 %
removed; grad-cam's percentile q removes 100 - q %, so the set is the same), both with the
paper's noise 0.01, and the imputation alone (xcam ``noisy_linear_imputation`` on the stacked
rows vs grad-cam's ``NoisyLinearImputer`` per row). Timed in interleaved rounds within one run;
ratios are what counts. Target (issue 17): xcam at least 5x faster.

The bare row is the forward pass of the imputed images that any implementation must run
(channels-last, as xcam runs it). With the imputation cheap it is most of xcam's time, so the
ratio grows with the image size (the imputation's cost per pixel grows with it for SciPy's
sparse solve, not for the multigrid).

Model: ResNet-18 with random weights (nothing is downloaded), eval mode, one intra-op thread
(restored afterwards).
"""

from __future__ import annotations

import platform

import torch
import torchvision

from benchmarks.common import format_table, interleaved
from xcam.metrics.road import DEFAULT_PERCENTILES, noisy_linear_imputation, road_morf
from xcam.metrics.similarity import descending_rank
from xcam.postprocess import upsample


def main(quick: bool = False) -> str:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(quick)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool) -> str:
    sizes = [(2, 64, 3)] if quick else [(4, 224, 3), (4, 128, 5)]  # (images, side, rounds)
    parts = [_one(*s, quick=quick) for s in sizes]
    return "\n\n".join(parts)


def _one(n_images: int, size: int, rounds: int, quick: bool) -> str:
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n_images, 3, size, size, generator=gen)
    maps = upsample(torch.rand(n_images, 7, 7, generator=gen), (size, size))
    with torch.no_grad():
        targets = model(x).argmax(dim=1)
    pct = list(DEFAULT_PERCENTILES)
    cams = maps.numpy()
    grad_targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]
    theirs = ROADMostRelevantFirstAverage(percentiles=[100 - p for p in pct])

    rank = descending_rank(maps)
    counts = torch.tensor([int(size * size * p / 100) for p in pct])
    removed = (rank[:, None] < counts[None, :, None, None]).flatten(0, 1)
    rows = x.repeat_interleave(len(pct), dim=0)
    imputer = NoisyLinearImputer()
    imputed = noisy_linear_imputation(rows, removed, seed=0)
    cl_model = torchvision.models.resnet18(weights=None).eval().to(memory_format=torch.channels_last)
    cl_rows = imputed.contiguous(memory_format=torch.channels_last)

    def bare() -> None:
        with torch.no_grad():
            cl_model(cl_rows)

    full = interleaved({
        f"bare: {rows.shape[0]} imputed images, channels-last": bare,
        "pytorch-grad-cam ROAD (MoRF average)": lambda: theirs(x, cams, grad_targets, model),
        "xcam road_morf": lambda: road_morf(model, x, maps, targets, percentiles=pct, seed=0),
    }, rounds=rounds)

    def grad_cam_imputation() -> None:
        for i in range(rows.shape[0]):
            imputer(rows[i], (~removed[i]).float())

    imputation = interleaved({
        "pytorch-grad-cam NoisyLinearImputer": grad_cam_imputation,
        "xcam noisy_linear_imputation": lambda: noisy_linear_imputation(rows, removed, seed=0),
    }, rounds=rounds)

    head = (f"## ROAD on CPU ({platform.processor() or platform.machine()}, 1 thread): "
            f"{n_images} images {size}x{size}, ResNet-18, percentiles {pct}, noise 0.01"
            f"{' (quick)' if quick else ''}, {rounds} rounds\n")
    ref = {"vs pytorch-grad-cam": "pytorch-grad-cam ROAD (MoRF average)",
           "vs bare": f"bare: {rows.shape[0]} imputed images, channels-last"}
    ref_imp = {"vs pytorch-grad-cam": "pytorch-grad-cam NoisyLinearImputer"}
    speedup = full["pytorch-grad-cam ROAD (MoRF average)"] / full["xcam road_morf"]
    return "\n\n".join([
        head,
        format_table("ROAD MoRF curve (imputation + forward passes)", full, ref),
        format_table(f"imputation alone ({rows.shape[0]} rows)", imputation, ref_imp),
        f"xcam speed-up over pytorch-grad-cam at {size} px: {speedup:.2f}x (target >= 5x).",
    ])
