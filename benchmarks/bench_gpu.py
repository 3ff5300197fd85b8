"""The GPU figures of issue 15, in one command: ``python -m benchmarks gpu`` (on a CUDA machine).

1. **Grad-CAM at batch 16, 64 and 256** (ResNet-50, random weights, 224 px, ``layer4``): xcam's
   ``GradCAM`` against the bare forward + gradient + map it cannot avoid (a hook, one
   ``torch.autograd.grad``, the channel means, the weighted sum, ReLU and the bilinear upsampling to
   the input), captum's ``LayerGradCam`` (ReLU, upsampled the same way) and torch-cam's
   ``GradCAM``. Targets: xcam within 1.05x of bare, and no slower than the peers.
2. **The engine** (``xcam.compare``, batches of ``XCAM_BENCH_GPU_BATCH``, default 64) on the first
   ``XCAM_BENCH_GPU_IMAGES`` (default 1,024) images of ``../shared/data/imagenet-val-1300``, the seven
   one-pass methods with the pointing game, the energy pointing game, MaxBoxAcc and average drop,
   against the batched calls it makes, on the same images decoded beforehand: ``xcam.explain``
   (one shared pass), the localization metrics per method, ``evaluate_maps`` for average drop.
   Target: the engine within 1.25x.
3. **Occlusion**: ``incremental=True`` against plain occlusion on the device (the engine falls back
   to plain occlusion off the CPU; this shows the cost of each).

Without CUDA it is a dry run on the CPU (ResNet-18, 64 px, batches 2 and 4, 8 images): it checks
that the script runs, and its figures are not the acceptance figures. ``--quick``: fewer rounds.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from typing import Any

import torch
import torch.nn.functional as F
import torchvision

from benchmarks.common import format_table, interleaved

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "imagenet-val-1300")
COLUMNS = "x0=x0_227,y0=y0_227,x1=x1_227,y1=y1_227"
METHODS = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigencam")
METRICS = ("pointing_game", "energy_pointing_game", "max_box_acc", "average_drop")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _name(device: torch.device) -> str:
    """The model the figures use: ResNet-50 on the GPU, ResNet-18 in the CPU dry run."""
    return "resnet50" if device.type == "cuda" else "resnet18"


def _bare_map(model: Any, layer: Any, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Forward, gradient to ``layer``, Grad-CAM's map at input size: the floor."""
    store: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda m, a, o: store.__setitem__("f", o))
    try:
        with torch.enable_grad():
            out = model(x)
            feats = store["f"]
            (grad,) = torch.autograd.grad(out.gather(1, targets[:, None]).sum(), feats)
    finally:
        handle.remove()
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * feats).sum(1, keepdim=True))
    return F.interpolate(cam.detach(), size=x.shape[-2:], mode="bilinear", align_corners=False)


def _gradcam(device: torch.device, batches: list[int], size: int, rounds: int) -> str:
    torch.manual_seed(0)
    arch = torchvision.models.resnet50 if device.type == "cuda" else torchvision.models.resnet18
    model = arch().eval().to(device)
    return "\n\n".join(_gradcam_at(model, batch, size, device, rounds) for batch in batches)


