"""Metrics: per-sample scores that tell how good a map is, as pinned in ``specs/metrics.md``.

Every metric is a :class:`Metric`: call it like a function; it also carries its metadata (label,
unit, direction ``higher_is_better``, what it ``needs``, its ``scope``, ``family``) and, before it
runs, its cost (``forward_passes(n_images, **kwargs)``: images it will run through the model).
All are registered: ``xcam.list_metrics()``. Every module of this package is imported here, so a
new metric is one new file whose ``@metric`` function registers itself.

Public names (stable API)::

    from xcam.metrics import (
        pointing_game, pointing_game_baseline, energy_pointing_game, relevance_mass,
        relevance_rank, max_box_acc,                                       # localization
        deletion, insertion, average_drop, increase_in_confidence,
        faithfulness_correlation, infidelity,                              # faithfulness
        max_sensitivity,                                                   # robustness
        model_parameter_randomization, random_logit,                       # sanity
        stability,                                                         # across models
        evaluate_maps, shared_metrics,                                     # shared passes
        mean_ci, wilcoxon,                                                 # statistics
        boxes_to_masks, spearman, ssim,                                    # helpers
    )

Curves are drawn by :func:`xcam.viz.plot_curves` (or ``CurveResult.plot()``).
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import Metric, MetricInputs, PerImage, metric
from .batched import evaluate_maps, shared_metrics
from .faithfulness import (
    CurveResult,
    average_drop,
    deletion,
    faithfulness_correlation,
    gaussian_blur,
    increase_in_confidence,
    infidelity,
    insertion,
)
from .groundtruth import boxes_to_masks
from .localization import (
    BoxAccResult,
    energy_pointing_game,
    max_box_acc,
    pointing_game,
    pointing_game_baseline,
    relevance_mass,
    relevance_rank,
)
from .robustness import max_sensitivity
from .sanity import RandomizationResult, cascade_layers, model_parameter_randomization, random_logit
from .similarity import pearson, spearman, ssim
from .stability import stability
from .stats import CurveBand, MeanCI, WilcoxonResult, holm, kendall_tau, mean_band, mean_ci, wilcoxon

__all__ = [
    "Metric",
    "MetricInputs",
    "PerImage",
    "metric",
    "evaluate_maps",
    "shared_metrics",
    # localization
    "pointing_game",
    "pointing_game_baseline",
    "energy_pointing_game",
    "relevance_mass",
    "relevance_rank",
    "max_box_acc",
    "BoxAccResult",
    # faithfulness
    "deletion",
    "insertion",
    "CurveResult",
    "average_drop",
    "increase_in_confidence",
    "faithfulness_correlation",
    "infidelity",
    # robustness
    "max_sensitivity",
    # sanity
    "model_parameter_randomization",
    "RandomizationResult",
    "cascade_layers",
    "random_logit",
    # across models
    "stability",
    # statistics
    "mean_ci",
    "MeanCI",
    "wilcoxon",
    "holm",
    "kendall_tau",
    "mean_band",
    "CurveBand",
    "WilcoxonResult",
    # helpers
    "boxes_to_masks",
    "gaussian_blur",
    "pearson",
    "spearman",
    "ssim",
]

# Import every other module of the package so that a new metric is one new file: its @metric
# function reaches xcam.list_metrics(), compare and the API tests without edits here, and is
# re-exported as xcam.metrics.<name>.
for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in getattr(_module, "__all__", ()):
            if isinstance(getattr(_module, _name), Metric) and _name not in __all__:
                globals()[_name] = getattr(_module, _name)
                __all__.append(_name)
