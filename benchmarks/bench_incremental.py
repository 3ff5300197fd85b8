"""Incremental occlusion vs plain occlusion vs captum Occlusion (CPU, 224x224, window 32, stride 16).

Every contender explains the same image for the same class; ratios are against contenders timed in
the same interleaved rounds. The approximate mode's error is the maximum absolute difference from the
exact map, relative to the exact map's range. Run: ``python -m benchmarks incremental``.
"""

from __future__ import annotations

import warnings

import torch
import torchvision

from benchmarks.common import format_table, interleaved

SIZE, WINDOW, STRIDE = 224, 32, 16


def main(quick: bool = False) -> str:
    warnings.filterwarnings("ignore")
    return "\n\n".join(_one(name, quick) for name in ("vgg16", "resnet50"))


def _one(name: str, quick: bool) -> str:
    from captum.attr import Occlusion as CaptumOcclusion

    import xcam

    torch.manual_seed(0)
    model = torchvision.models.get_model(name).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        target = int(model(x).argmax())
    plain = xcam.Occlusion(model, window=WINDOW, stride=STRIDE)
    inc = xcam.Occlusion(model, window=WINDOW, stride=STRIDE, incremental=True)
    approx = xcam.Occlusion(model, window=WINDOW, stride=STRIDE, approximate=0.5)
    cap = CaptumOcclusion(model)
    exact = plain(x, target).maps
    err = {}
    for label, explainer in (("incremental", inc), ("approximate", approx)):
        m = explainer(x, target).maps
        err[label] = float((m - exact).abs().max() / (exact.max() - exact.min()))
    cost = inc.cost((SIZE, SIZE))
    medians = interleaved({
        "xcam Occlusion (plain)": lambda: plain(x, target),
        "xcam Occlusion incremental=True": lambda: inc(x, target),
        "xcam Occlusion approximate=0.5": lambda: approx(x, target),
        "captum Occlusion (perturbations_per_eval=16)": lambda: cap.attribute(
            x, sliding_window_shapes=(3, WINDOW, WINDOW), strides=(3, STRIDE, STRIDE),
            baselines=0.0, target=target, perturbations_per_eval=16),
    }, rounds=2 if quick else 3, warmup=0)
    return format_table(
        f"{name}, 1 image, {SIZE}x{SIZE}, window {WINDOW}, stride {STRIDE} (conv MACs: "
        f"{cost.speedup:.2f}x fewer incremental; max error vs exact map range: incremental "
        f"{err['incremental']:.1e}, approximate=0.5 {err['approximate']:.1e})",
        medians, {"vs plain": "xcam Occlusion (plain)",
                  "vs captum": "captum Occlusion (perturbations_per_eval=16)"})
