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
CAPS = (0.6, 0.5)  # approximate mode: the most a changed region may grow, as a fraction of a layer


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
    approx = {cap: xcam.Occlusion(model, window=WINDOW, stride=STRIDE, approximate=cap) for cap in CAPS}
    cap = CaptumOcclusion(model)
    exact = plain(x, target).maps
    span = exact.max() - exact.min()
    err = {}
    for label, explainer in (("incremental", inc), *((f"approximate={c}", a) for c, a in approx.items())):
        m = explainer(x, target).maps
        corr = torch.corrcoef(torch.stack([m.flatten(), exact.flatten()]))[0, 1]
        err[label] = (f"{label} max {float((m - exact).abs().max() / span):.1e}, "
                      f"mean {float((m - exact).abs().mean() / span):.1e}, r {float(corr):.4f}")
    cost = inc.cost((SIZE, SIZE))
    contenders = {
        "xcam Occlusion (plain)": lambda: plain(x, target),
        "xcam Occlusion incremental=True": lambda: inc(x, target),
    }
    for c, a in approx.items():
        contenders[f"xcam Occlusion approximate={c} (MACs {a.cost((SIZE, SIZE)).speedup:.2f}x fewer)"] = \
            lambda a=a: a(x, target)
    contenders["captum Occlusion (perturbations_per_eval=16)"] = lambda: cap.attribute(
        x, sliding_window_shapes=(3, WINDOW, WINDOW), strides=(3, STRIDE, STRIDE),
        baselines=0.0, target=target, perturbations_per_eval=16)
    medians = interleaved(contenders, rounds=2 if quick else 3, warmup=0)
    return format_table(
        f"{name}, 1 image, {SIZE}x{SIZE}, window {WINDOW}, stride {STRIDE} (conv MACs: "
        f"{cost.speedup:.2f}x fewer incremental; error vs the exact map, relative to its range, and "
        f"correlation r: {'; '.join(err.values())})",
        medians, {"vs plain": "xcam Occlusion (plain)",
                  "vs captum": "captum Occlusion (perturbations_per_eval=16)"})
