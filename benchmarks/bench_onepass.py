"""``python -m benchmarks onepass``: seven CAM methods in one pass vs seven separate calls.

One interleaved run (``benchmarks.common.interleaved``) of, per batch size:

- ``xcam.explain(model, x, methods=[CAM, Grad-CAM, Grad-CAM++, XGrad-CAM, Layer-CAM, HiResCAM,
  Eigen-CAM])``: one forward + one backward pass shared by all seven;
- the sum of the seven explainers called one after the other (what ``compare`` did);
- one bare forward + backward pass to ``layer4`` (``torch.autograd.grad``, no xcam), the floor;
- ``xcam.metrics.evaluate_maps`` (deletion, 20 steps, and average drop of the seven maps) vs the
  fourteen per-map metric calls.

ResNet-50 with random weights (nothing is downloaded) on the GPU when one is present, else
ResNet-18 on the CPU; ``--quick``: 2 rounds, 112 px.
"""

from __future__ import annotations

import warnings

import torch
import torchvision

import xcam
from xcam.metrics import average_drop, deletion, evaluate_maps

from .common import format_table, interleaved

NAMES = ["gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigencam"]


def _bare(model: torch.nn.Module, x: torch.Tensor) -> None:
    feats: dict[str, torch.Tensor] = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: feats.__setitem__("f", o))
    try:
        out = model(x)
        (g,) = torch.autograd.grad(out.gather(1, out.argmax(1, keepdim=True)).sum(), feats["f"])
        torch.relu((g.mean((2, 3))[:, :, None, None] * feats["f"]).sum(1))
    finally:
        handle.remove()


def main(quick: bool = False) -> str:
    """Markdown tables: one pass vs separate calls, shared metric batches vs per-map calls."""
    warnings.simplefilter("ignore")
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    model = (torchvision.models.resnet50() if cuda else torchvision.models.resnet18()).eval().to(device)
    size = 112 if quick else 224
    rounds = 2 if quick else 5
    batches = [8] if quick else ([16, 64] if cuda else [8, 32])
    explainers = [xcam.CAM(model), *[xcam.create(n, model, layer="layer4") for n in NAMES]]
    sections = [f"## One pass for seven CAM methods ({type(model).__name__} with random weights, "
                f"{size} px, {device}{', quick' if quick else ''})", ""]
    for b in batches:
        x = torch.randn(b, 3, size, size, device=device)
        medians = interleaved({
            "xcam.explain(7 methods)": lambda x=x: xcam.explain(model, x, explainers),
            "7 separate calls": lambda x=x: [e(x) for e in explainers],
            "bare forward + backward": lambda x=x: _bare(model, x),
        }, rounds=rounds)
        sections += [format_table(f"batch {b}", medians, {
            "vs separate": "7 separate calls", "vs bare": "bare forward + backward"}), ""]
    b = batches[0]
    x = torch.randn(b, 3, size, size, device=device)
    maps = {k: e.maps for k, e in xcam.explain(model, x, explainers).items()}
    metrics = {"deletion": {"steps": 20}, "average_drop": {}}

    def per_map() -> None:
        for m in maps.values():
            deletion(model, x, m, None, steps=20, batch_size=64)
            average_drop(model, x, m, None, batch_size=64)

    medians = interleaved({
        "evaluate_maps (shared batches)": lambda: evaluate_maps(model, x, maps, None, metrics,
                                                                batch_size=64),
        "14 per-map metric calls": per_map,
    }, rounds=max(1, rounds // 2))
    sections += [format_table(f"deletion (20 steps) + average drop of 7 maps, batch {b}, "
                              "batch_size 64", medians, {"vs per-map": "14 per-map metric calls"})]
    return "\n".join(sections)
