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


def main(quick: bool = False) -> str:
    import xcam
    from captum.attr import Occlusion as CaptumOcclusion

    warnings.filterwarnings("ignore")
    out = []
    size, window, stride = 224, 32, 16
    for name in ("vgg16", "resnet50"):
        torch.manual_seed(0)
        model = torchvision.models.get_model(name).eval()
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            target = int(model(x).argmax())
        plain = xcam.Occlusion(model, window=window, stride=stride)
        inc = xcam.Occlusion(model, window=window, stride=stride, incremental=True)
        approx = xcam.Occlusion(model, window=window, stride=stride, approximate=0.5)
        cap = CaptumOcclusion(model)
        exact = plain(x, target).maps
        err = {}
        for label, explainer in (("incremental", inc), ("approximate 0.5", approx)):
            m = explainer(x, target).maps
            err[label] = float((m - exact).abs().max() / (exact.max() - exact.min()))
        cost = inc.cost((size, size))
        medians = interleaved({
            "xcam Occlusion (plain)": lambda: plain(x, target),
            "xcam Occlusion incremental=True": lambda: inc(x, target),
            "xcam Occlusion approximate=0.5": lambda: approx(x, target),
            "captum Occlusion (perturbations_per_eval=16)": lambda: cap.attribute(
                x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
                baselines=0.0, target=target, perturbations_per_eval=16),
        }, rounds=2 if quick else 3, warmup=0)
        out.append(format_table(
            f"{name}, 1 image, {size}x{size}, window {window}, stride {stride} "
            f"(conv MACs: {cost.speedup:.2f}x fewer incremental; max error: incremental "
            f"{err['incremental']:.1e}, approximate {err['approximate 0.5']:.1e} of the map range)",
            medians, {"vs plain": "xcam Occlusion (plain)",
                      "vs captum": "captum Occlusion (perturbations_per_eval=16)"}))
    return "\n\n".join(out)
