"""Smooth MPRT and efficient MPRT (Hedström et al., 2024): model-randomization tests, repaired.

Hedström, Weber, Lapuschkin & Höhne, "A Fresh Look at Sanity Checks for Saliency Maps"
(xAI 2024; "Sanity Checks Revisited", 2023). Two fixes to the model parameter randomization test
(:func:`xcam.metrics.model_parameter_randomization`):

- **smooth MPRT** (sMPRT) removes the noise of the explanations before comparing them: each map is
  the mean of the maps of ``N`` noisy copies of the input, and the layers are randomized
  bottom-up (input side first), so that the comparison is not dominated by shattered gradients;
- **efficient MPRT** (eMPRT) compares no maps at all: it reports how much the explanation's
  complexity (the entropy of its histogram) rises from the trained to the fully randomized model.

Both randomize a deep copy of the model (the caller's model is untouched), re-initializing the
parametrized modules in forward order, cumulatively, each with a seed (``seed + j`` for the
``j``-th, as :func:`~xcam.metrics.model_parameter_randomization` does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_number, check_positive_int, make_generator
from ..outputs import OutputFn
from ._explain import explainer_images, explanation_maps
from .base import PerImage, metric
from .sanity import randomized_layers, reinitialize, start_cascade
from .similarity import spearman as _spearman

__all__ = ["SmoothMPRTResult", "smooth_mprt", "efficient_mprt", "histogram_entropy"]


@dataclass(frozen=True)
class SmoothMPRTResult:
    """Result of :func:`smooth_mprt`.

    Attributes:
        layers: module names in randomization order (input side first); column j of
            ``spearman`` is the model with ``layers[: j + 1]`` re-initialized.
        spearman: (B, L) float32 Spearman rank correlation between the denoised map of the
            trained model and that of each randomized one; NaN where either map is constant.
    """

    layers: tuple[str, ...]
    spearman: Tensor

    @property
    def last(self) -> Tensor:
        """(B,) the correlation with every layer randomized (Quantus' ``return_last_correlation``)."""
        return self.spearman[:, -1]

    @property
    def average(self) -> Tensor:
        """(B,) the mean correlation over the layers (Quantus' ``return_average_correlation``)."""
        return torch.nanmean(self.spearman, dim=1)

    def __len__(self) -> int:
        return int(self.spearman.shape[0])


def _bottom_up(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """``layers`` (default every parametrized module) in forward (registration) order: input side first."""
    position = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return sorted(randomized_layers(model, layers), key=lambda name: position[name])


def _smooth_maps(explain: Callable[..., Any], x: Tensor, indices: Tensor, n_samples: int,
                 noise_level: float, seed: int, batch_size: int, absolute: bool) -> Tensor:
    """``1/N sum_n |e(x + eps_n)|`` with ``eps_n ~ N(0, (noise_level (max x - min x))^2)``.

    The last of the ``N`` copies is the clean input (``eps_N = 0``), as in the paper's code, so
    that ``N = 1`` is the plain explanation. The noise is drawn on the input's device from a
    generator seeded with ``seed`` (the same noise for the trained and every randomized model).
    """
    b = int(x.shape[0])
    spread = (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1)).reshape(b, *[1] * (x.dim() - 1))
    gen = make_generator(seed, x.device)
    noise = torch.randn((n_samples - 1, *x.shape), generator=gen, device=x.device, dtype=x.dtype)
    copies = torch.cat([x[None] + noise * (noise_level * spread)[None], x[None]]).flatten(0, 1)
    rows = indices.repeat(n_samples)  # copy-major: row r is sample r % B
    total: Tensor | None = None
    for start in range(0, int(copies.shape[0]), batch_size):
        maps = explanation_maps(explain, copies[start:start + batch_size], rows[start:start + batch_size])
        maps = maps.abs() if absolute else maps
        part = maps.double()
        total = part if total is None else torch.cat([total, part])
    assert total is not None
    return total.reshape(n_samples, b, *total.shape[1:]).mean(dim=0).float()


def _smooth_cost(n: int, p: dict[str, Any]) -> int:
    model = p.get("model")
    n_layers = len(_bottom_up(model, p.get("layers"))) if isinstance(model, nn.Module) else 1
    copies = explainer_images(p.get("explainer"), n * int(p.get("n_samples", 50)))
    return n + copies * (n_layers + 1)


def _smooth_per_image(result: SmoothMPRTResult) -> PerImage:
    details = {"layers": list(result.layers),
               "spearman": [float(v) for v in torch.nanmean(result.spearman.double(), dim=0).tolist()]}
    return PerImage(scores=result.last, details=details)


@metric("smooth_mprt", higher_is_better=False, family="sanity", cost=_smooth_cost,
        stochastic=True, label="Smooth MPRT Spearman (all layers)", scope="dataset",
        sample_only=True, per_image=_smooth_per_image)
def smooth_mprt(
    model: nn.Module,
    explainer: str | Callable[..., Any],
    inputs: Tensor,
    targets: object,
    layers: Sequence[str] | None = None,
    n_samples: int = 50,
    noise_level: float = 0.1,
    seed: int | None = None,
    batch_size: int = 64,
    *,
    absolute: bool = True,
    explainer_kwargs: dict[str, Any] | None = None,
    output: OutputFn | None = None,
) -> SmoothMPRTResult:
    """Smooth MPRT (Hedström et al., 2024, sec. 4.1): MPRT on denoised explanations.

    With ``e_f(x)`` the map of model ``f`` and ``f_j`` the model with its first ``j`` layers
    (input side first) re-initialized::

        ē_f(x) = 1/N * sum_{n=1}^{N} | e_f(x + eps_n) |,   eps_n ~ N(0, σ^2),  σ = noise_level (max x - min x)
        score_j = Spearman( ē_f(x), ē_{f_j}(x) )

    (``eps_N = 0``: the clean input is one of the ``N`` copies). A method that passes has low
    correlations, lowest with every layer randomized (``result.last``, the per-image score).
    This is Quantus' ``SmoothMPRT`` with ``layer_order="bottom_up"`` (its default), ``abs=True``
    and a Spearman similarity (its normalization divides each map by a positive number, which a
    rank correlation does not see); the noise and the re-initialization draw from torch seeded
    generators instead of numpy's and torch's global ones.

    Args:
        model: the trained model.
        explainer: a registered name, an xcam explainer (rebuilt on the randomized copy) or a
            factory ``model -> explainer`` (see :func:`~xcam.metrics.model_parameter_randomization`).
        inputs: (B, C, H, W).
        targets: class per sample (None: the trained model's top class, kept for every copy).
        layers: module names to randomize (a named block as a whole), taken input side first
            (in the model's registration order, whatever order they are given in); default every
            parametrized module.
        n_samples: ``N``, noisy copies per input, the clean one included (default 50, the paper's).
        noise_level: σ as a fraction of each input's value range (default 0.1, the paper's).
        seed: seeds the noise (the same for every model) and the re-initialization (layer ``j``
            with ``seed + j``).
        batch_size: most images per explainer call.
        absolute: average ``|e|`` (default, the paper's) or the signed maps.
        explainer_kwargs: constructor arguments when ``explainer`` is a name.
        output: reads the class scores of the clean pass that picks the classes.

    Returns:
        :class:`SmoothMPRTResult` with the (B, L) correlations.
    """
    n_samples = check_positive_int("n_samples", n_samples)
    noise_level = check_number("noise_level", noise_level, minimum=0.0)
    batch_size = check_positive_int("batch_size", batch_size)
    c = start_cascade(model, explainer, inputs, targets, lambda m: _bottom_up(m, layers), seed,
                      explainer_kwargs, output)

    def denoised() -> Tensor:
        return _smooth_maps(c.explain, c.x, c.indices, n_samples, noise_level, c.base_seed, batch_size,
                            absolute)

    original = denoised()
    rho = []
    for j, name in enumerate(c.names):
        reinitialize(c.modules[name], c.base_seed + j)
        rho.append(_spearman(original, denoised()))
    return SmoothMPRTResult(tuple(c.names), torch.stack(rho, dim=1).float())


def histogram_entropy(maps: Tensor, n_bins: int = 100) -> Tensor:
    """Discrete entropy of each map's histogram: ``-sum_k p_k log p_k`` (nats), (B, H, W) -> (B,).

    ``n_bins`` equal-width bins over each map's own [min, max] (``numpy.histogram(a, bins=n_bins)``:
    the last bin closed, a constant map in one bin, entropy 0); ``p_k`` the share of the pixels in
    bin ``k``. Quantus' ``discrete_entropy``.
    """
    n_bins = check_positive_int("n_bins", n_bins)
    flat = maps.detach().reshape(maps.shape[0], -1).double()
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    span = hi - lo
    width = torch.where(span > 0, span, torch.ones_like(span)) / n_bins
    idx = ((flat - lo) / width).floor().clamp(0, n_bins - 1).long()
    counts = torch.zeros(flat.shape[0], n_bins, dtype=torch.float64, device=flat.device)
    counts.scatter_add_(1, idx, torch.ones_like(flat))
    p = counts / counts.sum(dim=1, keepdim=True)
    return -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(dim=1)


def _efficient_cost(n: int, p: dict[str, Any]) -> int:
    return n + explainer_images(p.get("explainer"), n) * 2


@metric("efficient_mprt", higher_is_better=True, family="sanity", cost=_efficient_cost,
        stochastic=True, label="Efficient MPRT (entropy rise)", scope="dataset", sample_only=True)
def efficient_mprt(
    model: nn.Module,
    explainer: str | Callable[..., Any],
    inputs: Tensor,
    targets: object,
    layers: Sequence[str] | None = None,
    seed: int | None = None,
    n_bins: int = 100,
    *,
    explainer_kwargs: dict[str, Any] | None = None,
    output: OutputFn | None = None,
) -> Tensor:
    """Efficient MPRT (Hedström et al., 2024, sec. 4.2): the rise in explanation complexity.

    With ``H(e)`` the discrete entropy of the histogram of map ``e`` (:func:`histogram_entropy`)
    and ``f_L`` the model with every layer re-initialized (bottom-up, cumulatively)::

        eMPRT = ( H(e_{f_L}(x)) - H(e_f(x)) ) / H(e_f(x))

    per sample: the relative rise of the complexity. An explanation that depends on the learned
    parameters becomes noisier when they are destroyed, so higher is better. Quantus'
    ``EfficientMPRT`` with its defaults (``skip_layers=True``, ``abs=False``, ``normalise=False``,
    ``discrete_entropy`` with 100 bins); the re-initialization draws from a seeded torch generator.

    Args:
        model: the trained model.
        explainer: a registered name, an xcam explainer or a factory (as for :func:`smooth_mprt`).
        inputs: (B, C, H, W).
        targets: class per sample (None: the trained model's top class).
        layers: module names to randomize (default every parametrized module); all of them are
            re-initialized, so only the set matters.
        explainer_kwargs: constructor arguments when ``explainer`` is a name.
        output: reads the class scores of the clean pass that picks the classes.
        seed: seeds the re-initialization (layer ``j`` with ``seed + j``).
        n_bins: histogram bins (default 100).

    Returns:
        (B,) float32 relative rise; NaN where the trained model's map has entropy 0 (constant).
    """
    c = start_cascade(model, explainer, inputs, targets, lambda m: _bottom_up(m, layers), seed,
                      explainer_kwargs, output)
    before = histogram_entropy(explanation_maps(c.explain, c.x, c.indices), n_bins)
    for j, name in enumerate(c.names):
        reinitialize(c.modules[name], c.base_seed + j)
    after = histogram_entropy(explanation_maps(c.explain, c.x, c.indices), n_bins)
    rise = (after - before) / torch.where(before > 0, before, torch.full_like(before, float("nan")))
    return rise.float()
