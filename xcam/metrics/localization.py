"""Localization metrics: does the map point at the object?

Every function takes maps (B, H, W) at input resolution and ground truth ``gt``, either a bool
mask (B, H, W) or, per sample, a list of ``(x0, y0, x1, y1)`` boxes in input pixels
(inclusive-exclusive; rasterized by :func:`xcam.metrics.boxes_to_masks`). Scores are per sample,
(B,) float32, NaN where the ground truth is empty. Definitions: ``specs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._checks import check_number
from ..errors import InputError, InputTypeError, warn
from ..postprocess import normalize
from ._inputs import check_maps
from .base import PerImage, metric
from .groundtruth import check_boxes_inside, ground_truth, parse_boxes

__all__ = [
    "pointing_game",
    "pointing_game_baseline",
    "energy_pointing_game",
    "relevance_mass",
    "relevance_rank",
    "max_box_acc",
    "BoxAccResult",
]

_NAN = float("nan")


def _undefined_where_empty(scores: Tensor, mask: Tensor) -> Tensor:
    """NaN for samples whose ground truth has no pixel."""
    nonempty = mask.reshape(mask.shape[0], -1).any(dim=1)
    return torch.where(nonempty, scores, torch.full_like(scores, _NAN))


def _near_ground_truth(mask: Tensor, tolerance: float) -> Tensor:
    """(B, H, W) bool: pixels within ``tolerance`` (Euclidean) of a ground-truth pixel.

    An exact distance transform in two passes (Felzenszwalb and Huttenlocher): the distance to
    the nearest ground-truth pixel in the same row, then the minimum over the rows within reach of
    ``dy^2 + dx(y + dy)^2``. Integer squared distances are compared with ``tolerance^2``.
    """
    b, h, w = mask.shape
    dev = mask.device
    xs = torch.arange(w, dtype=torch.float64, device=dev).expand(b, h, w)
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=dev)
    last = torch.where(mask, xs, -inf).cummax(dim=2).values  # last ground-truth x at or before x
    nxt = torch.where(mask, xs, inf).flip(2).cummin(dim=2).values.flip(2)  # first at or after x
    dx = torch.minimum(xs - last, nxt - xs)  # (B, H, W), inf on rows without ground truth
    dx2 = dx * dx
    reach = min(int(tolerance), h - 1)
    d2 = torch.full_like(dx2, float("inf"))
    for dy in range(-reach, reach + 1):
        if dy >= 0:
            d2[:, : h - dy] = torch.minimum(d2[:, : h - dy], dx2[:, dy:] + dy * dy)
        else:
            d2[:, -dy:] = torch.minimum(d2[:, -dy:], dx2[:, : h + dy] + dy * dy)
    return d2 <= tolerance * tolerance


def _center_point(gt: object, size: tuple[int, int] | None = None,
                  tolerance: float = 15, max_box_fraction: float | None = None) -> Tensor:
    """The pointing game's reference score: :func:`pointing_game_baseline`."""
    return pointing_game_baseline(gt, tolerance=tolerance, size=size,
                                  max_box_fraction=max_box_fraction)


def _check_box_fraction(max_box_fraction: object) -> float | None:
    """``max_box_fraction``: None, or a share of the image in (0, 1]."""
    if max_box_fraction is None:
        return None
    value = check_number("max_box_fraction", max_box_fraction)
    if not 0 < value <= 1:
        raise InputError(
            f"max_box_fraction must be a share of the image in (0, 1] (e.g. 0.5 for objects under "
            f"half of it), or None for every sample; got {max_box_fraction}")
    return value


def _small_objects_only(scores: Tensor, mask: Tensor, max_box_fraction: float | None) -> Tensor:
    """NaN for samples whose ground truth covers more than ``max_box_fraction`` of the image."""
    if max_box_fraction is None:
        return scores
    share = mask.reshape(mask.shape[0], -1).double().mean(dim=1)
    return torch.where(share <= max_box_fraction, scores, torch.full_like(scores, _NAN))


