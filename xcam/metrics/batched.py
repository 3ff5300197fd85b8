"""Several saliency maps, several perturbation metrics, shared forward passes.

Deletion, insertion, average drop and increase in confidence run the model on perturbed copies of
the inputs. :func:`evaluate_maps` builds the copies of every (metric, map) pair, lays them end to
end and runs them in forward passes of at most ``batch_size`` images, so that the passes are full
even when one map of one image would leave the last pass of each call half empty, and one clean
forward pass serves every pair. Which metrics can share is read from their metadata
(:attr:`xcam.metrics.Metric.perturbed`), never from their names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import eval_mode
from ..errors import InputError, InputTypeError
from ..explanation import Explanation
from ..outputs import OutputFn
from ..registry import METRICS
from ._forward import Perturbed, check_autocast, clean_forward, score_perturbed
from ._inputs import check_batch_size, check_inputs_and_maps, check_model, check_output_fn
from .base import Metric

__all__ = ["evaluate_maps", "shared_metrics"]


def shared_metrics() -> list[str]:
    """Names of the registered metrics that :func:`evaluate_maps` runs (``perturbed`` metadata)."""
    return [n for n in METRICS.names() if getattr(METRICS.get(n), "perturbed", None) is not None]


def evaluate_maps(
    model: Callable[[Tensor], Any],
    inputs: Tensor,
    maps: Mapping[str, Tensor | Explanation],
    targets: object = None,
    metrics: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("deletion", "insertion",
                                                                 "average_drop"),
    *,
    batch_size: int = 64,
    clean_output: Tensor | None = None,
    output: OutputFn | None = None,
    autocast: torch.dtype | None = None,
) -> dict[str, dict[str, Any]]:
    """Run perturbation metrics on several maps of the same images, in shared forward passes.

    Example:
        >>> maps = {k: e.maps for k, e in xcam.explain(model, x, ["gradcam", "layercam"]).items()}
        >>> out = evaluate_maps(model, x, maps, metrics={"deletion": {"steps": 50}, "average_drop": {}})
        >>> deletion_of = out["deletion"]
        >>> deletion_of["gradcam"].auc  # = deletion(model, x, maps["gradcam"], None, steps=50).auc

    Args:
        model: returns (B, classes) scores (an ``nn.Module`` runs in eval mode).
        inputs: (B, C, H, W) in the model's input space.
        maps: key (a method) -> (B, H, W) maps at input resolution, or its
            :class:`~xcam.explanation.Explanation` (whose ``targets`` then fill ``targets=None``,
            as a metric call does).
        targets: class per sample, as for each metric (None: top class on the clean input).
        metrics: names of metrics in :func:`shared_metrics`, or name -> settings (``steps``,
            ``baseline``, ``blur_sigma``, ...: each metric's own keyword arguments).
        batch_size: most images per forward pass, over all metrics and maps together.
        clean_output: the model's output on ``inputs``, if already computed (else one clean pass).
        output: ``f(model_output) -> (B, classes)`` (see :mod:`xcam.outputs`).
        autocast: ``torch.bfloat16`` / ``torch.float16``: the shared perturbed passes run under
            :func:`torch.autocast` (CUDA only; an :class:`~xcam.errors.InputError` elsewhere).

    Returns:
        ``result[metric][key]`` (a dict of dicts): what
        ``metric(model, inputs, maps[key], targets, **settings)``
        returns (a :class:`~xcam.metrics.CurveResult` or a (B,) tensor). The forward passes hold
        other rows than a per-map call's, so the results equal those calls up to the model's
        batch invariance (bit for bit where each row's output does not depend on its batch).

    Raises:
        InputError: a metric that does not share its passes, an empty ``maps``, a setting that
            is data (``batch_size``, ``clean_output``, ...).
    """
    model = check_model(model)
    batch_size = check_batch_size(batch_size)
    output_fn = check_output_fn(output)
    if not isinstance(maps, Mapping) or not maps:
        raise InputTypeError(
            f"maps must be a non-empty dict key -> (B, H, W) maps (or Explanation), got "
            f"{type(maps).__name__}{' (empty)' if isinstance(maps, Mapping) else ''}"
        )
    if isinstance(metrics, str):
        raise InputTypeError(f"metrics must be a list of names or a dict name -> settings, got "
                             f"the string {metrics!r}; e.g. metrics=[{metrics!r}]")
    settings = ({str(k): dict(v) for k, v in metrics.items()} if isinstance(metrics, Mapping)
                else {str(k): {} for k in metrics})
    chosen: dict[str, tuple[Metric[..., Any], dict[str, Any]]] = {}
    for name, kwargs in settings.items():
        fn = METRICS.get(name)
        if not isinstance(fn, Metric) or fn.perturbed is None:
            raise InputError(
                f"metric {name!r} does not share perturbed forward passes; evaluate_maps runs "
                f"{shared_metrics()} (call {name} once per map instead)"
            )
        clash = sorted(set(kwargs) & {"batch_size", "clean_output", "output", "model", "inputs",
                                      "maps", "targets", "autocast"})
        if clash:
            raise InputError(f"metrics[{name!r}] sets {clash}; pass them to evaluate_maps itself")
        chosen[fn.name] = (fn, kwargs)
    guard = eval_mode(model) if isinstance(model, nn.Module) else contextlib.nullcontext()
    with guard:
        x, _ = check_inputs_and_maps(inputs, _maps_of(next(iter(maps.values()))), model)
        dtype = check_autocast(autocast, x.device)
        clean = clean_forward(model, x, clean_output, output_fn)
        plans: list[tuple[str, str, Perturbed]] = []
        for name, (fn, kwargs) in chosen.items():
            for key, value in maps.items():
                t = targets
                if t is None and isinstance(value, Explanation) and value.targets is not None:
                    t = value.targets
                assert fn.perturbed is not None
                plan = fn.perturbed(model, inputs, _maps_of(value), t, batch_size=batch_size,
                                    clean_output=clean, output=output_fn, **kwargs)
                plans.append((name, key, plan))
        scores = score_perturbed(model, [p for _, _, p in plans], batch_size, x.device, output_fn,
                                 dtype)
    result: dict[str, dict[str, Any]] = {name: {} for name in chosen}
    for (name, key, plan), s in zip(plans, scores):
        result[name][key] = plan.finish(s)
    return result


def _maps_of(value: object) -> Tensor:
    if isinstance(value, Explanation):
        return value.maps
    if not isinstance(value, Tensor):
        raise InputTypeError(
            f"each value of maps must be a (B, H, W) tensor or an Explanation, got "
            f"{type(value).__name__}"
        )
    return value
