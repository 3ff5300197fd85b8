"""The demo: EfficientNet-Lite0 (offline ImageNet weights) on scikit-image photos, every core method.

``xcam demo --out DIR`` (or ``make demo``) prints the top class of each photo and writes a grid of
images x methods to ``DIR/demo_grid.png``.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from ..evaluation.models import efficientnet_lite0, imagenet_categories, lite0_preprocess

__all__ = ["PHOTOS", "load_photos", "run_demo"]

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
METHODS = ("cam", "gradcam", "gradcampp", "smoothgradcampp")


def load_photos(names: tuple[str, ...] = PHOTOS, size: int = 224) -> torch.Tensor:
    """scikit-image sample photos as a (B, 3, size, size) float tensor of pixels in [0, 255]."""
    try:
        from skimage import data
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("the demo photos need `pip install scikit-image`") from err
    batch = []
    for name in names:
        arr = getattr(data, name)()
        img = torch.from_numpy(arr).permute(2, 0, 1).float()[None]
        batch.append(F.interpolate(img, size=(size, size), mode="bicubic", align_corners=False))
    return torch.cat(batch).clamp(0, 255)


def run_demo(out_dir: str | Path = "demo-output", methods: tuple[str, ...] = METHODS) -> Path:
    """Explain the photos with every method, print the top classes, save the grid; returns its path."""
    from .. import registry, viz

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = efficientnet_lite0()
    pixels = load_photos()
    x = lite0_preprocess(pixels)
    names = imagenet_categories()
    with torch.no_grad():
        probs = model(x).softmax(1)
    top = probs.argmax(1)
    titles = []
    for name, cls, p in zip(PHOTOS, top.tolist(), probs.max(1).values.tolist()):
        print(f"{name:>10}: {names[cls]} ({100 * p:.1f} %)")
        titles.append(f"{name}\n{names[cls]}")
    maps = {}
    for method in methods:
        kwargs = {"seed": 0} if method == "smoothgradcampp" else {}
        explainer = registry.create(method, model, **kwargs)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the automatic layer choice is printed below instead
            exp = explainer(x, targets=top)
        print(f"{method:>16}: layer {exp.layer}, {time.perf_counter() - start:.2f} s")
        maps[method] = exp.maps
    path = out / "demo_grid.png"
    viz.grid(pixels / 255.0, maps, path=path, row_titles=titles)
    print(f"wrote {path}")
    return path
