"""Pictures: overlays of maps on images and grids of images x methods (matplotlib, OpenCV).

This module converts tensors to numpy at the edge; nothing in the compute path imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
import torch
from torch import Tensor

from .errors import InputError, InputTypeError

__all__ = ["to_image", "overlay", "grid", "plot_curves", "CurveLike"]


def to_image(image: Any) -> np.ndarray:
    """An image as float32 numpy (H, W, 3) in [0, 1].

    Accepts a (3, H, W) or (H, W, 3) tensor or array; uint8 arrays are divided by 255, float
    inputs outside [0, 1] (normalized model inputs) are min-max scaled for display.
    """
    if isinstance(image, torch.Tensor):
        arr = image.detach().cpu().float().numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(1, 2, 0)
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise InputTypeError(f"image must be a tensor or numpy array, got {type(image).__name__}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise InputError(f"image must be (H, W, 3), (3, H, W) or (H, W), got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return arr


def _map_array(saliency: Any, size: tuple[int, int]) -> np.ndarray:
    if isinstance(saliency, torch.Tensor):
        arr = saliency.detach().cpu().float().numpy()
    else:
        arr = np.asarray(saliency, dtype=np.float32)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise InputError(f"map must be (H, W), got shape {arr.shape}")
    if arr.shape != size:
        arr = cv2.resize(arr, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def overlay(image: Any, saliency: Any, alpha: float = 0.5, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Blend a min-max normalized map, colored with an OpenCV colormap, over an image.

    Args:
        image: (3, H, W) / (H, W, 3) tensor or array (see :func:`to_image`).
        saliency: (H, W) map (resized to the image if needed).
        alpha: weight of the colored map, in [0, 1].
        colormap: an OpenCV colormap constant.

    Returns:
        uint8 (H, W, 3) RGB array.
    """
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    img = to_image(image)
    heat = _map_array(saliency, img.shape[:2])
    colored = cv2.applyColorMap(np.uint8(np.round(255 * heat)), colormap)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    out = (1 - alpha) * img + alpha * colored
    result: np.ndarray = np.uint8(np.clip(np.round(255 * out), 0, 255))
    return result


def grid(
    images: Sequence[Any] | torch.Tensor,
    maps: Mapping[str, torch.Tensor],
    path: str | Path | None = None,
    row_titles: Sequence[str] | None = None,
    alpha: float = 0.5,
) -> Any:
    """A grid figure: one row per image, the image then one overlay per method.

    Args:
        images: B images ((B, 3, H, W) tensor or a sequence of images).
        maps: method name -> (B, H, W) maps.
        path: save the figure there as PNG when given.
        row_titles: a title per row (e.g. the predicted class).
        alpha: opacity of the map over the image (see :func:`overlay`).

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(images)
    for name, m in maps.items():
        if len(m) != n:
            raise InputError(f"maps[{name!r}] has {len(m)} maps for {n} images")
    cols = 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(2.4 * cols, 2.4 * n), squeeze=False)
    for i in range(n):
        img = to_image(images[i])
        axes[i][0].imshow(img)
        axes[i][0].set_ylabel(row_titles[i] if row_titles else f"image {i}", fontsize=8)
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i][j].imshow(overlay(img, m[i], alpha=alpha))
            if i == 0:
                axes[i][j].set_title(name, fontsize=9)
        if i == 0:
            axes[i][0].set_title("image", fontsize=9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig


@runtime_checkable
class CurveLike(Protocol):
    """What :func:`plot_curves` reads of a curve result (:class:`xcam.metrics.CurveResult`)."""

    @property
    def auc(self) -> Tensor:
        """(B,) area under each curve."""

    @property
    def curves(self) -> Tensor:
        """(B, S) per-sample curves."""

    @property
    def fractions(self) -> Tensor:
        """(S,) x values in [0, 1]."""

    @property
    def kind(self) -> str:
        """``"deletion"`` or ``"insertion"``."""


def plot_curves(
    results: Any,
    ax: Any = None,
    samples: bool = False,
    title: str | None = None,
) -> Any:
    """Plot the mean deletion or insertion curve of one or several methods.

    Args:
        results: a :class:`~xcam.metrics.CurveResult` (any :class:`CurveLike`), or a mapping
            ``label -> CurveResult`` (e.g. one entry per explainer) drawn on the same axes.
            The legend shows each mean AUC.
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
    if isinstance(results, CurveLike):
        results = {results.kind: results}
    if not isinstance(results, Mapping) or not all(
        isinstance(r, CurveLike) for r in results.values()
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
