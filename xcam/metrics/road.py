"""ROAD: remove and debias (Rong, Leemann, Borisov, Kasneci and Kasneci, ICML 2022).

Removed pixels are not set to a constant (whose sharp edges leak the removal pattern to the
model) but imputed by *noisy linear imputation*: each removed pixel takes the weighted mean of
its 8 neighbours (weight 1/6 for the 4 direct, 1/12 for the 4 diagonal ones, renormalized over
the neighbours inside the image), where neighbours that are removed too are unknowns of the same
system, plus Gaussian noise. Per image and channel that is a sparse, symmetric positive definite
linear system; here all of them are solved at once in torch by a Jacobi-preconditioned conjugate
gradient whose matrix-vector product is one 3x3 convolution (no SciPy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_number, check_seed
from ..errors import InputError, InputTypeError
from ..outputs import OutputFn
from ..targets import class_indices
from ._forward import clean_forward, model_scores, target_scores
from ._inputs import check_batch_size, check_inputs_and_maps, check_model, check_output_fn
from .base import PerImage, metric
from .similarity import descending_rank

__all__ = [
    "road",
    "road_morf",
    "road_lerf",
    "RoadResult",
    "noisy_linear_imputation",
    "NEIGHBOR_WEIGHTS",
    "DEFAULT_PERCENTILES",
]

NEIGHBOR_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))
"""The 3x3 weights of the neighbours in the imputation (the paper's implementation)."""

DEFAULT_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
"""Percent of the pixels removed at each point of the curve (pytorch-grad-cam's ROAD averages)."""

Order = Literal["morf", "lerf"]
Score = Literal["probability", "accuracy"]


def _neighbors(x: Tensor) -> Tensor:
    """The weighted sum of the 8 neighbours of every pixel of (N, H, W); outside counts 0.

    ``NEIGHBOR_WEIGHTS`` is ``([1, 2, 1]^T [1, 2, 1]) / 12`` less its center 1/3: two separable
    passes and one subtraction.
    """
    p = F.pad(x, (1, 1, 1, 1))
    rows = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]
    return (rows[:, :, :-2] + 2 * rows[:, :, 1:-1] + rows[:, :, 2:]) / 12 - x / 3


def noisy_linear_imputation(
    inputs: Tensor,
    removed: Tensor,
    noise: float = 0.01,
    seed: int | None = None,
    tol: float = 1e-8,
    max_iter: int | None = None,
) -> Tensor:
    """Impute the removed pixels of each image by the noisy linear imputation of ROAD.

    For every removed pixel ``i`` of every channel, with ``N(i)`` its neighbours inside the image
    and ``w_ij`` = 1/6 (direct) or 1/12 (diagonal)::

        x_i = sum_{j in N(i)} w_ij x_j / sum_{j in N(i)} w_ij

    where ``x_j`` is the image's value at a kept pixel and an unknown at a removed one. That is
    ``A u = b`` with ``A = diag(s) - W`` restricted to the removed pixels (``s_i`` the in-image
    weight sum), symmetric and diagonally dominant: solved for all images and channels at once
    by a Jacobi-preconditioned conjugate gradient, in float64, until ``||b - A u|| <= tol ||b||``. Then
    ``noise * N(0, 1)`` is added to the imputed pixels (Rong et al.'s default noise is 0.01).

    Args:
        inputs: (N, C, H, W) images.
        removed: (N, H, W) bool, True where a pixel is removed (all its channels). An image may
            not have every pixel removed (nothing to impute from).
        noise: standard deviation of the Gaussian noise (0 for the plain linear imputation).
        seed: seeds the noise; image ``n`` draws from a generator seeded ``seed + n`` (None: a
            random seed).
        tol: relative residual at which the solve stops.
        max_iter: most conjugate-gradient iterations (default ``10 * (H + W) + 50``).

    Returns:
        (N, C, H, W) images: kept pixels as they were, removed ones imputed.
    """
    if not isinstance(inputs, Tensor) or inputs.dim() != 4:
        raise InputError("inputs must be an (N, C, H, W) tensor")
    if not isinstance(removed, Tensor) or removed.shape != (inputs.shape[0], *inputs.shape[2:]):
        raise InputError(
            f"removed must be a (N, H, W) bool tensor matching inputs {tuple(inputs.shape)}, got "
            f"{getattr(removed, 'shape', type(removed).__name__)}")
    noise = check_number("noise", noise, 0.0)
    check_seed(seed)
    n, c, h, w = inputs.shape
    rem = removed.to(device=inputs.device, dtype=torch.bool)
    if bool(rem.flatten(1).all(1).any()):
        raise InputError("removed covers every pixel of an image; keep at least one pixel")
    dtype = inputs.dtype if inputs.dtype in (torch.float32, torch.float64) else torch.float32
    work = torch.float32 if inputs.device.type == "mps" else torch.float64  # MPS has no float64
    x = inputs.detach().to(work).reshape(n * c, h, w)
    r = rem[:, None].expand(n, c, h, w).reshape(n * c, h, w).to(work)
    u = _impute(x, r, tol, max_iter)
    out = (x * (1 - r) + u).to(dtype)
    if noise > 0:
        base = seed if seed is not None else int(torch.randint(0, 2**62, ()).item())
        draws = [torch.randn(c, h, w, dtype=dtype, device=x.device,
                             generator=torch.Generator(device=x.device).manual_seed(base + i))
                 for i in range(n)]
        out = out + noise * torch.stack(draws).reshape(n * c, h, w) * r.to(dtype)
    return out.reshape(n, c, h, w).to(inputs.dtype)


