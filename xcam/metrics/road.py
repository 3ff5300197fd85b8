"""ROAD: remove and debias (Rong, Leemann, Borisov, Kasneci and Kasneci, ICML 2022).

Removed pixels are not set to a constant (whose sharp edges leak the removal pattern to the
model) but imputed by *noisy linear imputation*: each removed pixel takes the weighted mean of
its 8 neighbours (weight 1/6 for the 4 direct, 1/12 for the 4 diagonal ones, renormalized over
the neighbours inside the image), where neighbours that are removed too are unknowns of the same
system, plus Gaussian noise. Per image that is a sparse, symmetric positive definite linear
system whose matrix depends on the mask only (the channels are its right-hand sides); here all
of them are solved at once in torch (no SciPy) by a conjugate gradient preconditioned with a
geometric multigrid V-cycle, in float32, until every relative residual is below 1e-6.
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
from ..targets import checked_classes, class_indices, parse_indices
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


def _smooth(x: Tensor, out: Tensor | None = None, tmp: Tensor | None = None) -> Tensor:
    """``[1, 2, 1]^T [1, 2, 1]`` applied to every pixel of (..., H, W), outside counting 0.

    Two separable passes of shifted in-place adds (no padded copy), into ``out`` through ``tmp``
    when given (buffers of ``x``'s shape: the solver's loops allocate nothing).
    """
    rows = 2 * x if tmp is None else torch.mul(x, 2, out=tmp)
    rows[..., 1:, :] += x[..., :-1, :]
    rows[..., :-1, :] += x[..., 1:, :]
    res = 2 * rows if out is None else torch.mul(rows, 2, out=out)
    res[..., 1:] += rows[..., :-1]
    res[..., :-1] += rows[..., 1:]
    return res


def _neighbors(x: Tensor) -> Tensor:
    """The weighted sum of the 8 neighbours of every pixel of (..., H, W); outside counts 0.

    ``NEIGHBOR_WEIGHTS`` is ``([1, 2, 1]^T [1, 2, 1]) / 12`` less its center 1/3.
    """
    return _smooth(x).sub_(x, alpha=4).div_(12)


def noisy_linear_imputation(
    inputs: Tensor,
    removed: Tensor,
    noise: float = 0.01,
    seed: int | None = None,
    tol: float = 1e-6,
    max_iter: int | None = None,
) -> Tensor:
    """Impute the removed pixels of each image by the noisy linear imputation of ROAD.

    Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods"
    (ICML 2022), noisy linear imputation: for every removed pixel ``i`` of every channel, with
    ``N(i)`` its neighbours inside the image and ``w_ij`` = 1/6 (direct) or 1/12 (diagonal)::

        x_i = sum_{j in N(i)} w_ij x_j / sum_{j in N(i)} w_ij

    where ``x_j`` is the image's value at a kept pixel and an unknown at a removed one. That is
    ``A u = b`` with ``A = diag(s) - W`` restricted to the removed pixels (``s_i`` the in-image
    weight sum), symmetric positive definite. ``A`` depends on the mask only, so the channels of
    an image are right-hand sides of one operator. All images and channels are solved at once in
    torch (no SciPy) by conjugate gradient preconditioned with one geometric multigrid V-cycle:
    one Jacobi sweep on the removed pixels before and one after the coarse correction, bilinear
    prolongation and its transpose as restriction, the operator rediscretized on each grid of half
    the size (a coarse pixel is removed when its 2x2 block is) down to at most 64 pixels, solved
    there exactly (a dense inverse per image). The V-cycle is symmetric, so CG applies, and
    converges in about ten iterations whatever the image size. It stops when every system has
    ``||b - A u|| <= tol ||b||``, working in float32 for ``tol >= 1e-6`` and float32 (or lower)
    inputs (then the imputed values lie within about 1e-6 of the exact solve, relative to the
    image's largest value), in float64 otherwise (float32 on MPS, which has no float64). Then
    ``noise * N(0, 1)`` is added to the imputed pixels (Rong et al.'s default noise is 0.01).

    Args:
        inputs: (N, C, H, W) images.
        removed: (N, H, W) bool, True where a pixel is removed (all its channels). An image may
            not have every pixel removed (nothing to impute from).
        noise: standard deviation of the Gaussian noise (0 for the plain linear imputation).
        seed: seeds the noise; image ``n`` draws from a generator seeded ``seed + n`` (None: a
            random seed).
        tol: relative residual at which the solve stops.
        max_iter: most conjugate-gradient iterations (default ``H + W + 50``).

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
    tol = check_number("tol", tol, 0.0)
    check_seed(seed)
    n, c, h, w = inputs.shape
    rem = removed.to(device=inputs.device, dtype=torch.bool)
    if bool(rem.flatten(1).all(1).any()):
        raise InputError("removed covers every pixel of an image; keep at least one pixel")
    dtype = inputs.dtype if inputs.dtype in (torch.float32, torch.float64) else torch.float32
    single = inputs.device.type == "mps" or (tol >= 1e-6 and inputs.dtype != torch.float64)
    work = torch.float32 if single else torch.float64
    x = inputs.detach().to(work)
    r = rem[:, None].to(work)  # (N, 1, H, W): shared by the channels
    step = max(1, _CHUNK // (c * h * w))  # images solved together: their vectors stay in cache
    u = torch.cat([_impute(x[i:i + step], r[i:i + step], tol, max_iter)
                   for i in range(0, n, step)])
    out = (x * (1 - r) + u).to(dtype)
    if noise > 0:
        base = seed if seed is not None else int(torch.randint(0, 2**62, ()).item())
        draws = [torch.randn(c, h, w, dtype=dtype, device=x.device,
                             generator=torch.Generator(device=x.device).manual_seed(base + i))
                 for i in range(n)]
        out = out + noise * torch.stack(draws) * r.to(dtype)
    return out.to(inputs.dtype)


class _Level:
    """One grid of the multigrid hierarchy, its operator and its work buffers.

    ``r`` (N, 1, H, W) is 1 at removed pixels; ``A v = (s v - W v) r``, computed as
    ``((12 s + 4) v - [1, 2, 1]^T [1, 2, 1] v) r / 12`` (``s`` the in-image weight sums).
    The buffers (N, C, H, W) are allocated once per solve: fresh megabyte-sized tensors in every
    iteration cost more than the arithmetic on the CPU (each one is new pages from the system).
    """

    def __init__(self, r: Tensor, channels: int) -> None:
        self.r = r
        s = _neighbors(torch.ones(r.shape[-2:], dtype=r.dtype, device=r.device))
        self.s = s
        self.inv = r / s
        self.diag = 12 * s + 4
        self.scale = r / 12
        self.neg_scale = -self.scale
        shape = (r.shape[0], channels, r.shape[-2], r.shape[-1])
        self.b = r.new_empty(shape)  # the right-hand side restricted from the finer grid
        self.e = r.new_empty(shape)  # the V-cycle's correction on this grid
        self.a = r.new_empty(shape)  # residuals and prolonged corrections
        self.t = r.new_empty(shape)  # _smooth's intermediate
        self.mid: Tensor | None = None  # restriction / prolongation's intermediate (set later)

    def apply(self, v: Tensor, out: Tensor) -> Tensor:
        """``A v``, into ``out``."""
        return _smooth(v, out, self.t).addcmul_(v, self.diag, value=-1).mul_(self.neg_scale)

    def residual(self, b: Tensor, v: Tensor) -> Tensor:
        """``b - A v``, into the buffer ``a``."""
        return _smooth(v, self.a, self.t).addcmul_(v, self.diag, value=-1).mul_(self.scale).add_(b)


_CHUNK = 2**19  # most values (images x channels x pixels) solved together
_DENSE = 64  # most pixels of the coarsest grid, solved by a dense inverse
_COARSE_SWEEPS = 50  # Jacobi sweeps on a coarsest grid too long to invert (a thin image)


def _hierarchy(r: Tensor, channels: int) -> tuple[list[_Level], Tensor | None]:
    """The grids and the inverses (N, P, P) of the coarsest operators (identity at kept pixels).

    Each grid has half the previous size; a coarse pixel is removed when its 2x2 block is.
    """
    levels = [_Level(r, channels)]
    while r.shape[-2] * r.shape[-1] > _DENSE and min(r.shape[-2:]) >= 4:
        hc, wc = r.shape[-2] // 2, r.shape[-1] // 2
        r = -F.max_pool2d(-r[..., :2 * hc, :2 * wc], 2)  # depth by size: batch-independent
        levels[-1].mid = r.new_empty((r.shape[0], channels, hc, 2 * wc))
        levels.append(_Level(r, channels))
    h, w = r.shape[-2:]
    if h * w > _DENSE:
        return levels, None
    eye = torch.eye(h * w, dtype=r.dtype, device=r.device).reshape(h * w, h, w)
    a = levels[-1].s.flatten()[:, None] * torch.eye(h * w, dtype=r.dtype, device=r.device) - \
        _neighbors(eye).reshape(h * w, h * w)
    m = r.flatten(1)  # (N, P)
    full = a * m[:, :, None] * m[:, None, :] + torch.diag_embed(1 - m)
    return levels, torch.linalg.inv(full) * m[:, :, None] * m[:, None, :]


def _halves(v: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Views of the even and the odd rows (``dim=-2``) or columns (``dim=-1``) of ``v``."""
    if dim == -2:
        return v[..., 0::2, :], v[..., 1::2, :]
    return v[..., 0::2], v[..., 1::2]


def _prolong(v: Tensor, out: Tensor, mid: Tensor) -> Tensor:
    """Bilinear doubling of (..., h, w) into ``out`` (..., H, W), zero past (..., 2h, 2w).

    Half-pixel centers, clamped at the border (``F.interpolate``'s ``align_corners=False``);
    ``mid`` (..., h, 2w) holds the first direction's result.

    In each direction fine ``2i`` is ``3/4`` of coarse ``i`` plus ``1/4`` of ``i - 1``, fine
    ``2i + 1`` is ``3/4`` of ``i`` plus ``1/4`` of ``i + 1`` (``i`` itself past the border).
    """
    h, w = v.shape[-2:]
    if out.shape[-2:] != (2 * h, 2 * w):
        out.zero_()
    for dim, dest in ((-1, mid), (-2, out[..., :2 * h, :2 * w])):
        k = v.shape[dim]
        lo, hi = _halves(dest, dim)  # strided views: fine 2i and 2i + 1
        torch.mul(v, 0.75, out=lo)
        lo.narrow(dim, 1, k - 1).add_(v.narrow(dim, 0, k - 1), alpha=0.25)
        lo.narrow(dim, 0, 1).add_(v.narrow(dim, 0, 1), alpha=0.25)
        torch.mul(v, 0.75, out=hi)
        hi.narrow(dim, 0, k - 1).add_(v.narrow(dim, 1, k - 1), alpha=0.25)
        hi.narrow(dim, k - 1, 1).add_(v.narrow(dim, k - 1, 1), alpha=0.25)
        v = dest
    return out


def _restrict(v: Tensor, out: Tensor, mid: Tensor) -> Tensor:
    """The transpose of :func:`_prolong`: (..., H, W) into ``out`` (..., h, w).

    ``mid`` (..., h, 2w) holds the first direction's result. In each direction coarse ``i`` is
    ``3/4`` of fine ``2i`` and ``2i + 1`` plus ``1/4`` of fine ``2i - 1`` and ``2i + 2`` (of
    ``2i``, ``2i + 1`` again past the border).
    """
    h, w = out.shape[-2:]
    v = v[..., :2 * h, :2 * w]
    for dim, dest in ((-2, mid), (-1, out)):
        k = dest.shape[dim]
        lo, hi = _halves(v, dim)
        torch.add(lo, hi, out=dest).mul_(0.75)
        dest.narrow(dim, 1, k - 1).add_(hi.narrow(dim, 0, k - 1), alpha=0.25)
        dest.narrow(dim, 0, 1).add_(lo.narrow(dim, 0, 1), alpha=0.25)
        dest.narrow(dim, 0, k - 1).add_(lo.narrow(dim, 1, k - 1), alpha=0.25)
        dest.narrow(dim, k - 1, 1).add_(hi.narrow(dim, k - 1, 1), alpha=0.25)
        v = dest
    return out


def _vcycle(levels: list[_Level], inverse: Tensor | None, k: int, b: Tensor) -> Tensor:
    """One V-cycle from zero on ``A_k e = b``: symmetric, so a valid CG preconditioner.

    Returns the buffer ``levels[k].e``: read it before the next V-cycle.
    """
    lv = levels[k]
    if k == len(levels) - 1 and inverse is not None:
        return torch.matmul(b.flatten(-2), inverse, out=lv.e.view(b.shape[:-2] + (-1,))).view(b.shape)
    e = torch.mul(b, lv.inv, out=lv.e)
    if k == len(levels) - 1:
        for _ in range(_COARSE_SWEEPS):
            e.addcmul_(lv.residual(b, e), lv.inv)
        return e
    coarse = levels[k + 1]
    assert lv.mid is not None
    rc = _restrict(lv.residual(b, e), coarse.b, lv.mid).mul_(coarse.r)
    ec = _vcycle(levels, inverse, k + 1, rc)
    e.addcmul_(_prolong(ec, lv.a, lv.mid), lv.r)
    return e.addcmul_(lv.residual(b, e), lv.inv)


def _impute(x: Tensor, r: Tensor, tol: float, max_iter: int | None) -> Tensor:
    """The solution ``u`` (zero at kept pixels) of the systems of (N, C, H, W) images.

    ``r`` (N, 1, H, W) is 1 at the removed pixels.
    """
    levels, inverse = _hierarchy(r, x.shape[1])
    b = _neighbors(x * (1 - r)) * r
    limit = max_iter if max_iter is not None else x.shape[-2] + x.shape[-1] + 50
    return _solve(levels, inverse, b, tol, limit)


def _solve(levels: list[_Level], inverse: Tensor | None, b: Tensor, tol: float,
           max_iter: int) -> Tensor:
    """Conjugate gradient on ``A u = b`` (``levels[0]``), preconditioned by a V-cycle, from 0."""
    tmp = torch.empty_like(b)

    def dot(a: Tensor, c: Tensor) -> Tensor:
        return torch.mul(a, c, out=tmp).sum(dim=(-2, -1), keepdim=True)

    def ratio(a: Tensor, c: Tensor) -> Tensor:
        return torch.where(c > 0, a / torch.where(c > 0, c, torch.ones_like(c)),
                           torch.zeros_like(c))

    fine = levels[0]
    bound = (tol * dot(b, b).sqrt()).clamp_min(torch.finfo(b.dtype).tiny)
    u = torch.zeros_like(b)
    res = b.clone()
    ap = torch.empty_like(b)
    p = _vcycle(levels, inverse, 0, res).clone()
    rz = dot(res, p)
    for _ in range(max_iter):
        active = dot(res, res).sqrt() > bound  # converged systems stay as they are, so each
        if not bool(active.any()):  # result is independent of the others in the batch
            break
        fine.apply(p, ap)
        alpha = ratio(rz, dot(p, ap)) * active
        u.addcmul_(alpha, p)
        res.addcmul_(alpha, ap, value=-1)
        z = _vcycle(levels, inverse, 0, res)
        rz_new = dot(res, z)
        p.mul_(ratio(rz_new, rz)).add_(z)
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
    if targets is None or clean_output is not None:
        indices = class_indices(targets, clean_forward(model, x, clean_output, output_fn))
        unchecked = False
    else:  # the classes are given: no clean pass; their range is checked on the first batch
        indices = parse_indices(targets, x.shape[0], x.device)  # type: ignore[assignment]
        unchecked = True
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
            out = model_scores(model, imputed, output_fn, "model(imputed inputs)", perturbed=True)
            if unchecked:
                indices, unchecked = checked_classes(targets, indices, int(out.shape[1])), False
            if score == "probability":
                curves[ids] = target_scores(out, indices[sample], softmax=True)
            else:
                curves[ids] = (out.argmax(1) == indices[sample].to(out.device)).float()
    curves = curves.reshape(b, s)
    fractions = torch.tensor(pct, dtype=torch.float64, device=x.device) / 100
    auc = torch.trapezoid(curves.double(), fractions, dim=1) if s > 1 else curves[:, 0].double()
    return RoadResult(auc.float(), curves, fractions.float(), order, order == "lerf")


def _cost(n: int, p: dict[str, Any]) -> int:
    # the clean pass reads the top class (targets=None) or is shared (clean_output): classes given
    # are range-checked on the first imputed batch instead
    clean = p.get("clean_output") is None and p.get("targets") is None
    return n * len(p["percentiles"]) + (n if clean else 0)


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
