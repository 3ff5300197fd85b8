"""Ground truth: boxes per sample, bool masks, and the one place boxes become pixels.

Boxes are ``(x0, y0, x1, y1)`` in input pixels, inclusive-exclusive: pixel ``(x, y)`` is inside
when ``x0 <= x < x1`` and ``y0 <= y < y1``. Numpy arrays are accepted and copied into tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import InputError, InputTypeError, warn

__all__ = [
    "parse_boxes",
    "boxes_to_masks",
    "rasterize",
    "check_boxes_inside",
    "ground_truth",
    "from_numpy",
]


def _is_number(v: object) -> bool:
    """A real number, not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _box_tensor(item: object, where: str) -> Tensor:
    """One sample's boxes as an (n, 4) float64 CPU tensor."""
    item = from_numpy(item)
    if isinstance(item, Tensor):
        t = item.detach().to(device="cpu", dtype=torch.float64)
        if t.numel() == 0:
            t = t.reshape(0, 4)
    elif isinstance(item, Sequence) and not isinstance(item, (str, bytes)):
        if len(item) == 4 and all(_is_number(v) for v in item):
            raise InputError(
                f"{where} looks like one box {tuple(item)}; give each sample a list of boxes: "
                "wrap it as [[x0, y0, x1, y1]]"
            )
        try:
            t = torch.tensor([[float(v) for v in bx] for bx in item], dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(
                f"{where} must be a list of (x0, y0, x1, y1) boxes, got {item!r}"
            ) from None
        t = t.reshape(0, 4) if len(item) == 0 else t
    else:
        raise InputTypeError(
            f"{where} must be a list of (x0, y0, x1, y1) boxes or an (n, 4) tensor, got "
            f"{type(item).__name__}"
        )
    if t.dim() != 2 or t.shape[-1] != 4:
        raise InputError(f"{where} must hold boxes of 4 numbers (n, 4), got shape "
                         f"{tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{where} contains NaN or infinite coordinates")
    bad = (t[:, 2] < t[:, 0]) | (t[:, 3] < t[:, 1])
    if bool(bad.any()):
        raise InputError(
            f"{where} has a box with x1 < x0 or y1 < y0: {t[bad][0].tolist()}; boxes are "
            "(x0, y0, x1, y1) with the top-left corner first"
        )
    return t


def parse_boxes(boxes: object, batch: int | None = None,
                name: str = "boxes") -> tuple[Tensor, Tensor]:
    """Boxes per sample -> a padded (B, M, 4) float64 CPU tensor and a (B, M) validity mask.

    Accepted: a list of length B whose items are lists of ``(x0, y0, x1, y1)`` or (n, 4) tensors
    (an empty list: no box), a (B, 4) tensor (one box each) or a (B, M, 4) tensor.
    Coordinates are input pixels, inclusive-exclusive: pixel (x, y) is inside when
    ``x0 <= x < x1`` and ``y0 <= y < y1``.
    """
    boxes = from_numpy(boxes)
    if isinstance(boxes, Tensor):
        if boxes.dim() == 2 and boxes.shape[-1] == 4:
            boxes = boxes[:, None]
        if boxes.dim() != 3 or boxes.shape[-1] != 4:
            raise InputError(
                f"{name} tensor must have shape (B, 4) or (B, M, 4) (x0, y0, x1, y1), got "
                f"{tuple(boxes.shape)}"
            )
        items: Sequence[object] = list(boxes)
    elif isinstance(boxes, Sequence) and not isinstance(boxes, (str, bytes)):
        items = boxes
    else:
        raise InputTypeError(
            f"{name} must be a list (one list of (x0, y0, x1, y1) boxes per sample), a bool "
            f"mask or a tensor of boxes, got {type(boxes).__name__}"
        )
    per_sample = [_box_tensor(item, f"{name}[{i}]") for i, item in enumerate(items)]
    if batch is not None and len(per_sample) != batch:
        raise InputError(f"{name} has {len(per_sample)} entries for a batch of {batch} maps; "
                         "pass one (possibly empty) list of boxes per sample")
    if not per_sample:
        raise InputError(f"{name} is empty; pass one list of boxes per sample")
    m = max([t.shape[0] for t in per_sample] + [1])
    padded = torch.zeros(len(per_sample), m, 4, dtype=torch.float64)
    valid = torch.zeros(len(per_sample), m, dtype=torch.bool)
    for i, t in enumerate(per_sample):
        padded[i, : t.shape[0]] = t
        valid[i, : t.shape[0]] = True
    return padded, valid


def boxes_to_masks(boxes: object, size: tuple[int, int],
                   device: torch.device | str | None = None) -> Tensor:
    """Rasterize boxes to boolean masks; the one place xcam turns boxes into pixels.

    Args:
        boxes: per sample, a list of ``(x0, y0, x1, y1)`` boxes in input pixels,
            inclusive-exclusive (see :func:`parse_boxes` for the accepted forms).
        size: ``(H, W)`` of the masks.
        device: where the masks go (default CPU).

    Returns:
        (B, H, W) bool: pixel ``(y, x)`` is True when it lies in any of the sample's boxes,
        i.e. ``x0 <= x < x1`` and ``y0 <= y < y1``.

    Example:
        >>> boxes_to_masks([[(1, 0, 3, 2)]], (3, 4))[0].int()
        tensor([[0, 1, 1, 0],
                [0, 1, 1, 0],
                [0, 0, 0, 0]], dtype=torch.int32)
    """
    padded, valid = parse_boxes(boxes)
    return rasterize(padded.to(device), valid.to(device), size)


def rasterize(padded: Tensor, valid: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, H, W) bool masks of padded (B, M, 4) boxes whose ``valid`` (B, M) entries count."""
    h, w = size
    ys = torch.arange(h, dtype=torch.float64, device=padded.device)
    xs = torch.arange(w, dtype=torch.float64, device=padded.device)
    x0, y0, x1, y1 = (padded[..., i, None] for i in range(4))  # (B, M, 1)
    in_y = (ys >= y0) & (ys < y1) & valid[..., None]  # (B, M, H)
    in_x = (xs >= x0) & (xs < x1)  # (B, M, W)
    return (in_y[..., :, None] & in_x[..., None, :]).any(dim=1)


def from_numpy(value: object) -> object:
    """A numpy array as a tensor (a copy); anything else as it is."""
    if type(value).__module__ == "numpy" and hasattr(value, "dtype") and hasattr(value, "shape"):
        return torch.tensor(value)
    return value


def check_boxes_inside(padded: Tensor, valid: Tensor, size: tuple[int, int], name: str) -> None:
    """Warn about boxes that do not fit the maps.

    When a box reaches more than one pixel outside the (H, W) maps, or when a sample's
    boxes cover none of its pixels: boxes are then most likely in another image's coordinates
    (the original image before a resize or crop). Such boxes are clipped to the image.
    """
    h, w = size
    x0, y0, x1, y1 = padded.unbind(-1)
    area = (x1.clamp(0, w) - x0.clamp(0, w)).clamp(min=0) * (
        y1.clamp(0, h) - y0.clamp(0, h)).clamp(min=0)
    lost = valid.any(dim=1) & ~((area > 0) & valid).any(dim=1)
    if bool(lost.any()):
        i = int(lost.nonzero()[0, 0])
        warn(
            f"{name}[{i}] has boxes but none covers a pixel of the {w} x {h} (W x H) maps (empty "
            "or outside the image), so its score is NaN; boxes are (x0, y0, x1, y1) in the pixels "
            "of the inputs the maps explain (after any resize or crop)"
        )
    outside = valid & ~lost[:, None] & ((x0 < -1) | (y0 < -1) | (x1 > w + 1) | (y1 > h + 1))
    if bool(outside.any()):
        i, j = (int(v) for v in outside.nonzero()[0])
        box = [round(v, 2) for v in padded[i, j].tolist()]
        warn(
            f"{name}[{i}] has a box {box} that reaches outside the {w} x {h} (W x H) maps; boxes "
            "must be in the pixels of the inputs the maps explain (after any resize or crop, "
            "scale them with the image); the part outside is clipped"
        )


def ground_truth(gt: object, maps: Tensor, name: str = "gt") -> Tensor:
    """A (B, H, W) bool mask on the maps' device.

    From a bool mask or from boxes (tensors, lists or numpy arrays). Boxes outside the image are
    clipped, with a warning.
    """
    b, h, w = maps.shape
    gt = from_numpy(gt)
    if isinstance(gt, Tensor) and gt.dtype == torch.bool:
        if tuple(gt.shape) != (b, h, w):
            raise InputError(
                f"{name} mask must have the maps' shape (B, H, W) = {(b, h, w)}, got "
                f"{tuple(gt.shape)}"
            )
        return gt.to(maps.device)
    if isinstance(gt, Tensor) and tuple(gt.shape) == (b, h, w) and w != 4:
        raise InputTypeError(
            f"{name} mask must be a bool tensor, got dtype {gt.dtype}; use {name} > 0 "
            f"(or {name}.bool()). Boxes go in a list: [[(x0, y0, x1, y1), ...], ...]"
        )
    padded, valid = parse_boxes(gt, b, name)
    check_boxes_inside(padded, valid, (h, w), name)
    return rasterize(padded.to(maps.device), valid.to(maps.device), (h, w))