def _impute(x: Tensor, r: Tensor, tol: float, max_iter: int | None) -> Tensor:
    """The solution ``u`` (zero at kept pixels) of the imputation systems of (N, H, W) images.

    The starting point of the conjugate gradient is the solution on the image averaged over
    2x2 blocks (a block is removed when all its pixels are), upsampled: the coarse solve removes
    the smooth error that CG is slow on (cascadic multigrid), so few fine iterations remain.
    """
    _, h, w = x.shape
    s = _neighbors(torch.ones(1, h, w, dtype=x.dtype, device=x.device))  # in-image weights
    b = _neighbors(x * (1 - r)) * r
    u0 = torch.zeros_like(x)
    if min(h, w) >= 8 and bool(r.any()):
        hc, wc = h // 2 * 2, w // 2 * 2
        keep = 1 - r[:, :hc, :wc]
        weight = F.avg_pool2d(keep[:, None], 2)[:, 0]
        coarse = F.avg_pool2d((x[:, :hc, :wc] * keep)[:, None], 2)[:, 0] / weight.clamp_min(1e-12)
        rc = (weight == 0).to(x.dtype)
        if bool((rc.flatten(1).sum(1) < rc[0].numel()).all()):
            vc = coarse * (1 - rc) + _impute(coarse * (1 - rc), rc, max(tol, 1e-4), None)
            up = F.interpolate(vc[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            u0 = up * r
    limit = max_iter if max_iter is not None else 10 * (h + w) + 50
    return _solve(b, r, s, u0, tol, limit)


def _solve(b: Tensor, r: Tensor, s: Tensor, u0: Tensor, tol: float, max_iter: int) -> Tensor:
    """Conjugate gradient for ``(s u - W u) r = b`` on the removed pixels ``r`` of each system."""

    def apply(v: Tensor) -> Tensor:
        return (s * v - _neighbors(v)) * r

    def dot(a: Tensor, c: Tensor) -> Tensor:
        return (a * c).sum(dim=(1, 2), keepdim=True)

    u = u0
    res = b - apply(u0)
    z = res / s
    p = z.clone()
    rz = dot(res, z)
    bound = (tol * dot(b, b).sqrt()).clamp_min(torch.finfo(b.dtype).tiny)
    for _ in range(max_iter):
        if bool((dot(res, res).sqrt() <= bound).all()):
            break
        ap = apply(p)
        pap = dot(p, ap)
        alpha = torch.where(pap > 0, rz / torch.where(pap > 0, pap, torch.ones_like(pap)),
                            torch.zeros_like(pap))
        u = u + alpha * p
        res = res - alpha * ap
        z = res / s * r
        rz_new = dot(res, z)
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, torch.ones_like(rz)),
                           torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
    return u


@dataclass(frozen=True)
class RoadResult:
    """Result of :func:`road`.

    Attributes:
        auc: (B,) float32 area under each curve (trapezoid rule over ``fractions``).
        curves: (B, S) float32 score of the target class after removing each share of pixels:
            its softmax probability, or 1.0 / 0.0 whether it is still the top class.
        fractions: (S,) float32 share of the pixels removed at each point (``percentiles / 100``).
        order: ``"morf"`` (most relevant removed first) or ``"lerf"`` (least relevant first).
        higher_is_better: False for MoRF, True for LeRF.
    """

    auc: Tensor
    curves: Tensor
    fractions: Tensor
    order: str
    higher_is_better: bool

    def __len__(self) -> int:
        return int(self.auc.shape[0])


def _per_image(result: RoadResult) -> PerImage:
    return PerImage(scores=result.auc, curves=result.curves)


def _check_percentiles(percentiles: object) -> tuple[float, ...]:
    if not isinstance(percentiles, Sequence) or isinstance(percentiles, (str, bytes)) or \
            not percentiles:
        raise InputTypeError(
            f"percentiles must be a non-empty sequence of numbers in [0, 100), got {percentiles!r}")
    values = tuple(check_number("percentiles", p) for p in percentiles)
    if any(not 0 <= p < 100 for p in values):
        raise InputError(f"percentiles must lie in [0, 100) (some pixels must stay), got {values}")
    return values


def road(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    order: Order = "morf",
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    noise: float = 0.01,
    score: Score = "probability",
    batch_size: int = 64,
    seed: int | None = None,
    *,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
) -> RoadResult:
    """ROAD curve and area (Rong et al., ICML 2022): remove pixels, impute them, score the model.

    "A Consistent and Efficient Evaluation Strategy for Attribution Methods".
    For each percentage ``p`` the ``k = int(N * p / 100)`` pixels (N = H * W, all channels) that
    rank highest in the map (``order="morf"``, ties by raster index) or lowest (``"lerf"``) are
    removed and imputed by :func:`noisy_linear_imputation`; the curve is the model's score of the
    target class on each imputed image::

        curve_i(p) = f_c(impute(x_i, R_i(p)))       AUC_i = trapezoid over p / 100

    with ``f_c`` the softmax probability (``score="probability"``) or the indicator that the
    target is still the top class (``"accuracy"``, Quantus's ``ROAD``, whose mean over images is
    the paper's accuracy curve). MoRF: lower is better; LeRF: higher is better.

    Args:
        model: returns (B, classes) scores (logits).
        inputs: (B, C, H, W) in the model's input space.
        maps: (B, H, W) at input resolution.
        targets: class per sample: None (top class on the clean input), int, sequence, LongTensor.
        order: ``"morf"`` or ``"lerf"``.
        percentiles: percent of the pixels removed at each point, each in [0, 100).
        noise: standard deviation of the imputation's Gaussian noise (the paper's 0.01).
        score: ``"probability"`` or ``"accuracy"``.
        batch_size: most images imputed and run through the model at once.
        seed: seeds the noise (bit-identical for the same seed, whatever ``batch_size``).
        clean_output: the model's output on ``inputs``, to share one clean pass among metrics.
        output: ``f(model_output) -> (B, classes)`` for models :mod:`xcam.outputs` cannot read.

    Returns:
        :class:`RoadResult` with ``.auc`` (B,) and ``.curves`` (B, S).
    """
    model = check_model(model)
    x, m = check_inputs_and_maps(inputs, maps, model)
    if order not in ("morf", "lerf"):
        raise InputError(f"order must be 'morf' or 'lerf', got {order!r}")
    if score not in ("probability", "accuracy"):
        raise InputError(f"score must be 'probability' or 'accuracy', got {score!r}")
    pct = _check_percentiles(percentiles)
    noise = check_number("noise", noise, 0.0)
    batch_size = check_batch_size(batch_size)
    check_seed(seed)
    output_fn = check_output_fn(output)
    clean = clean_forward(model, x, clean_output, output_fn)
    indices = class_indices(targets, clean)
    b, n_pix = m.shape[0], m.shape[1] * m.shape[2]
    counts = torch.tensor([int(n_pix * p / 100) for p in pct], device=x.device)
    rank = descending_rank(m)
    if order == "lerf":
        rank = n_pix - 1 - rank
    base = seed if seed is not None else int(torch.randint(0, 2**62, ()).item())
    s = counts.numel()
    rows = b * s
    curves = torch.empty(rows, dtype=torch.float32, device=x.device)
    with torch.no_grad():
        for start in range(0, rows, batch_size):
            ids = torch.arange(start, min(rows, start + batch_size), device=x.device)
            sample, step = ids // s, ids % s
            removed = rank[sample] < counts[step][:, None, None]
            imputed = noisy_linear_imputation(x[sample], removed, noise, base + start)
            out = model_scores(model, imputed, output_fn, "model(imputed inputs)")
            if score == "probability":
                curves[ids] = target_scores(out, indices[sample], softmax=True)
            else:
                curves[ids] = (out.argmax(1) == indices[sample].to(out.device)).float()
    curves = curves.reshape(b, s)
    fractions = torch.tensor(pct, dtype=torch.float64, device=x.device) / 100
    auc = torch.trapezoid(curves.double(), fractions, dim=1) if s > 1 else curves[:, 0].double()
    return RoadResult(auc.float(), curves, fractions.float(), order, order == "lerf")


def _cost(n: int, p: dict[str, Any]) -> int:
    return n * len(p["percentiles"]) + (n if p.get("clean_output") is None else 0)


@metric("road_morf", higher_is_better=False, family="faithfulness", cost=_cost, stochastic=True,
        label="ROAD MoRF AUC", curves=True, per_image=_per_image,
        curve_xlabel="fraction of most relevant pixels removed (imputed)",
        curve_ylabel="probability of the target class")
def road_morf(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    noise: float = 0.01,
    score: Score = "probability",
    batch_size: int = 64,
    seed: int | None = None,
    *,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
) -> RoadResult:
    """ROAD, most relevant first (MoRF): :func:`road` with ``order="morf"``. Lower is better.

    ``curve_i(p) = f_c(impute(x_i, top p% of map_i))``, ``AUC_i`` by the trapezoid rule over
    ``p / 100`` (Rong et al., ICML 2022). See :func:`road` for the arguments.
    """
    return road(model, inputs, maps, targets, "morf", percentiles, noise, score, batch_size, seed,
                clean_output=clean_output, output=output)


@metric("road_lerf", higher_is_better=True, family="faithfulness", cost=_cost, stochastic=True,
        label="ROAD LeRF AUC", curves=True, per_image=_per_image,
        curve_xlabel="fraction of least relevant pixels removed (imputed)",
        curve_ylabel="probability of the target class")
def road_lerf(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    noise: float = 0.01,
    score: Score = "probability",
    batch_size: int = 64,
    seed: int | None = None,
    *,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
) -> RoadResult:
    """ROAD, least relevant first (LeRF): :func:`road` with ``order="lerf"``. Higher is better.

    ``curve_i(p) = f_c(impute(x_i, bottom p% of map_i))``, ``AUC_i`` by the trapezoid rule over
    ``p / 100`` (Rong et al., ICML 2022). See :func:`road` for the arguments.
    """
    return road(model, inputs, maps, targets, "lerf", percentiles, noise, score, batch_size, seed,
                clean_output=clean_output, output=output)
