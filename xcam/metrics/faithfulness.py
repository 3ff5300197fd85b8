"""Faithfulness metrics: does the model's output change where the map says it matters?

Every metric here takes ``(model, inputs, maps, targets)``: a model returning (B, classes)
scores, the (B, C, H, W) inputs in the model's own input space, their (B, H, W) maps at input
resolution and the target classes (``None`` for the top class, an int, a sequence or a (B,)
LongTensor). Perturbed copies are built with tensor ops and run in forward passes of at most
``batch_size`` images under ``torch.no_grad()``. The clean forward pass is run once per call and
shared by every step; pass ``clean_output=model(inputs)`` to share it across metrics too.
The model runs in eval mode (its ``training`` flags are restored afterwards), and its output is
unwrapped by :func:`xcam.outputs.logits` (Hugging Face ``ModelOutput``, dicts with ``"logits"``
or ``"out"``, tuples and lists, Inception's namedtuples); ``output=`` (a callable
``f(model_output) -> (B, classes)``) replaces those rules. Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_int, check_number, make_generator
from ..errors import InputError, InputTypeError
from ..outputs import OutputFn
from ..postprocess import normalize as min_max
from ..targets import class_indices
from ._forward import (
    Perturbed,
    baseline_like,
    batched_scores,
    captum_chunks,
    captum_images,
    check_autocast,
    clean_forward,
    model_scores,
    replace_where,
    rows_of,
    score_perturbed,
    target_scores,
)
from ._inputs import check_batch_size, check_inputs_and_maps, check_model, check_output_fn
from .base import PerImage, metric
from .similarity import descending_rank, pearson

__all__ = [
    "CurveResult",
    "deletion",
    "insertion",
    "average_drop",
    "increase_in_confidence",
    "faithfulness_correlation",
    "infidelity",
    "gaussian_blur",
]


def _clean_cost(params: dict[str, Any]) -> int:
    return 1 if params.get("clean_output") is None else 0


@dataclass(frozen=True)
class CurveResult:
    """Result of :func:`deletion` and :func:`insertion`.

    Attributes:
        auc: (B,) float32 area under each curve (trapezoid rule over ``fractions``).
        curves: (B, steps + 1) float32 softmax probability of the target after each step; column
            0 is before any pixel moved, column ``steps`` after all of them did.
        fractions: (steps + 1,) float32 share of pixels moved at each step, from 0 to 1.
        kind: ``"deletion"`` or ``"insertion"``.
        higher_is_better: False for deletion, True for insertion.
    """

    auc: Tensor
    curves: Tensor
    fractions: Tensor
    kind: str
    higher_is_better: bool

    def __len__(self) -> int:
        return int(self.auc.shape[0])

    def plot(self, ax: Any = None, label: str | None = None, samples: bool = False) -> Any:
        """Plot the mean curve (see :func:`xcam.viz.plot_curves`); returns the axes."""
        from ..viz import plot_curves

        return plot_curves({label or self.kind: self}, ax=ax, samples=samples)


def _curve_per_image(result: CurveResult) -> PerImage:
    """Deletion / insertion: the AUC per image, with its curve."""
    return PerImage(scores=result.auc, curves=result.curves)


def _step_counts(n_pixels: int, steps: int, device: torch.device) -> Tensor:
    """(steps + 1,) pixels moved after each step: ``floor(k * N / steps)``, from 0 to N."""
    k = torch.arange(steps + 1, dtype=torch.long, device=device)
    return torch.div(k * n_pixels, steps, rounding_mode="floor")


def _curve_plan(
    start: Tensor,
    end: float | Tensor,
    rank: Tensor,
    counts: Tensor,
    indices: Tensor,
    finish: Callable[[Tensor], Any],
) -> Perturbed:
    """The partly moved images: ``end``'s value at the ``counts[k]`` most relevant pixels.

    ``start``'s elsewhere, for every sample and each of the S counts; ``finish`` receives the
    (B, S) softmax probabilities of the target.
    """
    b = start.shape[0]
    s = counts.numel()

    def make_batch(ids: Tensor) -> Tensor:
        sample, step = ids // s, ids % s
        moved = rank[sample] < counts[step][:, None, None]  # (r, H, W)
        return replace_where(moved, start, sample, end)

    return Perturbed(b * s, make_batch, lambda ids: indices[ids // s], True,
                     lambda scores: finish(scores.reshape(b, s)))


def _run_one(model: Callable[[Tensor], Any], plan: Perturbed, batch_size: int, device: torch.device,
             output_fn: OutputFn | None, autocast: object = None) -> Any:
    """The result of one metric call: its plan's rows scored in passes of ``batch_size``."""
    dtype = check_autocast(autocast, device)
    return plan.finish(score_perturbed(model, [plan], batch_size, device, output_fn, dtype)[0])