@metric("pointing_game", higher_is_better=True, family="localization", version=2,
        label="Pointing game", baseline=_center_point, baseline_label="center point")
def pointing_game(maps: Tensor, gt: object, tolerance: float = 15,
                  max_box_fraction: float | None = None) -> Tensor:
    """Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", 2016).

    A hit (1.0) when the map's maximum lies within ``tolerance`` pixels (Euclidean, input pixels)
    of a ground-truth pixel, else a miss (0.0):
    ``hit = any_{p in GT} ||argmax(map) - p||_2 <= tolerance``.
    Ties count fractionally: with several pixels at the maximum, the score is the share of them
    that hit, ``|{q in argmax(map) : q hits}| / |argmax(map)|``, the expected hit of a maximum
    drawn at random. A map and its mirror image therefore score the same. A constant map (no
    maximum: every pixel ties) is a miss, 0.0, so a blank map scores 0.

    Report it beside :func:`pointing_game_baseline`, the score of a map that always points at the
    image center.

    Small-object subset: on data sets whose objects fill most of the image (ImageNet), the
    center point alone hits about 93 % of the time, so the game hardly tells methods apart there.
    With ``max_box_fraction=f`` only the samples whose ground truth (the union of their boxes, or
    the mask) covers at most ``f`` of the image are scored; the others score NaN, which the means
    (``nanmean``, ``compare``'s tables) leave out. The hit rule itself is unchanged.

    Args:
        maps: (B, H, W) maps at input resolution.
        gt: (B, H, W) bool mask, or per sample a list of ``(x0, y0, x1, y1)`` boxes.
        tolerance: radius in pixels (default 15, as in the paper); 0 asks for the exact pixel.
        max_box_fraction: None (default: every sample), or a share of the image in (0, 1]:
            samples whose ground truth covers more than it score NaN.

    Returns:
        (B,) float32 in [0, 1]: 1.0 hit, 0.0 miss, the share of hits among tied maxima, NaN where
        the ground truth is empty or, with ``max_box_fraction``, larger than that share.
    """
    m = check_maps(maps)
    tol = check_number("tolerance", tolerance, 0.0)
    fraction = _check_box_fraction(max_box_fraction)
    mask = ground_truth(gt, m)
    b = m.shape[0]
    flat = m.reshape(b, -1)
    top = flat.max(dim=1, keepdim=True).values
    ties = flat == top  # (B, N) every pixel at the maximum
    near = _near_ground_truth(mask, tol).reshape(b, -1)
    share = (ties & near).sum(dim=1).double() / ties.sum(dim=1).double()
    constant = top[:, 0] == flat.min(dim=1).values
    scores = torch.where(constant, torch.zeros_like(share), share).float()
    return _small_objects_only(_undefined_where_empty(scores, mask), mask, fraction)


