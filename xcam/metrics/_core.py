"""Machinery shared by every metric: the :class:`Metric` wrapper, input checks, ground truth,
batched forward passes, ranks and correlations.

Nothing in here converts to numpy or moves data to the CPU; OpenCV is used only by
:func:`xcam.metrics.max_box_acc`, which converts at its own edge.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError, InputTypeError, OutputError, TargetError, warn
from ..outputs import OutputFn, logits
from ..targets import UnitTarget, class_scores
from .base import CostFn, Metric, metric

__all__ = [
    "Metric",
    "metric",
    "boxes_to_masks",
    "spearman",
    "pearson",
    "ssim",
]

# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputTypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_number(name: str, value: object, minimum: float | None = None) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise InputTypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return float(value)


def check_maps(maps: object, name: str = "maps") -> Tensor:
    """A finite floating-point (B, H, W) tensor; B = 1 stays 3-D."""
    if not isinstance(maps, Tensor):
        raise InputTypeError(
            f"{name} must be a torch.Tensor of shape (B, H, W), got {type(maps).__name__}; "
            "pass explanation.maps"
        )
    if not maps.dtype.is_floating_point:
        raise InputTypeError(
            f"{name} must be a floating-point tensor, got dtype {maps.dtype}; use {name}.float()"
        )
    if maps.dim() != 3:
        fix = f"; add the batch dimension with {name}[None]" if maps.dim() == 2 else ""
        raise InputError(f"{name} must have shape (B, H, W), got {tuple(maps.shape)}{fix}")
    if maps.shape[0] == 0 or maps.shape[1] == 0 or maps.shape[2] == 0:
        raise InputError(f"{name} is empty (shape {tuple(maps.shape)})")
    if not bool(torch.isfinite(maps).all()):
        n_bad = int((~torch.isfinite(maps)).sum())
        raise InputError(
            f"{name} contains {n_bad} NaN or infinite values; maps must be finite "
            "(torch.nan_to_num(maps) if that is what you mean)"
        )
    return maps


def check_inputs_and_maps(inputs: object, maps: object,
                          model: object = None) -> tuple[Tensor, Tensor]:
    """Validate a (B, C, H, W) batch and its (B, H, W) maps; maps move to the inputs' device.

    With an ``nn.Module`` ``model``, the inputs are also checked against it (device, dtype with
    lossless casts up, channel count: :func:`xcam._checks.check_inputs`).
    """
    from .._checks import check_inputs

    x = check_inputs(inputs, model=model if isinstance(model, nn.Module) else None)
    m = check_maps(maps)
    if m.shape[0] != x.shape[0]:
        raise InputError(
            f"maps has {m.shape[0]} samples but inputs has {x.shape[0]}; pass one map per image"
        )
    if tuple(m.shape[1:]) != tuple(x.shape[2:]):
        raise InputError(
            f"maps must be at input resolution {tuple(x.shape[2:])}, got {tuple(m.shape[1:])}; "
            "use xcam.upsample(maps, inputs.shape[-2:])"
        )
    return x, m.to(device=x.device, dtype=torch.float32)


def check_model(model: object) -> Callable[[Tensor], Any]:
    """A callable model. An ``nn.Module`` is run in eval mode by :class:`Metric` (its flags are
    restored afterwards), so a model left in training mode gives the same scores as in eval mode."""
    if not callable(model):
        raise InputTypeError(
            f"model must be a torch.nn.Module or a callable returning (B, classes) scores, "
            f"got {type(model).__name__}"
        )
    return model


def check_output_fn(output: object) -> OutputFn | None:
    """``output=``: None (the rules of :mod:`xcam.outputs`) or a callable that replaces them."""
    if output is not None and not callable(output):
        raise InputTypeError(
            f"output must be None or a callable f(model_output) -> (B, classes) tensor, got "
            f"{type(output).__name__}; e.g. output=lambda out: out['logits']"
        )
    return output  # type: ignore[return-value]


def check_batch_size(batch_size: object) -> int:
    return _check_int("batch_size", batch_size, 1)


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator seeded with ``seed``; ``None`` draws a fresh seed from torch's global RNG."""
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise InputTypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return torch.Generator(device=device).manual_seed(seed)