def _auc(curves: Tensor, counts: Tensor, n_pixels: int) -> tuple[Tensor, Tensor]:
    fractions = counts.double() / n_pixels
    auc = torch.trapezoid(curves.double(), fractions, dim=1)
    return auc.float(), fractions.float()


def _curve_cost(n: int, p: dict[str, Any]) -> int:
    return n * (int(p["steps"]) + _clean_cost(p))


@metric("deletion", higher_is_better=False, family="faithfulness", cost=_curve_cost,
        perturbed=lambda *a, **k: _deletion_plan(*a, **k),
        label="Deletion AUC", curves=True, per_image=_curve_per_image,
        curve_xlabel="fraction of pixels deleted", curve_ylabel="probability of the target class")
def deletion(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    steps: int = 100,
    baseline: float | Tensor = 0.0,
    batch_size: int = 64,
    *,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
    autocast: torch.dtype | None = None,
) -> CurveResult:
    """Deletion curve and AUC (Petsiuk et al., "RISE", BMVC 2018). Lower is better.

    Pixels are ordered by the map, descending, ties by raster index. After step k of ``steps``
    the first ``n_k = floor(k * N / steps)`` pixels (N = H * W, all channels) hold the baseline;
    the curve is the softmax probability of the target class after each step, from the clean
    image (k = 0, the shared clean forward pass) to the all-baseline image (k = steps). The AUC
    is the trapezoid rule over the fraction of pixels deleted, ``n_k / N``, in [0, 1].

    Args:
        model: returns (B, classes) scores (logits); the softmax is taken here.
        inputs: (B, C, H, W) in the model's input space.
        maps: (B, H, W) at input resolution.
        targets: class per sample: None (top class on the clean input), int, sequence, LongTensor.
        steps: number of equal steps (default 100).
        baseline: value deleted pixels take, in the model's input space: a number (default 0) or
            a tensor broadcastable to the inputs (e.g. per-channel (C, 1, 1)).
        batch_size: most images per forward pass.
        clean_output: the model's output on ``inputs``, to share one clean pass among metrics.
        output: a callable ``f(model_output) -> (B, classes)`` scores that replaces
            :func:`xcam.outputs.logits`'s rules (for models whose output those rules miss).
        autocast: ``torch.bfloat16`` or ``torch.float16`` runs the perturbed forward passes under
            :func:`torch.autocast` (CUDA only; an :class:`~xcam.errors.InputError` elsewhere); the
            clean pass and the softmax stay in float32. Faster on tensor cores, not exact.

    Returns:
        :class:`CurveResult` with ``.auc`` (B,) and ``.curves`` (B, steps + 1).
    """
    plan = _deletion_plan(model, inputs, maps, targets, steps, baseline, batch_size,
                          clean_output=clean_output, output=output)
    return _run_one(model, plan, batch_size, inputs.device, output, autocast)  # type: ignore[no-any-return]


