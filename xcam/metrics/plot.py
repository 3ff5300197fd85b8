"""Plot deletion / insertion curves (matplotlib is imported only when a plot is drawn)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InputTypeError

__all__ = ["plot_curves"]


def plot_curves(
    results: Any,
    ax: Any = None,
    samples: bool = False,
    title: str | None = None,
) -> Any:
    """Plot the mean deletion or insertion curve of one or several methods.

    Args:
        results: a :class:`~xcam.metrics.CurveResult`, or a mapping ``label -> CurveResult``
            (e.g. one entry per explainer) drawn on the same axes. The legend shows each mean AUC.
        ax: matplotlib axes to draw on (a new figure when None).
        samples: also draw every sample's curve, thin and transparent.
        title: axes title (default: the curves' kind).

    Returns:
        The matplotlib axes.

    Example:
        >>> ax = plot_curves({"Grad-CAM": deletion(model, x, gc.maps, y),
        ...                   "random": deletion(model, x, rnd.maps, y)})
        >>> ax.figure.savefig("deletion.png")
    """
    from .faithfulness import CurveResult

    if isinstance(results, CurveResult):
        results = {results.kind: results}
    if not isinstance(results, Mapping) or not all(
        isinstance(r, CurveResult) for r in results.values()
    ):
        raise InputTypeError(
            "results must be a CurveResult or a mapping label -> CurveResult (the output of "
            f"xcam.metrics.deletion / insertion), got {type(results).__name__}"
        )
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    kinds = set()
    for label, result in results.items():
        x = result.fractions.detach().cpu().numpy()
        curves = result.curves.detach().cpu().numpy()
        kinds.add(result.kind)
        auc = float(result.auc.nanmean())
        (line,) = ax.plot(x, curves.mean(axis=0), label=f"{label} (AUC {auc:.3f})")
        if samples:
            ax.plot(x, curves.T, color=line.get_color(), alpha=0.15, linewidth=0.7)
    ax.set_xlabel("fraction of pixels " + ("deleted" if kinds == {"deletion"} else
                                           "inserted" if kinds == {"insertion"} else "moved"))
    ax.set_ylabel("probability of the target class")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_title(title if title is not None else " / ".join(sorted(kinds)))
    ax.legend(frameon=False)
    return ax