def pointing_game_baseline(
    gt: object, tolerance: float = 15, size: tuple[int, int] | None = None,
    max_box_fraction: float | None = None,
) -> Tensor:
    """The center baseline of the pointing game: a map whose maximum is the image center.

    The map is 1 at pixel ``(H // 2, W // 2)`` and 0 elsewhere, scored by :func:`pointing_game`.
    A method that does not beat it on a data set has not learned to localize there.

    Args:
        gt: bool mask (B, H, W), or boxes per sample (then ``size`` is required).
        tolerance: as in :func:`pointing_game`.
        size: ``(H, W)`` of the images when ``gt`` holds boxes.
        max_box_fraction: as in :func:`pointing_game` (the same small-object subset).

    Returns:
        (B,) float32 hits (1.0 / 0.0), NaN where the ground truth is empty (or too large).
    """
    if isinstance(gt, Tensor) and gt.dtype == torch.bool and gt.dim() == 3:
        b, h, w = gt.shape
        device = gt.device
    else:
        if size is None:
            raise InputError(
                "pointing_game_baseline: size=(H, W) is required when gt holds boxes "
                "(pass size=inputs.shape[-2:])"
            )
        h, w = (int(v) for v in size)
        b = parse_boxes(gt)[0].shape[0]
        device = torch.device("cpu")
    center = torch.zeros(b, h, w, device=device)
    center[:, h // 2, w // 2] = 1.0
    return pointing_game(center, gt, tolerance=tolerance, max_box_fraction=max_box_fraction)


def _mass_share(positive: Tensor, mask: Tensor) -> Tensor:
    """Share of the (non-negative) map's sum inside the mask; a zero map counts as uniform."""
    b = positive.shape[0]
    flat = positive.reshape(b, -1).double()
    inside_mask = mask.reshape(b, -1)
    total = flat.sum(dim=1)
    inside = (flat * inside_mask).sum(dim=1)
    area = inside_mask.double().mean(dim=1)
    share = torch.where(total > 0, inside / torch.where(total > 0, total, torch.ones_like(total)),
                        area)
    return _undefined_where_empty(share.float(), mask)


@metric("energy_pointing_game", higher_is_better=True, family="localization",
        label="Energy pointing game")
def energy_pointing_game(maps: Tensor, gt: object) -> Tensor:
    """Energy-based pointing game (Wang et al., "Score-CAM", 2020).

    The map is min-max normalized per sample, clamped at 0 and divided by its sum; the score is
    the share of that mass inside the ground truth:
    ``sum_{p in GT} E(p) / sum_p E(p)`` with ``E = max(0, (M - min M) / (max M - min M))``.
    A zero map (also a constant one, which min-max sends to 0) counts as uniform: the score is
    then the ground-truth area over the image area.

    Args:
        maps: (B, H, W).
        gt: bool mask (B, H, W) or boxes per sample.

    Returns:
        (B,) float32 in [0, 1], NaN where the ground truth is empty.
    """
    m = check_maps(maps)
    mask = ground_truth(gt, m)
    return _mass_share(normalize(m).clamp(min=0), mask)


@metric("relevance_mass", higher_is_better=True, family="localization", label="Relevance mass")
def relevance_mass(maps: Tensor, gt: object) -> Tensor:
    """Relevance mass accuracy (Arras et al., "CLEVR-XAI", 2022).

    The energy game on the raw positive map, without min-max:
    ``sum_{p in GT} R+(p) / sum_p R+(p)`` with ``R+ = max(0, M)``. A map with no positive value
    counts as uniform (ground-truth area over image area).

    Args:
        maps: (B, H, W).
        gt: bool mask (B, H, W) or boxes per sample.

    Returns:
        (B,) float32 in [0, 1], NaN where the ground truth is empty.
    """
    m = check_maps(maps)
    mask = ground_truth(gt, m)
    return _mass_share(m.clamp(min=0), mask)


@metric("relevance_rank", higher_is_better=True, family="localization", version=2,
        label="Relevance rank")
def relevance_rank(maps: Tensor, gt: object) -> Tensor:
    """Relevance rank accuracy (Arras et al., "CLEVR-XAI", 2022).

    With K the number of ground-truth pixels, the share of the map's K highest pixels that lie
    inside the ground truth: ``|top_K(M) ∩ GT| / K``. Ties at the K-th highest value v count
    fractionally: the pixels above v all belong to the top K, and the ``s = K - |{M > v}|``
    remaining places are shared by the ``|{M = v}|`` tied pixels, each weighing
    ``s / |{M = v}|`` (the expected score over a uniformly random order of the ties):
    ``(|{M > v} ∩ GT| + s |{M = v} ∩ GT| / |{M = v}|) / K``. The score does not depend on the
    image's orientation; a constant map scores the ground truth's share of the image, K / N
    (chance level).

    Args:
        maps: (B, H, W).
        gt: bool mask (B, H, W) or boxes per sample.

    Returns:
        (B,) float32 in [0, 1], NaN where the ground truth is empty.
    """
    m = check_maps(maps)
    mask = ground_truth(gt, m)
    b = m.shape[0]
    flat = m.reshape(b, -1)
    flat_mask = mask.reshape(b, -1)
    k = flat_mask.sum(dim=1)  # (B,)
    ordered = torch.sort(flat, dim=1, descending=True).values
    kth = ordered.gather(1, (k - 1).clamp(min=0)[:, None])  # (B, 1) the K-th highest value
    above = flat > kth
    tied = flat == kth
    slots = (k - above.sum(dim=1)).double()
    hits = ((above & flat_mask).sum(dim=1).double()
            + slots * (tied & flat_mask).sum(dim=1).double() / tied.sum(dim=1).double())
    scores = hits / k.clamp(min=1).double()
    return _undefined_where_empty(scores.float(), mask)


@dataclass(frozen=True)
class BoxAccResult:
    """Result of :func:`max_box_acc`.

    Attributes:
        value: MaxBoxAcc (or MaxBoxAccV2): ``mean_d max_t BoxAcc(t, d)``, a float in [0, 1].
        iou: (B, T) float32 per sample and threshold: the best IoU between an estimated box and
            any ground-truth box (0 where ``map > t`` is empty); NaN rows for samples without
            boxes.
        thresholds: (T,) the map thresholds t.
        iou_thresholds: the IoU levels d.
        box_acc: (D, T) float32 ``BoxAcc(t, d)``: the share of samples with ``IoU >= d``.
        v2: whether every component's box counted (V2) or only the largest component's.
    """

    value: float
    iou: Tensor
    thresholds: Tensor
    iou_thresholds: tuple[float, ...]
    box_acc: Tensor
    v2: bool

    def __len__(self) -> int:
        return int(self.iou.shape[0])


def _box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes (..., 4) against (..., M, 4), inclusive-exclusive pixel coordinates."""
    a = a[..., None, :]
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)),
                       torch.zeros_like(union))


def _thresholds(thresholds: object, device: torch.device) -> Tensor:
    if thresholds is None:
        return torch.arange(100, dtype=torch.float64, device=device) / 100
    if isinstance(thresholds, Tensor):
        t = thresholds.detach().to(device=device, dtype=torch.float64).reshape(-1)
    elif isinstance(thresholds, Sequence) and not isinstance(thresholds, (str, bytes)):
        try:
            t = torch.tensor([float(v) for v in thresholds], dtype=torch.float64, device=device)
        except (TypeError, ValueError):
            raise InputTypeError(f"thresholds must be numbers, got {thresholds!r}") from None
    else:
        raise InputTypeError(
            f"thresholds must be a sequence or 1-D tensor of numbers in [0, 1], or None for "
            f"0.00..0.99 step 0.01; got {type(thresholds).__name__}"
        )
    if t.numel() == 0 or not bool(torch.isfinite(t).all()):
        raise InputError(f"thresholds must be a non-empty list of finite numbers, got {t.tolist()}")
    if bool((t < 0).any()):
        warn(
            f"thresholds below 0 ({[v for v in t.tolist() if v < 0][:4]}): maps are min-max "
            "normalized to [0, 1] first, so such a threshold keeps every pixel and the whole "
            "image becomes the box, whatever the map; pass thresholds in [0, 1)"
        )
    return t


def _box_acc_per_image(result: BoxAccResult) -> PerImage:
    """MaxBoxAcc has no per-image score: each image keeps its IoU at every map threshold."""
    nan = torch.full((result.iou.shape[0],), _NAN, device=result.iou.device)
    return PerImage(scores=nan, parts=result.iou)


def box_acc_indicators(iou: Tensor, levels: Sequence[float]) -> Tensor:
    """Per image, its share in MaxBoxAcc over the N images of ``iou`` (N, T).

    ``mean_d 1[IoU_i(t*_d) >= d]`` with ``t*_d = argmax_t mean_i 1[IoU_i(t) >= d]``, so that
    the mean over the images equals :func:`max_box_acc` ``(...).value`` on them. Rows with a NaN
    IoU (no ground truth) stay NaN and take no part in the choice of ``t*_d``.
    """
    iou = iou.double()
    out = torch.full((iou.shape[0],), _NAN, dtype=torch.float64, device=iou.device)
    scored = ~torch.isnan(iou[:, 0]) if iou.shape[0] else torch.zeros(0, dtype=torch.bool)
    if not bool(scored.any()):
        return out
    valid = iou[scored]
    indicator = torch.zeros(valid.shape[0], dtype=torch.float64, device=iou.device)
    for d in levels:
        hit = valid >= d
        best_t = int(hit.double().mean(dim=0).argmax())
        indicator += hit[:, best_t].double()
    out[scored] = indicator / len(levels)
    return out


def _box_acc_aggregate(parts: Tensor, settings: Mapping[str, Any]) -> Tensor:
    levels = iou_levels(bool(settings.get("v2", False)), settings.get("iou_thresholds") or None)
    return box_acc_indicators(parts, levels)


@metric("max_box_acc", higher_is_better=True, family="localization", version=2,
        label="MaxBoxAcc", scope="dataset", per_image=_box_acc_per_image,
        aggregate=_box_acc_aggregate)
def max_box_acc(
    maps: Tensor,
    boxes: object,
    thresholds: Sequence[float] | Tensor | None = None,
    v2: bool = False,
    iou_thresholds: Sequence[float] | None = None,
) -> BoxAccResult:
    """MaxBoxAcc and MaxBoxAccV2 (Choe et al., CVPR 2020).

    "Evaluating weakly supervised object localization methods right".

    Each map is min-max normalized. For every threshold t the mask ``map > t`` (strictly above,
    as in the authors' reference code, wsolevaluation's ``cv2.threshold(..., THRESH_BINARY)``,
    so a blank or constant map, which min-max sends to 0, has no box at any t and scores 0) is
    split into 8-connected components (OpenCV ``connectedComponentsWithStats``); the box of the largest
    component (most pixels; ties: the lowest label, i.e. the first in raster order) is the
    estimate, or with ``v2=True`` every component's box is, the best one counting. The per-sample
    score at t is the best IoU between an estimate and any ground-truth box (0 when the mask is
    empty). ``BoxAcc(t, d)`` is the share of samples with ``IoU >= d`` (an IoU equal to d counts);
    ``MaxBoxAcc = max_t BoxAcc(t, 0.5)`` and
    ``MaxBoxAccV2 = mean_{d in {0.3, 0.5, 0.7}} max_t BoxAcc(t, d)``.

    Boxes (estimated and ground truth) are ``(x0, y0, x1, y1)`` in pixels, inclusive-exclusive, so
    a component covering columns 2..5 has ``x0 = 2, x1 = 6``.

    Args:
        maps: (B, H, W).
        boxes: per sample, a list of ground-truth ``(x0, y0, x1, y1)`` boxes (a sample with an
            empty list has NaN IoUs and does not count in BoxAcc).
        thresholds: map thresholds t (default 0.00, 0.01, ..., 0.99).
        v2: score every component's box (MaxBoxAccV2) instead of the largest component's.
        iou_thresholds: IoU levels d (default (0.5,), or (0.3, 0.5, 0.7) with ``v2=True``).

    Returns:
        :class:`BoxAccResult` with ``.value`` (float) and ``.iou`` (B, T).
    """
    m = check_maps(maps)
    if not isinstance(v2, bool):
        raise InputTypeError(f"v2 must be a bool, got {type(v2).__name__}")
    b, h, w = m.shape
    gt, valid = parse_boxes(boxes, b)
    check_boxes_inside(gt, valid, (h, w), "boxes")
    thr = _thresholds(thresholds, m.device)
    levels = iou_levels(v2, iou_thresholds)
    has_gt = valid.any(dim=1)
    estimates, rows = _estimated_boxes(normalize(m).double(), thr, has_gt, v2)
    iou = _best_iou(estimates, rows, gt, valid, thr.numel(), b)
    iou[~has_gt] = _NAN
    box_acc, value = _box_accuracy(iou[has_gt], levels)
    return BoxAccResult(
        value=value,
        iou=iou.float().to(m.device),
        thresholds=thr.float(),
        iou_thresholds=levels,
        box_acc=box_acc.float().to(m.device),
        v2=v2,
    )


def iou_levels(v2: bool = False, iou_thresholds: Sequence[float] | None = None) -> tuple[float, ...]:
    """The IoU levels d of MaxBoxAcc: ``iou_thresholds``, else (0.5,), or (0.3, 0.5, 0.7) for v2.

    Raises:
        InputError: ``iou_thresholds`` is empty or holds a negative level.
        InputTypeError: a level is not a number.
    """
    if iou_thresholds is None:
        return (0.3, 0.5, 0.7) if v2 else (0.5,)
    levels = tuple(check_number("iou_thresholds", float(d), 0.0) for d in iou_thresholds)
    if not levels:
        raise InputError("iou_thresholds is empty; pass at least one IoU level such as (0.5,)")
    return levels


def _estimated_boxes(norm: Tensor, thr: Tensor, has_gt: Tensor, v2: bool) -> tuple[Tensor, Tensor]:
    """Boxes of the connected components of ``norm > t`` for every threshold t and sample.

    The only numpy / CPU edge of the metrics: OpenCV labels the thresholded masks (8-connected).

    Args:
        norm: (B, H, W) min-max normalized maps.
        thr: (T,) thresholds.
        has_gt: (B,) samples with ground truth (the others are skipped).
        v2: every component's box; else only the largest component's (ties: the lowest label).

    Returns:
        ``(estimates, rows)``: (R, 4) float64 boxes ``(x0, y0, x1, y1)`` and (R,) the row
        ``t * B + i`` each belongs to.
    """
    import cv2
    import numpy as np

    b = norm.shape[0]
    masks = (norm[None] > thr[:, None, None, None]).to(torch.uint8).cpu().numpy()  # (T, B, H, W)
    rows, found = [], []
    for t in range(thr.numel()):
        for i in range(b):
            if not bool(has_gt[i]):
                continue
            n, _, stats, _ = cv2.connectedComponentsWithStats(masks[t, i], connectivity=8)
            if n <= 1:
                continue
            comp = stats[1:]
            if not v2:
                comp = comp[int(np.argmax(comp[:, cv2.CC_STAT_AREA])), None]
            x0 = comp[:, cv2.CC_STAT_LEFT]
            y0 = comp[:, cv2.CC_STAT_TOP]
            est = np.stack([x0, y0, x0 + comp[:, cv2.CC_STAT_WIDTH],
                            y0 + comp[:, cv2.CC_STAT_HEIGHT]], axis=1)
            found.append(est)
            rows.append(np.full(len(est), t * b + i))
    if not found:
        return torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    return (torch.from_numpy(np.concatenate(found)).to(torch.float64),
            torch.from_numpy(np.concatenate(rows)).long())


def _best_iou(estimates: Tensor, rows: Tensor, gt: Tensor, valid: Tensor, n_t: int,
              b: int) -> Tensor:
    """(B, T) float64: per sample and threshold, the best IoU of an estimate with a true box.

    0 where the mask was empty.
    """
    iou = torch.zeros(n_t * b, dtype=torch.float64)
    if rows.numel():
        sample = rows % b
        pair = _box_iou(estimates, gt[sample])  # (R, M)
        pair = torch.where(valid[sample], pair, torch.zeros_like(pair))
        iou.scatter_reduce_(0, rows, pair.max(dim=1).values, reduce="amax")
    return iou.reshape(n_t, b).t().contiguous()


def _box_accuracy(scored: Tensor, levels: tuple[float, ...]) -> tuple[Tensor, float]:
    """``BoxAcc(t, d)`` (D, T) over the scored samples (B', T), and MaxBoxAcc.

    MaxBoxAcc is the mean over d of the maximum over t of BoxAcc (NaN without a scored sample).
    """
    if scored.shape[0] == 0:
        return torch.full((len(levels), scored.shape[1]), _NAN, dtype=torch.float64), _NAN
    box_acc = torch.stack([(scored >= d).double().mean(dim=0) for d in levels])  # (D, T)
    return box_acc, float(box_acc.max(dim=1).values.mean())