def baseline_like(baseline: object, inputs: Tensor, name: str = "baseline") -> float | Tensor:
    """Check ``baseline``: a number stays a float; a tensor becomes a 4-D tensor on the inputs'
    device and dtype that broadcasts to them, with a leading dimension of 1 or B."""
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        if not math.isfinite(baseline):
            raise InputError(f"{name} must be finite, got {baseline}")
        return float(baseline)
    if not isinstance(baseline, Tensor):
        raise InputTypeError(
            f"{name} must be a number or a tensor broadcastable to inputs {tuple(inputs.shape)}, "
            f"got {type(baseline).__name__}"
        )
    try:
        if baseline.dim() > 4 or torch.broadcast_shapes(baseline.shape, inputs.shape) != inputs.shape:
            raise RuntimeError
    except RuntimeError:
        raise InputError(
            f"{name} of shape {tuple(baseline.shape)} does not broadcast to inputs "
            f"{tuple(inputs.shape)}; pass a number, (C, 1, 1) per channel, (C, H, W) or "
            "(B, C, H, W)"
        ) from None
    return baseline.detach().to(device=inputs.device, dtype=inputs.dtype).reshape(
        (1,) * (4 - baseline.dim()) + tuple(baseline.shape))


def rows_of(value: float | Tensor, rows: Tensor) -> float | Tensor:
    """A baseline for the given sample rows: a float as is, a (1, ...) tensor as is (it
    broadcasts), a per-sample (B, ...) tensor gathered."""
    if isinstance(value, Tensor) and value.shape[0] > 1:
        return value[rows]
    return value


def replace_where(mask: Tensor, source: Tensor, rows: Tensor,
                  value: float | Tensor) -> Tensor:
    """``source[rows]`` with the pixels where ``mask`` (r, H, W) is True taken from ``value``
    (all channels): a new tensor, the caller's data untouched."""
    out = source[rows]
    fill = rows_of(value, rows)
    if isinstance(fill, float):
        return out.masked_fill_(mask[:, None], fill)
    return torch.where(mask[:, None], fill, out)


# --------------------------------------------------------------------------------------------
# model outputs and targets
# --------------------------------------------------------------------------------------------


def _check_output(output: Tensor, rows: int, where: str) -> Tensor:
    if output.dim() != 2 or output.shape[0] != rows:
        raise OutputError(
            f"{where}: metrics need model scores of shape (B, classes) = ({rows}, K), got "
            f"{tuple(output.shape)}; pass output=lambda out: ... returning the (B, classes) "
            "scores, or wrap the model so that it returns them"
        )
    if output.dtype.is_complex or not output.dtype.is_floating_point:
        raise OutputError(
            f"{where}: model scores must be floating point, got dtype {output.dtype}; pass "
            "output=lambda out: out.float() or return logits from the model"
        )
    return output


def model_scores(model: Callable[[Tensor], Any], batch: Tensor, output_fn: OutputFn | None,
                 where: str) -> Tensor:
    """``model(batch)`` unwrapped by :func:`xcam.outputs.logits` and checked to be (r, K)."""
    return _check_output(logits(model(batch), output_fn), batch.shape[0], where)


def clean_forward(model: Callable[[Tensor], Any], inputs: Tensor,
                  clean_output: object | None, output_fn: OutputFn | None = None) -> Tensor:
    """The model's (B, K) scores on the clean inputs: computed once, or the ones the caller shares
    (``clean_output`` may be a raw model output: it is unwrapped like one)."""
    b = inputs.shape[0]
    if clean_output is not None:
        if not isinstance(clean_output, (Tensor, Mapping, tuple, list)) and not hasattr(
                clean_output, "logits"):
            raise InputTypeError(
                f"clean_output must be the model's output on inputs (clean_output=model(inputs)), "
                f"got {type(clean_output).__name__}"
            )
        scores = logits(clean_output, output_fn)
        return _check_output(scores, b, "clean_output").detach().to(inputs.device)
    with torch.no_grad():
        out = model_scores(model, inputs, output_fn, "model(inputs)")
    return out.detach()