def _deletion_plan(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    steps: int = 100,
    baseline: float | Tensor = 0.0,
    batch_size: int = 64,
    *,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
) -> Perturbed:
    """The perturbed images of :func:`deletion` (its arguments) and how its result is read."""
    model = check_model(model)
    x, m = check_inputs_and_maps(inputs, maps, model)
    steps = check_int("steps", steps, 1)
    check_batch_size(batch_size)
    base = baseline_like(baseline, x)
    output_fn = check_output_fn(output)
    clean = clean_forward(model, x, clean_output, output_fn)
    indices = class_indices(targets, clean)
    n_pixels = m.shape[1] * m.shape[2]
    counts = _step_counts(n_pixels, steps, x.device)
    rank = descending_rank(m).int()

    def finish(perturbed: Tensor) -> CurveResult:
        curves = torch.cat([target_scores(clean, indices, softmax=True)[:, None], perturbed], dim=1)
        auc, fractions = _auc(curves, counts, n_pixels)
        return CurveResult(auc, curves, fractions, "deletion", False)

    return _curve_plan(x, base, rank, counts[1:].int(), indices, finish)


def gaussian_blur(inputs: Tensor, kernel_size: int = 11, sigma: float = 5.0) -> Tensor:
    """Per-channel Gaussian blur of a (B, C, H, W) batch with replicate padding.

    The separable kernel is ``exp(-t^2 / (2 sigma^2))``, ``t = -(k-1)/2 .. (k-1)/2``, normalized
    to sum 1. Replicate padding keeps a constant image constant (RISE pads with zeros, which
    darkens the border).
    """
    k = check_int("kernel_size", kernel_size, 1)
    if k % 2 == 0:
        raise InputError(f"kernel_size must be odd, got {k}")
    sig = check_number("sigma", sigma, 0.0)
    if sig == 0 or k == 1:
        return inputs.clone()
    c = inputs.shape[1]
    t = torch.arange(k, dtype=torch.float64, device=inputs.device) - (k - 1) / 2
    g = torch.exp(-0.5 * (t / sig) ** 2)
    g = (g / g.sum()).to(inputs.dtype)
    pad = k // 2
    out = F.pad(inputs, (pad, pad, pad, pad), mode="replicate")
    out = F.conv2d(out, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(out, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


@metric("insertion", higher_is_better=True, family="faithfulness", cost=_curve_cost,
        perturbed=lambda *a, **k: _insertion_plan(*a, **k),
        label="Insertion AUC", curves=True, per_image=_curve_per_image,
        curve_xlabel="fraction of pixels inserted", curve_ylabel="probability of the target class")
def insertion(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    steps: int = 100,
    batch_size: int = 64,
    *,
    blur_kernel_size: int = 11,
    blur_sigma: float = 5.0,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
    autocast: torch.dtype | None = None,
) -> CurveResult:
    """Insertion curve and AUC (Petsiuk et al., "RISE", BMVC 2018). Higher is better.

    Starts from a blurred copy of the image (:func:`gaussian_blur`, kernel 11, sigma 5) and puts
    the original pixels back (all channels) in the map's order, descending, ties by raster
    index: after step k the first ``floor(k * N / steps)`` pixels are original. The curve is the
    softmax probability of the target class from the blurred image (k = 0) to the original
    (k = steps, the shared clean forward pass); AUC by the trapezoid rule over the fraction of
    pixels inserted, in [0, 1].

    Args:
        model: as in :func:`deletion`.
        inputs: as in :func:`deletion`.
        maps: as in :func:`deletion`.
        targets: as in :func:`deletion`.
        steps: as in :func:`deletion`.
        batch_size: as in :func:`deletion`.
        clean_output: as in :func:`deletion`.
        output: as in :func:`deletion`.
        autocast: as in :func:`deletion`.
        blur_kernel_size: side of the Gaussian kernel (odd, default 11).
        blur_sigma: its standard deviation in pixels (default 5).

    Returns:
        :class:`CurveResult` with ``.auc`` (B,) and ``.curves`` (B, steps + 1).
    """
    plan = _insertion_plan(model, inputs, maps, targets, steps, batch_size,
                           blur_kernel_size=blur_kernel_size, blur_sigma=blur_sigma,
                           clean_output=clean_output, output=output)
    return _run_one(model, plan, batch_size, inputs.device, output, autocast)  # type: ignore[no-any-return]


def _insertion_plan(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    steps: int = 100,
    batch_size: int = 64,
    *,
    blur_kernel_size: int = 11,
    blur_sigma: float = 5.0,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
) -> Perturbed:
    """The perturbed images of :func:`insertion` (its arguments) and how its result is read."""
    model = check_model(model)
    x, m = check_inputs_and_maps(inputs, maps, model)
    steps = check_int("steps", steps, 1)
    check_batch_size(batch_size)
    blurred = gaussian_blur(x, blur_kernel_size, blur_sigma)
    output_fn = check_output_fn(output)
    clean = clean_forward(model, x, clean_output, output_fn)
    indices = class_indices(targets, clean)
    n_pixels = m.shape[1] * m.shape[2]
    counts = _step_counts(n_pixels, steps, x.device)
    rank = descending_rank(m).int()

    def finish(perturbed: Tensor) -> CurveResult:
        curves = torch.cat([perturbed, target_scores(clean, indices, softmax=True)[:, None]], dim=1)
        auc, fractions = _auc(curves, counts, n_pixels)
        return CurveResult(auc, curves, fractions, "insertion", True)

    return _curve_plan(blurred, x, rank, counts[:-1].int(), indices, finish)


def _masked_plan(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    baseline: float | Tensor = 0.0,
    batch_size: int = 64,
    *,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
    finish: Callable[[Tensor, Tensor], Tensor],
) -> Perturbed:
    """``m * x + (1 - m) * baseline``; ``finish(Y, O)`` gets the target probability on ``x`` and on it.

    With ``finish`` bound, the perturbed images of :func:`average_drop` or
    :func:`increase_in_confidence` (their arguments) and how their result is read.
    """
    model = check_model(model)
    x, m = check_inputs_and_maps(inputs, maps, model)
    check_batch_size(batch_size)
    base = baseline_like(baseline, x)
    output_fn = check_output_fn(output)
    clean = clean_forward(model, x, clean_output, output_fn)
    indices = class_indices(targets, clean)
    weight = min_max(m)[:, None].to(x.dtype)

    def make_batch(ids: Tensor) -> Tensor:
        return weight[ids] * x[ids] + (1 - weight[ids]) * rows_of(base, ids)

    y = target_scores(clean, indices, softmax=True)
    return Perturbed(x.shape[0], make_batch, lambda ids: indices[ids], True,
                     lambda o: finish(y, o))


def _drop(y: Tensor, o: Tensor) -> Tensor:
    drop = (y - o).clamp(min=0) / torch.where(y > 0, y, torch.ones_like(y))
    return torch.where(y > 0, drop, torch.full_like(drop, float("nan")))


def _increase(y: Tensor, o: Tensor) -> Tensor:
    return (o > y).float()


_average_drop_plan = functools.partial(_masked_plan, finish=_drop)
_increase_plan = functools.partial(_masked_plan, finish=_increase)


def _masked_cost(n: int, p: dict[str, Any]) -> int:
    return n * (1 + _clean_cost(p))


@metric("average_drop", higher_is_better=False, family="faithfulness", cost=_masked_cost,
        perturbed=_average_drop_plan,
        label="Average drop (%)", unit="%")
def average_drop(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    baseline: float | Tensor = 0.0,
    batch_size: int = 64,
    *,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
    autocast: torch.dtype | None = None,
) -> Tensor:
    """Drop in confidence per sample (Chattopadhay et al., "Grad-CAM++", WACV 2018).

    ``Y`` is the softmax probability of the target on ``x``; ``O`` the same on
    ``m * x + (1 - m) * baseline`` with ``m`` the min-max normalized map. The per-sample score is
    the relative drop ``max(0, Y - O) / Y`` in [0, 1]; the paper's *average drop* is
    ``100 * mean`` of it (a percentage). Lower is better.

    Args:
        model: as in :func:`deletion`.
        inputs: as in :func:`deletion`.
        maps: as in :func:`deletion`.
        targets: as in :func:`deletion`.
        batch_size: as in :func:`deletion`.
        clean_output: as in :func:`deletion`.
        output: as in :func:`deletion`.
        autocast: as in :func:`deletion`.
        baseline: what ``1 - m`` blends towards, in the model's input space (default 0).

    Returns:
        (B,) float32 in [0, 1]; NaN where ``Y`` is exactly 0 (the relative drop is undefined).
    """
    plan = _average_drop_plan(model, inputs, maps, targets, baseline, batch_size,
                              clean_output=clean_output, output=output)
    return _run_one(model, plan, batch_size, inputs.device, output, autocast)  # type: ignore[no-any-return]


@metric("increase_in_confidence", higher_is_better=True, family="faithfulness",
        cost=_masked_cost, perturbed=_increase_plan, label="Increase in confidence (%)", unit="%")
def increase_in_confidence(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    baseline: float | Tensor = 0.0,
    batch_size: int = 64,
    *,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
    autocast: torch.dtype | None = None,
) -> Tensor:
    """Increase in confidence per sample (Chattopadhay et al., "Grad-CAM++", WACV 2018).

    1.0 where the explanation map alone raises the target's softmax probability, ``O > Y``
    (``Y``, ``O`` as in :func:`average_drop`), else 0.0; the paper reports ``100 * mean``.
    Higher is better.

    Returns:
        (B,) float32 of 0.0 / 1.0.
    """
    plan = _increase_plan(model, inputs, maps, targets, baseline, batch_size,
                          clean_output=clean_output, output=output)
    return _run_one(model, plan, batch_size, inputs.device, output, autocast)  # type: ignore[no-any-return]


def _correlation_cost(n: int, p: dict[str, Any]) -> int:
    return n * (int(p["n"]) + _clean_cost(p))


@metric("faithfulness_correlation", higher_is_better=True, family="faithfulness",
        cost=_correlation_cost, stochastic=True, label="Faithfulness correlation")
def faithfulness_correlation(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    n: int = 100,
    subset: int = 224,
    seed: int | None = None,
    baseline: float | Tensor = 0.0,
    batch_size: int = 64,
    *,
    softmax: bool = False,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
) -> Tensor:
    """Faithfulness correlation (Bhatt et al., IJCAI 2020).

    "Evaluating and aggregating feature-based model explanations".

    For ``n`` random subsets S of ``subset`` pixels (drawn without replacement, independently
    per sample), the Pearson correlation over S between the map's sum ``sum_{p in S} M(p)`` and
    the drop of the target score ``f(x) - f(x with S set to the baseline)`` (all channels).

    Args:
        model: as in :func:`deletion`.
        inputs: as in :func:`deletion`.
        maps: as in :func:`deletion`.
        targets: as in :func:`deletion`.
        batch_size: as in :func:`deletion`.
        clean_output: as in :func:`deletion`.
        output: as in :func:`deletion`.
        n: number of random subsets per sample (default 100).
        subset: pixels per subset (default 224).
        seed: seed of the subset generator; ``None`` draws a fresh one from torch's global RNG.
            Subsets are drawn one sample at a time, so results do not depend on ``batch_size``.
        baseline: value of the removed pixels (default 0, in the model's input space).
        softmax: score the softmax probability instead of the raw output (logit, the default).

    Returns:
        (B,) float32 in [-1, 1]; NaN where the map sums or the drops do not vary over the subsets
        (a constant map, or a model blind to the subsets).
    """
    model = check_model(model)
    x, m = check_inputs_and_maps(inputs, maps, model)
    n = check_int("n", n, 2)
    subset = check_int("subset", subset, 1)
    batch_size = check_batch_size(batch_size)
    if not isinstance(softmax, bool):
        raise InputTypeError(f"softmax must be a bool, got {type(softmax).__name__}")
    b, _, h, w = x.shape
    if subset > h * w:
        raise InputError(
            f"subset={subset} is larger than the {h}x{w} = {h * w} pixels of an image; pass "
            f"subset <= {h * w}"
        )
    base = baseline_like(baseline, x)
    output_fn = check_output_fn(output)
    clean = clean_forward(model, x, clean_output, output_fn)
    indices = class_indices(targets, clean)
    gen = make_generator(seed, x.device)
    chosen = torch.stack([
        torch.rand(n, h * w, generator=gen, device=x.device).topk(subset, dim=1).indices
        for _ in range(b)
    ])  # (B, n, subset): one draw per sample, independent of batch_size
    flat_maps = m.reshape(b, -1)
    attributed = flat_maps.double().gather(1, chosen.reshape(b, -1)).reshape(b, n, subset).sum(-1)

    def make_batch(ids: Tensor) -> Tensor:
        sample, draw = ids // n, ids % n
        removed = torch.zeros(ids.numel(), h * w, dtype=torch.bool, device=x.device)
        removed.scatter_(1, chosen[sample, draw], True)
        return replace_where(removed.view(-1, h, w), x, sample, base)

    perturbed = batched_scores(model, make_batch, b * n, lambda ids: ids // n, indices,
                               batch_size, softmax=softmax, device=x.device,
                               output_fn=output_fn).reshape(b, n)
    drop = target_scores(clean, indices, softmax)[:, None].double() - perturbed.double()
    return pearson(attributed, drop)


def _infidelity_cost(n: int, p: dict[str, Any]) -> int:
    return n + captum_images(n, int(p["batch_size"]), int(p["n_perturb_samples"]))


@metric("infidelity", higher_is_better=False, family="faithfulness", cost=_infidelity_cost,
        stochastic=True, label="Infidelity")
def infidelity(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Tensor,
    targets: object,
    n_perturb_samples: int = 10,
    noise_std: float = 0.1,
    batch_size: int = 64,
    seed: int | None = None,
    *,
    normalize: bool = False,
    softmax: bool = False,
    output: OutputFn | None = None,
) -> Tensor:
    """Infidelity (Yeh et al., NeurIPS 2019), computed by ``captum.metrics.infidelity``.

    "On the (in)fidelity and sensitivity of explanations".

    ``INFD = E_I[(I^T M - (f(x) - f(x - I)))^2]`` with per-pixel Gaussian perturbations
    ``I ~ N(0, noise_std^2)`` shared by all channels of a pixel, so that ``I^T M`` is
    ``sum_p I(p) M(p)`` over pixels (the map is spread as ``M / C`` over the C channels for
    captum). ``f`` is the target's raw output (or its softmax probability with ``softmax=True``).

    Args:
        model: as in :func:`deletion`.
        inputs: as in :func:`deletion`.
        maps: as in :func:`deletion`.
        targets: as in :func:`deletion`.
        output: as in :func:`deletion`.
        n_perturb_samples: perturbations per sample (default 10).
        noise_std: standard deviation of the perturbation, in the model's input space.
        batch_size: most perturbed images per forward pass (captum's
            ``max_examples_per_batch``; at least one per sample of a chunk).
        seed: seed of the perturbation generator (``None``: fresh from torch's global RNG).
        normalize: captum's ``normalize`` (scale the map by the best factor beta first).
        softmax: score the softmax probability instead of the raw output.

    Returns:
        (B,) float32, >= 0. Lower is better.
    """
    from captum.metrics import infidelity as captum_infidelity

    model = check_model(model)
    x, m = check_inputs_and_maps(inputs, maps, model)
    n_perturb = check_int("n_perturb_samples", n_perturb_samples, 1)
    std = check_number("noise_std", noise_std, 0.0)
    batch_size = check_batch_size(batch_size)
    output_fn = check_output_fn(output)
    indices = class_indices(targets, clean_forward(model, x, None, output_fn))
    gen = make_generator(seed, x.device)
    b, c, h, w = x.shape
    attributions = (m[:, None] / c).expand(b, c, h, w).to(x.dtype)

    def forward(batch: Tensor) -> Tensor:
        out = model_scores(model, batch, output_fn, "model(perturbed inputs)").float()
        return torch.softmax(out, dim=1) if softmax else out

    def perturb(batch: Tensor) -> tuple[Tensor, Tensor]:
        noise = torch.randn(batch.shape[0], 1, h, w, generator=gen, device=batch.device,
                            dtype=batch.dtype) * std
        noise = noise.expand_as(batch)
        return noise, batch - noise

    scores = []
    for sl, max_examples in captum_chunks(b, batch_size, n_perturb):
        scores.append(captum_infidelity(
            forward, perturb, x[sl], attributions[sl], target=indices[sl],
            n_perturb_samples=n_perturb, max_examples_per_batch=max_examples,
            normalize=normalize,
        ).reshape(-1))
    return torch.cat(scores).float()
