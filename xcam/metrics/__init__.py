"""Metrics: per-sample scores that tell how good a map is, as pinned in ``specs/metrics.md``.

Every metric is a :class:`Metric`: call it like a function; it also knows its direction
(``higher_is_better``), its ``family`` and, before it runs, its cost
(``forward_passes(n_images, **kwargs)``: images it will run through the model). All are
registered: ``xcam.list_metrics()``.

Public names (stable API)::

    from xcam.metrics import (
        pointing_game, pointing_game_baseline, energy_pointing_game, relevance_mass,
        relevance_rank, max_box_acc,                                       # localization
        deletion, insertion, average_drop, increase_in_confidence,
        faithfulness_correlation, infidelity, max_sensitivity,             # faithfulness
        model_parameter_randomization, random_logit,                       # sanity
        mean_ci, wilcoxon,                                                 # statistics
        boxes_to_masks, spearman, ssim, plot_curves,                       # helpers
    )
"""

from __future__ import annotations

# The LFI-CAM paper's cross-model stability (mean IoU of thresholded maps) lives with LFI-CAM.
from ..lfi.stability import stability
from ._core import Metric, boxes_to_masks, pearson, spearman, ssim
from .faithfulness import (
    CurveResult,
    average_drop,
    deletion,
    faithfulness_correlation,
    gaussian_blur,
    increase_in_confidence,
    infidelity,
    insertion,
    max_sensitivity,
)
from .localization import (
    BoxAccResult,
    energy_pointing_game,
    max_box_acc,
    pointing_game,
    pointing_game_baseline,
    relevance_mass,
    relevance_rank,
)
from .plot import plot_curves
from .sanity import RandomizationResult, cascade_layers, model_parameter_randomization, random_logit
from .stats import MeanCI, WilcoxonResult, mean_ci, wilcoxon

__all__ = [
    "Metric",
    "stability",
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
    "max_sensitivity",
    # sanity
    "model_parameter_randomization",
    "RandomizationResult",
    "cascade_layers",
    "random_logit",
    # statistics
    "mean_ci",
    "MeanCI",
    "wilcoxon",
    "WilcoxonResult",
    # helpers
    "boxes_to_masks",
    "gaussian_blur",
    "pearson",
    "spearman",
    "ssim",
    "plot_curves",
]