def resolve_targets(targets: object, output: Tensor) -> Tensor:
    """(B,) class indices from ``None`` (top class), an int, a sequence or a LongTensor."""
    if isinstance(targets, UnitTarget) or (callable(targets) and not isinstance(targets, Tensor)):
        raise TargetError(
            f"targets: metrics score the softmax probability or logit of a class, so they need "
            f"class indices (None, an int, a sequence or a LongTensor), got "
            f"{type(targets).__name__}"
        )
    indices, _ = class_scores(targets, output, output.shape[0])  # type: ignore[arg-type]
    assert indices is not None  # class targets always give indices
    return indices


def target_scores(output: Tensor, indices: Tensor, softmax: bool) -> Tensor:
    """(rows,) softmax probability (or raw output) of each row's target class, float32."""
    out = output.float()
    if softmax:
        out = torch.softmax(out, dim=1)
    return out.gather(1, indices[:, None].to(out.device)).squeeze(1)


def batched_scores(
    model: Callable[[Tensor], Any],
    make_batch: Callable[[Tensor], Tensor],
    rows: int,
    sample_of_row: Callable[[Tensor], Tensor],
    indices: Tensor,
    batch_size: int,
    softmax: bool,
    device: torch.device,
    output_fn: OutputFn | None = None,
) -> Tensor:
    """Score ``rows`` perturbed images in forward passes of at most ``batch_size`` images.

    Args:
        model: the model.
        make_batch: row ids (r,) -> images (r, C, H, W), built with tensor ops.
        rows: how many perturbed images.
        sample_of_row: row ids -> the sample each row comes from (r,).
        indices: (B,) target class per sample.
        batch_size: most images per forward pass.
        softmax: score = softmax probability (True) or the raw output (False).
        device: where the row ids live.
        output_fn: the ``output=`` callable (None: :func:`xcam.outputs.logits`'s rules).

    Returns:
        (rows,) float32 scores of the target class, under ``torch.no_grad()``.
    """
    out = torch.empty(rows, dtype=torch.float32, device=device)
    with torch.no_grad():
        for start in range(0, rows, batch_size):
            ids = torch.arange(start, min(rows, start + batch_size), device=device)
            batch = make_batch(ids)
            output = model_scores(model, batch, output_fn, "model(perturbed inputs)")
            out[start:start + ids.numel()] = target_scores(output, indices[sample_of_row(ids)],
                                                           softmax)
    return out


# --------------------------------------------------------------------------------------------
# ground truth
# --------------------------------------------------------------------------------------------


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _box_tensor(item: object, where: str) -> Tensor:
    """One sample's boxes as an (n, 4) float64 CPU tensor."""
    item = _from_numpy(item)
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
    boxes = _from_numpy(boxes)
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
    """Rasterise boxes to boolean masks; the one place xcam turns boxes into pixels.

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
    return _rasterise(padded.to(device), valid.to(device), size)


def _rasterise(padded: Tensor, valid: Tensor, size: tuple[int, int]) -> Tensor:
    h, w = size
    ys = torch.arange(h, dtype=torch.float64, device=padded.device)
    xs = torch.arange(w, dtype=torch.float64, device=padded.device)
    x0, y0, x1, y1 = (padded[..., i, None] for i in range(4))  # (B, M, 1)
    in_y = (ys >= y0) & (ys < y1) & valid[..., None]  # (B, M, H)
    in_x = (xs >= x0) & (xs < x1)  # (B, M, W)
    return (in_y[..., :, None] & in_x[..., None, :]).any(dim=1)


def _from_numpy(value: object) -> object:
    """A numpy array as a tensor (a copy); anything else as it is."""
    if type(value).__module__ == "numpy" and hasattr(value, "dtype") and hasattr(value, "shape"):
        return torch.tensor(value)
    return value


def check_boxes_inside(padded: Tensor, valid: Tensor, size: tuple[int, int], name: str) -> None:
    """Warn when a box reaches more than one pixel outside the (H, W) maps, or when a sample's
    boxes cover none of its pixels: boxes are then most likely in another image's coordinates
    (the original image before a resize or crop). Such boxes are clipped to the image."""
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
    """A (B, H, W) bool mask from a bool mask or from boxes (tensors, lists or numpy arrays), on
    the maps' device. Boxes outside the image are clipped, with a warning."""
    b, h, w = maps.shape
    gt = _from_numpy(gt)
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
    return _rasterise(padded.to(maps.device), valid.to(maps.device), (h, w))