def _gradcam_at(model: Any, batch: int, size: int, device: torch.device, rounds: int) -> str:
    from captum.attr import LayerGradCam
    from torchcam.methods import GradCAM as TCGradCAM

    import xcam

    x = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        targets = model(x).argmax(1)
    t_list = targets.tolist()
    xg = xcam.GradCAM(model, "layer4")
    lgc = LayerGradCam(model, model.layer4)

    def captum() -> None:
        a = lgc.attribute(x, target=t_list, relu_attributions=True)
        F.interpolate(a, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def torchcam() -> None:
        with TCGradCAM(model, target_layer="layer4") as extractor:
            extractor(t_list, model(x))
        model.zero_grad(set_to_none=True)

    medians = interleaved({
        "bare forward + grad + map": lambda: _bare_map(model, model.layer4, x, targets),
        "xcam GradCAM": lambda: xg(x, targets).maps,
        "captum LayerGradCam + ReLU + upsample": captum,
        "torch-cam GradCAM": torchcam,
    }, rounds=rounds)
    return format_table(
        f"Grad-CAM, {_name(device)}, batch {batch}, {size} px, {device.type} "
        f"({rounds} rounds)", medians,
        {"vs bare": "bare forward + grad + map", "vs captum": "captum LayerGradCam + ReLU + upsample",
         "vs torch-cam": "torch-cam GradCAM"})


def _engine(device: torch.device, n: int, batch: int) -> str:
    import xcam
    from xcam.compare import compare
    from xcam.data import load_data
    from xcam.metrics.base import MetricInputs
    from xcam.metrics.batched import evaluate_maps
    from xcam.models import Preprocess
    from xcam.registry import METRICS as REGISTERED

    csv = os.path.join(DATA, "annotations_227.csv")
    if not os.path.isfile(csv):
        return f"### Engine\n\nskipped: {DATA} is missing (see its README)"
    torch.manual_seed(0)
    arch = torchvision.models.resnet50 if device.type == "cuda" else torchvision.models.resnet18
    model = arch().eval().to(device)
    prep = Preprocess.named("imagenet", 224)
    data = load_data(csv, columns=COLUMNS, limit=n)
    loaded = [data.load(i, prep.hw, preprocess=prep) for i in range(len(data))]
    pixels = [lo.pixels for lo in loaded]
    boxes = [lo.boxes for lo in loaded]
    labels = torch.tensor([data[i].label for i in range(len(data))], device=device)

    def batched_calls() -> None:
        for s in range(0, len(pixels), batch):
            x = prep(torch.stack(pixels[s:s + batch]).to(device))
            t = labels[s:s + batch]
            with torch.no_grad():
                clean = model(x).float()
            out = xcam.explain(model, x, list(METHODS), t)
            maps = {m: e.maps.detach().float() for m, e in out.items()}
            evaluate_maps(model, x, maps, t, metrics=["average_drop"], batch_size=batch,
                          clean_output=clean)
            for m in METHODS:
                inputs = MetricInputs(maps=maps[m], ground_truth=boxes[s:s + batch], model=model,
                                      inputs=x, targets=t, clean_output=clean, image_size=prep.hw)
                for name in ("pointing_game", "energy_pointing_game", "max_box_acc"):
                    REGISTERED.get(name).run(inputs)
        _sync(device)

    def engine() -> None:
        compare(model, csv, list(METHODS), list(METRICS), preprocess=prep, targets="label",
                columns=COLUMNS, limit=n, device=str(device), controls=False, batch_size=batch,
                metric_kwargs={"average_drop": {"batch_size": batch}}, progress=False, report=False)
        _sync(device)

    timings: dict[str, float] = {}
    for name, fn in (("batched calls (images decoded beforehand)", batched_calls),
                     (f"engine (xcam.compare, batch {batch})", engine)):
        fn()  # warm-up
        start = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - start
    ref = "batched calls (images decoded beforehand)"
    return format_table(
        f"Engine, {_name(device)}, {len(pixels)} images of imagenet-val-1300, "
        f"{len(METHODS)} one-pass methods x {len(METRICS)} metrics, {device.type}",
        timings, {"vs batched calls": ref})


def _occlusion(device: torch.device, size: int, rounds: int) -> str:
    import xcam

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval().to(device)
    x = torch.randn(4, 3, size, size, device=device)
    with torch.no_grad():
        targets = model(x).argmax(1)
    window = (size // 8, size // 8)
    plain = xcam.create("occlusion", model, window=window, stride=window, progress=False)
    incremental = xcam.create("occlusion", model, window=window, stride=window, incremental=True,
                              progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # incremental falls back to plain off the CPU, once warned
        medians = interleaved({
            "occlusion": lambda: plain(x, targets).maps,
            "occlusion incremental=True": lambda: incremental(x, targets).maps,
        }, rounds=rounds)
    return format_table(f"Occlusion, resnet18, batch 4, {size} px, window {window[0]}, {device.type}",
                        medians, {"vs plain": "occlusion"})


def main(quick: bool = False) -> str:
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    warnings.filterwarnings("ignore")
    rounds = 3 if quick or not cuda else 7
    if cuda:
        batches, size = [16, 64, 256], 224
        n = int(os.environ.get("XCAM_BENCH_GPU_IMAGES", "1024"))
        batch = int(os.environ.get("XCAM_BENCH_GPU_BATCH", "64"))
        where = f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    else:
        batches, size, n, batch = [2, 4], 64, 8, 4
        where = (f"no CUDA: a dry run on the CPU ({platform.processor() or platform.machine()}), "
                 "small sizes; not the acceptance figures")
    return "\n\n".join([f"## GPU figures (issue 15): {where}", _gradcam(device, batches, size, rounds),
                        _engine(device, n, batch), _occlusion(device, size if cuda else 64, rounds)])
