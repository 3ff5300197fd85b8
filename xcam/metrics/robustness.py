"""Robustness metrics: does the map stay put when the input barely moves?"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._checks import check_inputs, check_int, check_number, make_generator
from ..errors import InputTypeError
from ._explain import explained_targets, explainer_images, explanation_maps
from ._forward import captum_chunks
from ._inputs import check_batch_size
from .base import metric

__all__ = ["max_sensitivity"]


def _sensitivity_cost(n: int, p: dict[str, Any]) -> int:
    # our clean explanation (targets), captum's clean one, and every perturbed copy
    return explainer_images(p.get("explainer"), n * (int(p["n_perturb_samples"]) + 2))


@metric("max_sensitivity", higher_is_better=False, family="robustness", cost=_sensitivity_cost,
        stochastic=True, label="Max-sensitivity",
        needs=frozenset({"explainer", "inputs", "targets"}))
def max_sensitivity(
    explainer: Callable[..., Any],
    inputs: Tensor,
    targets: object,
    n_perturb_samples: int = 10,
    radius: float = 0.02,
    batch_size: int = 64,
    seed: int | None = None,
) -> Tensor:
    """Max-sensitivity (Yeh et al., NeurIPS 2019), computed by ``captum.metrics.sensitivity_max``.

    ``max_{||d||_inf <= r} ||E(x + d) - E(x)|| / ||E(x)||`` (Frobenius norms; captum divides by
    1 where ``E(x)`` is 0), estimated with ``n_perturb_samples`` uniform perturbations
    ``d ~ U[-radius, radius]`` per input value, the same class explained on every copy.

    Args:
        explainer: an xcam explainer, or any callable ``f(inputs, targets)`` returning an
            :class:`~xcam.Explanation` or (B, H, W) maps. It runs with gradients enabled.
        inputs: (B, C, H, W).
        targets: class per sample; ``None`` takes the classes the explainer chose on the clean
            input (it must then return an Explanation).
        n_perturb_samples: perturbed copies per sample (default 10).
        radius: L-infinity radius of the perturbation, in the model's input space (default 0.02,
            as captum's ``perturb_radius``).
        batch_size: most perturbed images per explainer call.
        seed: seed of the perturbation generator.

    Returns:
        (B,) float32 >= 0. Lower is better.
    """
    from captum.metrics import sensitivity_max

    if not callable(explainer):
        raise InputTypeError(f"explainer must be callable, got {type(explainer).__name__}")
    model = getattr(explainer, "model", None)
    x = check_inputs(inputs, model=model if isinstance(model, torch.nn.Module) else None)
    n_perturb = check_int("n_perturb_samples", n_perturb_samples, 1)
    r = check_number("radius", radius, 0.0)
    batch_size = check_batch_size(batch_size)
    _, indices = explained_targets(explainer, x, targets)
    gen = make_generator(seed, x.device)

    def explain(batch: Tensor | tuple[Tensor, ...], target: Tensor) -> tuple[Tensor]:
        # captum passes the clean inputs as a tuple and iterates over what comes back
        batch = batch[0] if isinstance(batch, tuple) else batch
        if target.numel() == 1:  # captum does not expand a one-element target
            target = target.reshape(1).expand(batch.shape[0])
        return (explanation_maps(explainer, batch, target),)

    def perturb(batch: Tensor) -> Tensor:
        noise = torch.rand(batch.shape, generator=gen, device=batch.device, dtype=batch.dtype)
        return batch + (2 * noise - 1) * r

    scores = []
    for sl, max_examples in captum_chunks(x.shape[0], batch_size, n_perturb):
        scores.append(sensitivity_max(
            explain, x[sl], perturb_func=perturb, n_perturb_samples=n_perturb,
            max_examples_per_batch=max_examples, target=indices[sl],
        ).reshape(-1))
    return torch.cat(scores).float()