# --------------------------------------------------------------------------------------------
# orders, ranks, correlations, SSIM
# --------------------------------------------------------------------------------------------


def descending_order(maps: Tensor) -> Tensor:
    """(B, N) pixel indices sorted by map value, descending; ties by raster index (stable)."""
    flat = maps.reshape(maps.shape[0], -1)
    return torch.sort(flat, dim=1, descending=True, stable=True).indices


def descending_rank(maps: Tensor) -> Tensor:
    """(B, H, W) position of each pixel in :func:`descending_order` (0 = most relevant)."""
    order = descending_order(maps)
    rank = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank.scatter_(1, order, positions)
    return rank.reshape(maps.shape)


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..N along the last dimension of (B, N), ties sharing their average rank."""
    b, n = values.shape
    sorted_vals, order = torch.sort(values, dim=1, stable=True)
    new_group = torch.ones_like(sorted_vals, dtype=torch.bool)
    new_group[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    group = torch.cumsum(new_group.long(), dim=1) - 1  # (B, N) group id per sorted position
    positions = torch.arange(1, n + 1, dtype=torch.float64, device=values.device).expand(b, n)
    sums = torch.zeros(b, n, dtype=torch.float64, device=values.device).scatter_add_(
        1, group, positions)
    counts = torch.zeros(b, n, dtype=torch.float64, device=values.device).scatter_add_(
        1, group, torch.ones_like(positions))
    avg_sorted = (sums / counts.clamp(min=1)).gather(1, group)
    ranks = torch.empty_like(avg_sorted)
    ranks.scatter_(1, order, avg_sorted)
    return ranks


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation along the last dimension of (B, N) pairs; NaN where either is constant."""
    a = a.double()
    b = b.double()
    da = a - a.mean(dim=-1, keepdim=True)
    db = b - b.mean(dim=-1, keepdim=True)
    saa = (da * da).sum(dim=-1)
    sbb = (db * db).sum(dim=-1)
    denom = torch.sqrt(saa * sbb)
    r = (da * db).sum(dim=-1) / torch.where(denom > 0, denom, torch.ones_like(denom))
    r = torch.where(denom > 0, r.clamp(-1.0, 1.0), torch.full_like(r, float("nan")))
    return r.float()


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation per sample of two (B, H, W) (or (B, N)) tensors.

    Pearson correlation of the average ranks (ties share their mean rank, as in
    ``scipy.stats.spearmanr``); NaN where either map is constant.
    """
    a2 = a.reshape(a.shape[0], -1)
    b2 = b.reshape(b.shape[0], -1)
    return pearson(average_ranks(a2), average_ranks(b2))


def _gaussian_1d(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    t = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return (g / g.sum()).to(dtype)


def ssim(a: Tensor, b: Tensor, kernel_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity (Wang et al., 2004) per sample of two (B, H, W) maps.

    Each map is min-max normalised to [0, 1] first (a constant map becomes 0), then
    ``SSIM = mean over windows of (2 mu_a mu_b + C1)(2 s_ab + C2) /
    ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))`` with a Gaussian window (size 11, sigma 1.5),
    ``C1 = 0.01^2``, ``C2 = 0.03^2`` (data range 1), over valid windows only (no padding). This is
    ``skimage.metrics.structural_similarity(a, b, data_range=1, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)``. Windows shrink to the largest odd size that fits
    maps smaller than 11 pixels.
    """
    from ..postprocess import normalize

    x = normalize(a.double())[:, None]
    y = normalize(b.double())[:, None]
    k = min(kernel_size, x.shape[-2], x.shape[-1])
    k = k if k % 2 == 1 else k - 1
    g = _gaussian_1d(k, sigma, x.device, x.dtype)
    wy, wx = g.view(1, 1, k, 1), g.view(1, 1, 1, k)

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, wy), wx)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x * mu_x
    syy = filt(y * y) - mu_y * mu_y
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).float()
