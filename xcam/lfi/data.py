"""A small synthetic data set with ground-truth object masks, generated offline.

Each image holds one filled shape whose *shape* decides the class (circle, square, triangle, cross,
ring), drawn over a cluttered background of distractor strokes and blobs. Colors, positions,
sizes, rotations and clutter are drawn from the same distributions for every class, so only the
shape tells the classes apart, and the object mask says where the evidence is. Useful for training
studies of LFI-CAM and for localization tests, with no download.

The object is always lighter than the background beneath it (by ``CONTRAST`` in gray level, any
hue); distractors can have any color. With a random figure-ground polarity, first-order gradients
average out over the colors and small CNNs trained from scratch stall for many epochs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import InputError, InputTypeError

__all__ = ["ShapesDataset", "SHAPES", "write_image_folder"]

SHAPES = ("circle", "square", "triangle", "cross", "ring")
CONTRAST = 0.3


class ShapesDataset(Dataset[Any]):
    """``n`` images of shapes on clutter: ``dataset[i] -> (image, label, mask)``.

    Args:
        n: number of images.
        size: image side in pixels (square images).
        seed: sample ``i`` is generated from ``(seed, i)`` alone, so any two data sets with the
            same seed agree on their common indices, and different seeds give independent draws
            (use one seed for training and another for testing). Images are rendered on access;
            for many epochs render once with :meth:`tensors` and wrap them in a TensorDataset.
        classes: shape names, a subset of :data:`SHAPES` (default: circle, square, triangle, cross).
        clutter: number of distractor strokes per image (blobs: half as many).
        clutter_alpha: opacity of the distractors (1: opaque, as salient as the object; lower
            values make the object stand out, an easier task).
        object_scale: (min, max) shape radius as a fraction of ``size``.
        rotate: rotate each object by a random angle (default); ``False`` keeps squares, crosses
            and triangles upright, an easier task that trains in far fewer steps.
        background: ``"gradient"`` (a random two-color ramp, default) or ``"flat"`` (one random
            color, easier); pixel noise is added to both.

    Returns per item:
        image: (3, size, size) float32 in [0, 1];
        label: int, ``i % len(classes)`` (balanced classes);
        mask: (size, size) bool, the visible pixels of the object.

    Example:
        >>> train = ShapesDataset(2000, size=64, seed=0)
        >>> test = ShapesDataset(500, size=64, seed=1)
        >>> image, label, mask = train[0]
    """

    def __init__(
        self,
        n: int,
        size: int = 64,
        seed: int = 0,
        classes: Sequence[str] | None = None,
        clutter: int = 12,
        clutter_alpha: float = 1.0,
        object_scale: tuple[float, float] = (0.16, 0.28),
        rotate: bool = True,
        background: Literal["gradient", "flat"] = "gradient",
    ) -> None:
        for name, value, minimum in (("n", n, 1), ("size", size, 16), ("clutter", clutter, 0)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputTypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < minimum:
                raise InputError(f"{name} must be >= {minimum}, got {value}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise InputTypeError(f"seed must be an int, got {type(seed).__name__}")
        names = tuple(SHAPES[:4] if classes is None else classes)
        unknown = [c for c in names if c not in SHAPES]
        if unknown or len(names) < 2 or len(set(names)) != len(names):
            raise InputError(
                f"classes must be at least two distinct names from {SHAPES}, got {list(names)}"
            )
        lo, hi = object_scale
        if not 0.05 <= lo <= hi <= 0.45:
            raise InputError(f"object_scale must satisfy 0.05 <= min <= max <= 0.45, got {object_scale}")
        self.n, self.size, self.seed, self.clutter = n, size, seed, clutter
        self.classes = list(names)
        self.object_scale = (float(lo), float(hi))
        self.rotate = bool(rotate)
        if not 0 <= clutter_alpha <= 1:
            raise InputError(f"clutter_alpha must be in [0, 1], got {clutter_alpha}")
        self.clutter_alpha = float(clutter_alpha)
        if background not in ("gradient", "flat"):
            raise InputError(f"background must be 'gradient' or 'flat', got {background!r}")
        self.background = background

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor]:
        if not isinstance(index, int):
            index = int(index)
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for a ShapesDataset of {self.n} images")
        label = index % len(self.classes)
        gen = torch.Generator().manual_seed(_mix(self.seed, index))
        image, mask = _render(self.classes[label], self.size, self.clutter, self.clutter_alpha,
                              self.object_scale, self.rotate, self.background == "flat", gen)
        return image, label, mask

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        """The whole data set as (images (n, 3, S, S), labels (n,), masks (n, S, S))."""
        items = [self[i] for i in range(self.n)]
        return (
            torch.stack([it[0] for it in items]),
            torch.tensor([it[1] for it in items], dtype=torch.long),
            torch.stack([it[2] for it in items]),
        )

    def __repr__(self) -> str:
        return (f"ShapesDataset(n={self.n}, size={self.size}, seed={self.seed}, "
                f"classes={self.classes}, clutter={self.clutter}, rotate={self.rotate})")


def _mix(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` (splitmix64 of the pair)."""
    z = (seed * 0x9E3779B97F4A7C15 + index + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def _uniform(gen: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    """Uniform draws in [lo, hi) of ``shape`` (a 0-d tensor when no shape is given)."""
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def _shape_mask(name: str, u: Tensor, v: Tensor, r: float) -> Tensor:
    """Mask of a shape of radius ``r`` centered at the origin, in rotated coordinates (u, v)."""
    if name == "circle":
        return u * u + v * v <= r * r
    if name == "ring":
        d2 = u * u + v * v
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if name == "square":
        s = r * 0.85  # similar area to the circle
        return (u.abs() <= s) & (v.abs() <= s)
    if name == "cross":
        t = r * 0.33
        return ((u.abs() <= r) & (v.abs() <= t)) | ((u.abs() <= t) & (v.abs() <= r))
    if name == "triangle":  # equilateral, circumradius 1.2 r
        R = 1.2 * r
        inside = torch.ones_like(u, dtype=torch.bool)
        for k in range(3):
            a = 2 * math.pi * k / 3
            inside &= u * math.cos(a) + v * math.sin(a) <= R / 2
        return inside
    raise InputError(f"unknown shape {name!r}; choose from {SHAPES}")


def _render(
    name: str, size: int, clutter: int, alpha: float, scale: tuple[float, float], rotate: bool,
    flat: bool, gen: torch.Generator,
) -> tuple[Tensor, Tensor]:
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    # Background: a random color gradient (or one flat color) plus pixel noise.
    c0, c1 = 0.7 * torch.rand(3, generator=gen), 0.7 * torch.rand(3, generator=gen)
    if flat:
        c1 = c0
    angle = float(_uniform(gen, 0, 2 * math.pi))
    ramp = ((xx * math.cos(angle) + yy * math.sin(angle)) / size).clamp(-1, 1) * 0.5 + 0.5
    image = c0[:, None, None] * (1 - ramp) + c1[:, None, None] * ramp
    image = image + 0.05 * torch.randn(3, size, size, generator=gen)
    # Distractors: colored blobs and strokes, independent of the class.
    for _ in range(clutter // 2):
        cy, cx = _uniform(gen, 0, size, 2)
        rad = float(_uniform(gen, 0.03, 0.09)) * size
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= rad * rad
        paint = alpha * torch.rand(3, 1, 1, generator=gen) + (1 - alpha) * image
        image = torch.where(blob, paint, image)
    for _ in range(clutter):
        p = _uniform(gen, -0.1, 1.1, 2) * size
        q = p + _uniform(gen, -0.5, 0.5, 2) * size
        width = float(_uniform(gen, 0.6, 1.8))
        d = q - p
        t = (((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / (d @ d).clamp_min(1e-6)).clamp(0, 1)
        dist2 = (yy - p[0] - t * d[0]) ** 2 + (xx - p[1] - t * d[1]) ** 2
        paint = alpha * torch.rand(3, 1, 1, generator=gen) + (1 - alpha) * image
        image = torch.where(dist2 <= width * width, paint, image)
    # The object: a filled shape, random color, position, size and rotation, drawn on top.
    r = float(_uniform(gen, *scale)) * size
    margin = 1.25 * r
    cy = float(_uniform(gen, margin, size - margin))
    cx = float(_uniform(gen, margin, size - margin))
    theta = float(_uniform(gen, 0, 2 * math.pi))
    if not rotate:
        theta = 0.0
    u = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
    v = -(xx - cx) * math.sin(theta) + (yy - cy) * math.cos(theta)
    mask = _shape_mask(name, u, v, r)
    # The object is lighter than the background under it (gray level mean of RGB, by at least
    # CONTRAST): a fixed figure-ground polarity, whatever the hues. Distractors have any color.
    under = float(image[:, mask].mean())
    color = torch.rand(3, generator=gen)
    target = min(1.0, under + CONTRAST)
    if float(color.mean()) < target:  # raise the gray level, keeping the hue's differences
        color = color + (target - float(color.mean())) * (1 - color) / float((1 - color).mean())
    color = color.clamp(0, 1)[:, None, None]
    image = torch.where(mask, color, image)
    return image.clamp(0, 1).float(), mask


def write_image_folder(
    dataset: ShapesDataset, root: str | os.PathLike[str], masks_root: str | os.PathLike[str] | None = None
) -> None:
    """Write ``dataset`` as PNG files in the torchvision ``ImageFolder`` layout.

    Images go to ``root/<class>/<index>.png``; with ``masks_root``, masks (0 / 255) go to
    ``masks_root/<class>/<index>.png`` (keep it outside ``root``, or ImageFolder would read the
    masks as images).
    """
    from torchvision.transforms.functional import to_pil_image

    width = len(str(len(dataset) - 1))
    for i in range(len(dataset)):
        image, label, mask = dataset[i]
        cls = dataset.classes[label]
        folder = os.path.join(os.fspath(root), cls)
        os.makedirs(folder, exist_ok=True)
        to_pil_image((image * 255).round().to(torch.uint8)).save(
            os.path.join(folder, f"{i:0{width}d}.png"))
        if masks_root is not None:
            mfolder = os.path.join(os.fspath(masks_root), cls)
            os.makedirs(mfolder, exist_ok=True)
            to_pil_image(mask.to(torch.uint8) * 255).save(os.path.join(mfolder, f"{i:0{width}d}.png"))
